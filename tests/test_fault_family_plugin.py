"""A team's own fault family, shipped as a package of its own, goes through the whole of harness.

The test writes the two files a new fault kind needs (the family module and its params model)
as a tiny installed package: the package and its ``*.dist-info`` with ``entry_points.txt`` on a
directory that the harness subprocesses get on their ``PYTHONPATH``, which
``importlib.metadata`` reads exactly as it reads a ``pip install``-ed package. Nothing else in
harness changes. Its fault has a real, harmless effect: a marker file, created on inject and
removed on revert, tagged with the run id so a sweep finds one a lost journal left behind.

Then: ``harness schema`` and ``validate`` know the kind (and the family's own check locates a
bad value), ``harness plan`` prints the family's line, a short ``harness run`` injects and
reverts it on schedule (the file exists inside the fault window of the run's events, and is
gone after), a SIGKILLed run's fault is reverted by the node's watchdog, ``harness recover``
reverts a journaled one, and ``harness recover --sweep`` removes a leftover marker.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

from harness.chaos.journal import FaultRecord, FaultState, Journal

ROOT = Path(__file__).resolve().parents[1]
KIND = "marker.touch"

PARAMS = '''
"""The marker family's one kind, as a scenario model."""

from collections.abc import Iterator
from typing import Literal

from pydantic import Field

from harness.scenario.faults import FaultBase, FaultContext
from harness.scenario.fields import KeyPath, Model


class MarkerParams(Model):
    label: str = Field(default="on", min_length=1, max_length=40, description="Written into the marker file.")


class MarkerFault(FaultBase):
    """Create a marker file for the fault window: an effect a test can see and nothing else."""

    kind: Literal["marker.touch"] = Field(description="Fault kind.")
    params: MarkerParams = Field(default_factory=MarkerParams, description="What the marker says.")

    def checks(self, context: FaultContext) -> Iterator[tuple[KeyPath, str]]:
        if self.params.label == "forbidden":
            yield ("params", "label"), "the marker family refuses the label 'forbidden'"
'''

FAMILY = '''
"""A fault family outside harness: a marker file per fault, in $HARNESS_MARKER_DIR."""

import os
from pathlib import Path

from harness.chaos.family import FaultFamily, Leftover
from harness.chaos.steps import Prepared
from harness.errors import ConfigError
from harness_marker.params import MarkerFault

PREFIX = "harness-marker-"


def _directory() -> Path:
    return Path(os.environ["HARNESS_MARKER_DIR"])


class MarkerFamily(FaultFamily):
    name = "marker"
    models = (MarkerFault,)

    def describe(self, fault):
        return f"create a marker file saying {fault.params.label} for {fault.duration:g}s"

    def requirements(self, fault):
        return []

    def resolve(self, fault, context):
        return f"; now: in {_directory()}"

    def refusal(self, fault, context):
        return None

    def check(self, fault, context):
        if not _directory().is_dir():
            raise ConfigError(f"fault '{fault.name}': no marker directory {_directory()}")

    def warm_up(self, kinds):
        return None

    def prepare(self, fault, ctx):
        path = _directory() / f"{PREFIX}{ctx.run_id}-{fault.name}"
        return Prepared({"target": f"marker {path.name}", "path": str(path)})

    def apply(self, fault, record, ctx, *, resumed):
        Path(str(record.details["path"])).write_text(fault.params.label)
        return {}

    def undo(self, record):
        path = Path(str(record.details["path"]))
        existed = path.exists()
        path.unlink(missing_ok=True)
        return {"reverted": f"removed {path.name}" if existed else f"{path.name} was already gone"}

    def reverted_text(self, before, after):
        return str(after.details["reverted"])

    def leftovers(self):
        return [
            Leftover("", "marker", path.name, (str(path),), self.name, order=5)
            for path in sorted(_directory().glob(PREFIX + "*"))
        ]

    def remove(self, leftover):
        Path(leftover.key[0]).unlink()


FAMILY = MarkerFamily()
'''


@pytest.fixture
def plugin(tmp_path: Path) -> Iterator[dict[str, str]]:
    """The package on a site directory of its own, and the environment harness subprocesses get."""
    site = tmp_path / "site"
    package = site / "harness_marker"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text(FAMILY.lstrip())
    (package / "params.py").write_text(PARAMS.lstrip())
    info = site / "harness_marker-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: harness-marker\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[harness.fault_families]\nmarker = harness_marker:FAMILY\n")
    markers = tmp_path / "markers"
    markers.mkdir()
    path = os.pathsep.join(p for p in (str(site), str(ROOT), os.environ.get("PYTHONPATH", "")) if p)
    yield {**os.environ, "PYTHONPATH": path, "HARNESS_MARKER_DIR": str(markers)}
    # nothing was installed outside tmp_path: removing it uninstalls the family


def _harness(env: dict[str, str], *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "harness.cli", *args], env=env, capture_output=True, text=True, timeout=timeout
    )


def _scenario(path: Path, base_url: str, faults: str, seconds: int, influx_url: str = "http://127.0.0.1:9") -> Path:
    path.write_text(
        textwrap.dedent(
            f"""\
            name: {path.stem}
            target: {{base_url: "{base_url}"}}
            load:
              locustfile: {ROOT / "tests" / "locustfiles" / "ping.py"}
              user_classes: [{{class: Idler}}]
              processes: 1
              stages:
                - {{name: steady, duration: {seconds}s, users: 1, spawn_rate: 1}}
            faults:
            """
        )
        + textwrap.indent(textwrap.dedent(faults), "  ")
        + f"results: {{url: '{influx_url}', database: plugin}}\n"
    )
    return path


def test_schema_validate_plan_recover_and_sweep_know_the_new_kind(plugin: dict[str, str], tmp_path: Path) -> None:
    markers = Path(plugin["HARNESS_MARKER_DIR"])
    schema = _harness(plugin, "schema")
    assert schema.returncode == 0, schema.stderr
    mapping = json.loads(schema.stdout)["properties"]["faults"]["items"]["discriminator"]["mapping"]
    assert mapping[KIND] == "#/$defs/MarkerFault" and "network.partition" in mapping

    good = _scenario(
        tmp_path / "good.yaml", "http://127.0.0.1:9", f"- {{name: mark, kind: {KIND}, at: 1s, duration: 2s}}\n", 5
    )
    done = _harness(plugin, "validate", str(good))
    assert done.returncode == 0 and f"{good}: valid:" in done.stdout, done.stdout + done.stderr
    bad = _scenario(
        tmp_path / "bad.yaml",
        "http://127.0.0.1:9",
        f"- {{name: mark, kind: {KIND}, at: 1s, duration: 2s, params: {{label: forbidden, colour: red}}}}\n",
        5,
    )
    done = _harness(plugin, "validate", str(bad))
    assert done.returncode == 2, done.stdout + done.stderr
    assert "faults[0].params.colour: unknown key 'colour'" in done.stderr, done.stderr
    unknown = _scenario(
        tmp_path / "unknown.yaml", "http://127.0.0.1:9", "- {name: x, kind: marker.nope, at: 1s, duration: 2s}\n", 5
    )
    done = _harness(plugin, "validate", str(unknown))
    assert done.returncode == 2 and f"kubernetes.scale, {KIND}, network.bandwidth" in done.stderr, done.stderr
    bad.write_text(bad.read_text().replace(", colour: red", ""))
    done = _harness(plugin, "validate", str(bad))
    assert done.returncode == 2, done.stdout + done.stderr
    assert "faults[0].params.label: the marker family refuses the label 'forbidden'" in done.stderr, done.stderr

    plan = _harness(plugin, "plan", str(good))
    assert plan.returncode == 0, plan.stdout + plan.stderr
    detail = " ".join(line.split("│")[4].strip() for line in plan.stdout.splitlines() if line.count("│") == 5)
    assert f"{KIND}: create a marker file saying on for 2s; now: in {markers}" in detail, plan.stdout

    # A journal as a run killed with the fault on leaves it (written here by hand), and its marker.
    journal = Journal("plugin-crashed", Path(os.environ["HARNESS_DATA_DIR"]) / "journal")
    marker = markers / "harness-marker-plugin-crashed-mark"
    record = journal.begin("mark", KIND, {"target": f"marker {marker.name}", "path": str(marker)}, None)
    marker.write_text("on")
    journal.append(record.advance(FaultState.INJECTED))
    done = _harness(plugin, "recover")
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"run plugin-crashed: {KIND} 'mark': removed {marker.name}" in done.stdout, done.stdout
    assert not marker.exists() and journal.outstanding() == []

    # A marker whose journal is lost: only its tag finds it.
    lost = markers / "harness-marker-lost-run-mark"
    lost.write_text("on")
    other = markers / "someone-elses-file"
    other.write_text("keep")
    done = _harness(plugin, "recover", "--sweep")
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"removed marker {lost.name} (host)" in done.stdout, done.stdout
    assert not lost.exists() and other.exists()
    again = _harness(plugin, "recover", "--sweep")
    assert again.returncode == 0 and "sweep: no harness object left on this node" in again.stdout, again.stdout


def test_without_the_package_the_kind_is_unknown(tmp_path: Path) -> None:
    """The kind comes from the installed package only: without it, validate refuses the file."""
    path = _scenario(
        tmp_path / "plain.yaml", "http://127.0.0.1:9", f"- {{name: mark, kind: {KIND}, at: 1s, duration: 2s}}\n", 5
    )
    done = _harness({**os.environ}, "validate", str(path))
    assert done.returncode == 2 and "faults[0].kind: unknown fault kind; use one of" in done.stderr, done.stderr
    assert KIND not in done.stderr


# ---------------------------------------------------------------- a real run


@pytest.fixture
def http_target(tmp_path: Path) -> Iterator[str]:
    from tests.influx_fixtures import free_port

    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1", "--directory", str(tmp_path)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.terminate()
        server.wait(10)


def _watch(path: Path, proc: subprocess.Popen[str], limit: float) -> list[tuple[float, bool]]:
    """(time, exists) of ``path`` every 50 ms until ``proc`` ends (or ``limit`` seconds)."""
    seen: list[tuple[float, bool]] = []
    deadline = time.monotonic() + limit
    while proc.poll() is None and time.monotonic() < deadline:
        seen.append((time.time(), path.exists()))
        time.sleep(0.05)
    return seen


@pytest.mark.slow
def test_a_run_injects_and_reverts_the_new_kind_on_schedule(
    plugin: dict[str, str], tmp_path: Path, http_target: str, influxd: Any
) -> None:
    influxd.create_database("plugin")
    markers = Path(plugin["HARNESS_MARKER_DIR"])
    faults = f"- {{name: mark, kind: {KIND}, at: 2s, duration: 3s, params: {{label: running}}}}\n"
    scenario = _scenario(tmp_path / "run.yaml", http_target, faults, 7, influxd.url)
    env = {**plugin, "HARNESS_RUNS_DIR": str(tmp_path / "runs")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "harness.cli", "run", str(scenario), "--run-id", "plugin-run"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    marker = markers / "harness-marker-plugin-run-mark"
    seen = _watch(marker, proc, 180)
    output = proc.communicate(timeout=60)[0]
    assert proc.returncode == 0, output[-3000:]
    summary = json.loads((tmp_path / "runs" / "plugin-run" / "summary.json").read_text())
    [start] = [e for e in summary["events"] if e["kind"] == "fault" and e["name"] == "mark" and e["state"] == "start"]
    [end] = [e for e in summary["events"] if e["kind"] == "fault" and e["name"] == "mark" and e["state"] == "end"]
    assert start["text"] == f"{KIND} marker {marker.name}", start
    assert abs(start["offset"] - 2.0) < 1.0 and abs(end["offset"] - 5.0) < 1.0, (start, end)
    inside = [exists for t, exists in seen if start["time"] + 0.2 < t < end["time"] - 0.2]
    after = [exists for t, exists in seen if t > end["time"] + 0.2]
    assert inside and all(inside), "the marker was missing inside the fault window"
    assert after and not any(after), "the marker stayed after the fault window"
    assert not marker.exists()
    record = Journal("plugin-run", Path(os.environ["HARNESS_DATA_DIR"]) / "journal").latest("mark")
    assert record is None or record.state is FaultState.REVERTED  # a retired journal has no live file


@pytest.mark.slow
def test_a_sigkilled_run_leaves_the_fault_to_the_watchdog(
    plugin: dict[str, str], tmp_path: Path, http_target: str, influxd: Any
) -> None:
    """The node's watchdog, a process of its own, finds the family through the entry point too."""
    from harness.chaos import watchdog
    from harness.chaos.agent import LEASE_TTL

    influxd.create_database("plugin")
    markers = Path(plugin["HARNESS_MARKER_DIR"])
    faults = f"- {{name: mark, kind: {KIND}, at: 1s, duration: 60s}}\n"
    scenario = _scenario(tmp_path / "killed.yaml", http_target, faults, 70, influxd.url)
    env = {**plugin, "HARNESS_RUNS_DIR": str(tmp_path / "runs")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "harness.cli", "run", str(scenario), "--run-id", "plugin-killed"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    marker = markers / "harness-marker-plugin-killed-mark"
    journal_dir = Path(os.environ["HARNESS_DATA_DIR"]) / "journal"
    tree: list[psutil.Process] = []
    try:
        deadline = time.monotonic() + 120
        while not marker.exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert marker.exists(), "the marker fault was never applied"
        time.sleep(1.5)  # renewals keep the lease alive meanwhile
        assert marker.exists()
        keeper = watchdog.running_pid(journal_dir)
        assert keeper is not None
        tree = [p for p in psutil.Process(proc.pid).children(recursive=True) if p.pid != keeper]
        proc.send_signal(signal.SIGKILL)
        killed_at = time.time()
        proc.wait(10)
        while marker.exists() and time.time() - killed_at < LEASE_TTL + 2.0:
            time.sleep(0.02)
        assert not marker.exists(), f"the watchdog left the marker {time.time() - killed_at:.1f} s after the kill"
        latest: FaultRecord | None = Journal("plugin-killed", journal_dir).latest("mark")
        assert latest is None or latest.state is FaultState.REVERTED
    finally:
        if proc.poll() is None:
            tree = psutil.Process(proc.pid).children(recursive=True)
            proc.kill()
            proc.wait(10)
        _gone, alive = psutil.wait_procs(tree, timeout=15)  # Ray leaves with its driver
        for child in alive:
            with contextlib.suppress(psutil.NoSuchProcess):
                child.kill()
        psutil.wait_procs(alive, timeout=10)
