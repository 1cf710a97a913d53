"""The io family's kinds: ``io.latency`` and ``io.error``, as scenario models.

The words are Chaos Mesh IOChaos's where they fit: ``volume_path`` (its ``volumePath``: the
directory the file system is mounted over), ``path`` (a glob of the files inside it that are
affected), ``methods``, ``percent``, ``delay`` and ``errno``.
"""

from __future__ import annotations

import errno as errno_module
import typing
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Literal, Self

from pydantic import BeforeValidator, Field, WithJsonSchema

from harness.scenario.faults import FaultBase, FaultContext, ProcessTarget
from harness.scenario.fields import Duration, KeyPath, Model

__all__ = ["METHODS", "IoErrorFault", "IoErrorParams", "IoFault", "IoLatencyFault", "IoLatencyParams", "errno_number"]

#: The file system operations a fault can be limited to (FUSE's names, as Chaos Mesh's ``methods``).
Method = Literal[
    "open",
    "create",
    "read",
    "write",
    "flush",
    "fsync",
    "release",
    "getattr",
    "readdir",
    "unlink",
    "rename",
    "mkdir",
    "rmdir",
    "truncate",
]
METHODS: tuple[Method, ...] = typing.get_args(Method)


def errno_number(value: object) -> int:
    """An errno from its name (``EIO``, ``enospc``) or number (5); ValueError for anything else."""
    if isinstance(value, bool):
        raise ValueError("expected an errno name such as EIO or ENOSPC, or its number")
    if isinstance(value, int):
        number = value
    elif isinstance(value, str) and value.strip().isdigit():
        number = int(value.strip())
    elif isinstance(value, str) and hasattr(errno_module, value.strip().upper()):
        number = int(getattr(errno_module, value.strip().upper()))
    else:
        raise ValueError(f"'{value}' is not an errno; give a name such as EIO, ENOSPC or EACCES, or its number")
    if number not in errno_module.errorcode:
        raise ValueError(f"{number} is not an errno this system knows")
    return number


Errno = Annotated[int, BeforeValidator(errno_number), WithJsonSchema({"type": ["integer", "string"]})]


class IoParams(Model):
    volume_path: str = Field(
        description=(
            "Directory a harness file system is mounted over for the fault window (Chaos Mesh's volumePath); "
            "it must exist and lie under safety.allowed_paths. Only files opened after the injection are affected."
        )
    )
    path: str = Field(
        default="*",
        min_length=1,
        description=(
            "Glob of the affected files, relative to volume_path ('*' crosses '/': '*.log', 'data/*'); "
            "default every file and directory."
        ),
    )
    methods: list[Method] = Field(
        default_factory=lambda: list(METHODS),
        min_length=1,
        description="Operations affected (open, create, read, write, flush, fsync, release, getattr, readdir, "
        "unlink, rename, mkdir, rmdir, truncate); default all.",
    )
    percent: float = Field(
        default=100, gt=0, le=100, description="Percent of the matching operations affected, each drawn at random."
    )


class IoLatencyParams(IoParams):
    delay: Duration = Field(gt=0, le=60, description="Added to each affected operation, e.g. 50ms.")
    jitter: Duration = Field(
        default=0.0, ge=0, le=60, description="Spread around the delay: uniform in delay +- jitter (never below 0)."
    )


class IoErrorParams(IoParams):
    errno: Errno = Field(
        default=errno_module.EIO, description="Error the affected operations fail with: EIO, ENOSPC, a name or number."
    )


class IoFault(FaultBase):
    """A fault on the operations in one directory (a FUSE passthrough mounted over it)."""

    params: IoLatencyParams | IoErrorParams
    target: ProcessTarget | None = Field(
        default=None,
        description=(
            "Process whose mount namespace the file system is mounted in (a container's, or a service started "
            "with `ip netns exec`, which gets a mount namespace of its own): it sees volume_path as that process "
            "does. Default: the agent's own mount namespace, i.e. the host's."
        ),
    )

    def with_base_dir(self, base: Path) -> Self:
        if self.target is None:
            return self
        return self.model_copy(update={"target": self.target.with_base_dir(base)})

    def checks(self, context: FaultContext) -> Iterator[tuple[KeyPath, str]]:
        problem = context.path_problem(self.params.volume_path)
        if problem:
            yield ("params", "volume_path"), problem
        if self.pods is not None and self.target is not None:
            yield (
                ("target",),
                "with pods, the file system is mounted in each pod's containers' mount namespace; remove target",
            )
            return
        problem = self.target.choice_problem() if self.target is not None else None
        if problem:
            yield ("target",), problem


class IoLatencyFault(IoFault):
    """Delay ``percent`` of the chosen operations in ``volume_path`` by ``delay`` (+- ``jitter``)."""

    kind: Literal["io.latency"] = Field(description="Fault kind.")
    params: IoLatencyParams = Field(description="Directory, files, operations, share and delay.")


class IoErrorFault(IoFault):
    """Fail ``percent`` of the chosen operations in ``volume_path`` with ``errno``."""

    kind: Literal["io.error"] = Field(description="Fault kind.")
    params: IoErrorParams = Field(description="Directory, files, operations, share and errno.")
