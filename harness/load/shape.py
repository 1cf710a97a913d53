"""A LoadTestShape turned into the run's stages, so the plan shows (and the clock runs) what it will do.

There is no Locust master in harness: the driver's clock sends every process its share of each
stage (see harness.run.stages). A shape named in ``load.shape`` is therefore read ahead, in a
Locust process of its own (:mod:`harness.load.shape_probe`): its ``tick()`` at run times
0, 1, 2, ... s, as Locust's shape worker reads it once a second, until it returns None. Each
run of equal ticks becomes one closed-model stage (users, spawn_rate) at that offset, and the
run ends at the first None, as ``locust --headless`` quits there. What a shape cannot do this
way (read the live user count or stats, choose user classes per tick) is in docs/locustfiles.md.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from harness.errors import ConfigError
from harness.scenario import Scenario, UsersStage

__all__ = ["MAX_SPAWN_RATE", "MAX_USERS", "PROBE_TIMEOUT", "shape_stages", "stages_of"]

PROBE_TIMEOUT = 60.0  # seconds the probe may take to import the locustfile and read the shape


#: What a stage holds (harness.scenario.UsersStage): users in [0, MAX_USERS], spawn rate in (0, MAX_SPAWN_RATE].
MAX_USERS = 1_000_000
MAX_SPAWN_RATE = 100_000.0


def stages_of(ticks: list[list[float]]) -> list[UsersStage]:
    """One stage per run of equal ticks (tick k is at k seconds); raises ValueError for a tick out of range."""
    stages: list[UsersStage] = []
    start = 0
    for k in range(1, len(ticks) + 1):
        if k == len(ticks) or ticks[k] != ticks[start]:
            users, rate = ticks[start]
            if not (0 <= users <= MAX_USERS and 0 < rate <= MAX_SPAWN_RATE):
                raise ValueError(
                    f"tick() at {start}s gives ({users:g}, {rate:g}): a stage takes 0 to {MAX_USERS:,} users "
                    f"and a spawn rate above 0, up to {MAX_SPAWN_RATE:,.0f}/s"
                )
            stages.append(UsersStage(at=float(start), duration=float(k - start), users=int(users), spawn_rate=rate))
            start = k
    return stages


def shape_stages(scenario: Scenario) -> Scenario:
    """``scenario`` with its shape's ticks as stages; unchanged when it names no shape.

    Raises ConfigError (exit 2) naming the file and ``load.shape`` when the shape cannot be
    read: the locustfile does not import, ``tick()`` raises, never ends, or asks for what a
    stage cannot hold.
    """
    name = scenario.load.shape
    if name is None:
        return scenario
    where = f"{scenario.source}: load.shape"
    with tempfile.TemporaryDirectory(prefix="harness-shape-") as tmp:
        out = Path(tmp) / "ticks.json"
        command = [
            sys.executable,
            "-m",
            "harness.load.shape_probe",
            "--locustfile",
            str(scenario.locustfile_path),
            "--shape",
            name,
            "--host",
            scenario.target.base_url,
            "--arguments",
            json.dumps(scenario.load.arguments),
            "--out",
            str(out),
        ]
        try:
            done = subprocess.run(
                command, capture_output=True, text=True, timeout=PROBE_TIMEOUT, env=os.environ.copy(), check=False
            )
        except subprocess.TimeoutExpired:
            raise ConfigError(f"{where}: reading {name}.tick() took over {PROBE_TIMEOUT:g} s") from None
        if not out.exists():
            tail = (done.stderr.strip().splitlines() or ["no output"])[-1]
            raise ConfigError(f"{where}: the locustfile could not be loaded to read {name}: {tail}")
        result = json.loads(out.read_text())
    if "error" in result:
        raise ConfigError(f"{where}: {name}: {result['error']}")
    try:
        stages = stages_of(result["ticks"])
    except ValueError as exc:
        raise ConfigError(f"{where}: {name}: {exc}") from None
    if not stages:
        raise ConfigError(f"{where}: {name}.tick() returns None at 0 s: the shape runs no load")
    load = scenario.load.model_copy(update={"stages": stages})
    return scenario.model_copy(update={"load": load})
