"""What a generator runs, and the command line each of its Locust processes is started with.

Plain data, shared by the driver (which builds it from the scenario) and the generator actor
(which turns it into ``python -m harness.load.runner ...``); imports neither Ray nor Locust.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

__all__ = ["GeneratorSpec", "LocustOptions"]


@dataclass(frozen=True)
class LocustOptions:
    """What the locustfile may read of the run, as under ``locust`` (see harness.load.locustfile)."""

    shape: str | None = None  # the LoadTestShape class: environment.shape_class
    arguments: dict[str, Any] = field(default_factory=dict)  # the locustfile's own arguments
    users: int | None = None  # parsed_options.num_users: the run's peak users, all processes
    run_time: float | None = None  # parsed_options.run_time (s)
    keep_stats: bool = False  # the locustfile reads .stats: keep Locust's request statistics
    trace: str | None = None  # the runner's --trace (harness.load.trace.TraceSettings.arg); None: off

    def args(self) -> list[str]:
        """The runner's command-line words for these options."""
        words = ["--arguments", json.dumps(self.arguments)] if self.arguments else []
        if self.shape:
            words += ["--shape", self.shape]
        if self.users is not None:
            words += ["--users", str(self.users)]
        if self.run_time is not None:
            words += ["--run-time", repr(self.run_time)]
        if self.trace:
            words += ["--trace", self.trace]
        return [*words, "--keep-stats"] if self.keep_stats else words


@dataclass(frozen=True)
class GeneratorSpec:
    """What one generator runs: the same locustfile and classes in ``processes`` processes."""

    generator_id: str
    locustfile: str
    classes: dict[str, int]
    host: str
    processes: int | None  # None: one per core on the actor's node
    open_model: bool
    log_dir: str
    env: dict[str, str] = field(default_factory=dict)
    clock_offset: float = 0.0  # seconds this node's clock is ahead of the driver's (harness.measure.clocks)
    locust: LocustOptions = field(default_factory=LocustOptions)

    def runner_args(self, process_id: str, report_fd: int) -> list[str]:
        """The arguments of ``python -m harness.load.runner`` for one of this generator's processes."""
        args = ["--process-id", process_id, "--locustfile", self.locustfile, "--host", self.host]
        if self.classes:  # none: every runnable User class of the file, as Locust does
            args += ["--classes", ",".join(f"{name}:{weight}" for name, weight in self.classes.items())]
        args += ["--report-fd", str(report_fd)]
        if self.open_model:
            args.append("--open-model")
        return args + self.locust.args()
