"""What the io family's FUSE server does, as the agent passes it on the server's command line."""

from __future__ import annotations

import json
from dataclasses import dataclass

from harness.chaos.families.io.params import IoErrorFault, IoFault, IoLatencyFault

__all__ = ["Spec", "spec_of"]


@dataclass(frozen=True)
class Spec:
    """The server's whole configuration: where, which files and operations, how often, what."""

    volume_path: str
    source: str
    pattern: str
    methods: frozenset[str]
    percent: float
    delay: float = 0.0
    jitter: float = 0.0
    errno: int = 0  # 0: a latency fault
    lifetime: float = 3600.0

    def to_json(self) -> str:
        data = dict(self.__dict__)
        data["methods"] = sorted(self.methods)
        return json.dumps(data)

    @classmethod
    def from_json(cls, text: str) -> Spec:
        data = json.loads(text)
        data["methods"] = frozenset(data["methods"])
        return cls(**data)


def spec_of(fault: IoFault, point: str, source: str, lifetime: float) -> str:
    """The JSON spec of ``fault``'s server, mounted at ``point`` (links resolved) with ``source``."""
    p = fault.params
    spec = Spec(point, source, p.path, frozenset(p.methods), p.percent, lifetime=lifetime)
    if isinstance(fault, IoLatencyFault):
        spec = Spec(**{**spec.__dict__, "delay": fault.params.delay, "jitter": fault.params.jitter})
    elif isinstance(fault, IoErrorFault):
        spec = Spec(**{**spec.__dict__, "errno": fault.params.errno})
    return spec.to_json()
