"""What a run is started with besides its scenario: its id, where its files go, and the options
the command line gives (``harness run``'s flags), as one frozen :class:`RunOptions`."""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from harness.results.samples import BaselineRun

__all__ = ["RunOptions", "new_run_id"]


def new_run_id(scenario: str) -> str:
    """A run id that sorts by time and does not collide: ``<scenario>-<UTC time>-<4 hex>``."""
    return f"{scenario}-{datetime.now(UTC):%Y%m%dT%H%M%SZ}-{secrets.token_hex(2)}"


@dataclass(frozen=True)
class RunOptions:
    run_id: str
    run_dir: Path
    ray_address: str | None = None
    processes: int | None = None  # overrides the scenario's per-generator process count
    extra_env: dict[str, str] = field(default_factory=dict)
    invoked_at: float = field(default_factory=time.time)
    baseline: BaselineRun | None = None  # compare with this run before the verdict (--baseline)
    hide: Callable[[str], str] | None = None  # replaces the scenario's secret values in event texts
