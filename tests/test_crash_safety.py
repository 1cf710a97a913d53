"""Crash safety of the whole fault stack: SIGKILL a real ``harness run`` mid-fault.

The run holds, at once, an nftables partition (TCP port 7000 to B), nftables random loss
(50% of UDP to B), a tbf qdisc on A's veth, a blackhole route, a paused process and a FUSE
mount slowing reads in a directory (io.latency, its server a process of its own). Two ways
out are checked:

* the driver is SIGKILLed and the node's watchdog reverts everything within the lease TTL + 2 s;
* the driver *and* the watchdog are SIGKILLed, so the journal is all that is left, and
  ``harness recover`` restores everything.

"Nothing left" is checked on the kernel objects themselves (``nft``, qdiscs, routes), on the
paused process, and with real traffic between the namespaces of ``tests.test_chaos_network``.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

from harness.chaos import clock_shim, watchdog
from harness.chaos.agent import LEASE_TTL
from harness.chaos.journal import Journal
from tests.test_chaos_network import (
    ADDR_B,
    NS_A,
    VETH_A,
    _client,
    _connects,
    _nft_tables,
    _root_qdisc,
    _routes,
    netns_pair,  # noqa: F401 - the fixture
)
from tests.test_watchdog import Sleeper, _stop_pid, _wait_for

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root for network namespaces"),
    pytest.mark.usefixtures("netns_pair"),
]

ROOT = Path(__file__).resolve().parents[1]
BLACKHOLED = "10.213.78.9/32"


def _scenario(tmp_path: Path, port: int, sleeper: ShimmedSleeper, influx_url: str, name: str) -> Path:
    path = tmp_path / f"{name}.yaml"
    path.write_text(
        f"""
name: {name}
target:
  base_url: http://127.0.0.1:{port}
load:
  locustfile: {ROOT / "tests" / "locustfiles" / "ping.py"}
  user_classes: [{{class: Idler}}]
  processes: 1
  stages:
    - {{name: steady, duration: 90s, users: 2, spawn_rate: 2}}
faults:
  - {{name: cut-tcp, kind: network.partition, at: 1s, duration: 80s,
      target: {{netns: {NS_A}}}, params: {{peers: [{ADDR_B}], ports: [7000]}}}}
  - {{name: lossy-udp, kind: network.loss, at: 1s, duration: 80s,
      target: {{netns: {NS_A}}}, params: {{peers: [{ADDR_B}], percent: 50, method: nftables}}}}
  - {{name: slow-link, kind: network.bandwidth, at: 1s, duration: 80s,
      target: {{netns: {NS_A}, interface: {VETH_A}}}, params: {{rate: 1mbit}}}}
  - {{name: blackhole, kind: network.partition, at: 1s, duration: 80s,
      target: {{netns: {NS_A}}}, params: {{peers: ["{BLACKHOLED}"], method: blackhole}}}}
  - {{name: pause-sleeper, kind: process.pause, at: 1s, duration: 80s,
      target: {{pid_file: {sleeper.pid_file}}}}}
  - {{name: skew-sleeper, kind: time.skew, at: 1s, duration: 80s,
      target: {{pid_file: {sleeper.pid_file}}}, params: {{offset: -10m}}}}
  - {{name: slow-disk, kind: io.latency, at: 1s, duration: 80s,
      params: {{volume_path: {_volume(tmp_path)}, methods: [read], delay: 5ms}}}}
results:
  url: {influx_url}
  database: crash
safety:
  allowed_networks: [{ADDR_B}/32, "{BLACKHOLED}"]
""".lstrip()
    )
    return path


def _volume(tmp_path: Path) -> Path:
    volume = tmp_path / "volume"
    volume.mkdir(exist_ok=True)
    return volume


def _io_mounts() -> list[str]:
    return [line for line in Path("/proc/self/mountinfo").read_text().splitlines() if "fuse.harness-io" in line]


def _left_behind(sleeper: ShimmedSleeper) -> list[str]:
    """Every harness object still in place; empty when everything was reverted."""
    left = [f"nft table {t}" for t in _nft_tables(NS_A) if t.startswith("harness_")]
    left += [f"io mount {line.split()[4]}" for line in _io_mounts()]
    if _root_qdisc(NS_A, VETH_A) != "noqueue":
        left.append(f"qdisc {_root_qdisc(NS_A, VETH_A)} on {VETH_A}")
    left += [f"route {r}" for r in _routes(NS_A) if "metric 4852" in r]
    if sleeper.status() == psutil.STATUS_STOPPED:
        left.append(f"pid {sleeper.pid} stopped")
    if clock_shim.read_skew(sleeper.skew_file) != clock_shim.REST:
        left.append(f"skew {clock_shim.read_skew(sleeper.skew_file)} in {sleeper.skew_file}")
    return left


def _all_applied(sleeper: ShimmedSleeper) -> bool:
    return (
        sleeper.status() == psutil.STATUS_STOPPED
        and clock_shim.read_skew(sleeper.skew_file) != clock_shim.REST
        and bool([t for t in _nft_tables(NS_A) if t.startswith("harness_")])
        and _root_qdisc(NS_A, VETH_A) == "tbf"
        and any("metric 4852" in r for r in _routes(NS_A))
        and bool(_io_mounts())
    )


def _traffic_flows() -> bool:
    return _connects(1.0) and _client("udp", ADDR_B, "100")["received"] == 100


@pytest.fixture
def http_target(tmp_path: Path) -> Iterator[int]:
    from tests.influx_fixtures import free_port

    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1", "--directory", str(tmp_path)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        yield port
    finally:
        server.terminate()
        server.wait(10)


class ShimmedSleeper(Sleeper):
    """A ``sleep 60`` started under harness's clock shim, so time.skew can act on it too."""

    def __init__(self, directory: Path) -> None:
        self.skew_file = directory / "sleeper.faketime"
        env = clock_shim.shim_environment(self.skew_file)
        self.popen = subprocess.Popen(["sleep", "60"], stdin=subprocess.DEVNULL, env=env)
        self.pid = self.popen.pid
        self.pid_file = directory / f"sleeper-{self.pid}.pid"
        self.pid_file.write_text(f"{self.pid}\n")


@pytest.fixture
def sleeper(tmp_path: Path) -> Iterator[ShimmedSleeper]:
    proc = ShimmedSleeper(tmp_path)
    try:
        yield proc
    finally:
        proc.cleanup()


class Driver:
    """A ``harness run`` subprocess and everything it started, killed by PID at the end."""

    def __init__(self, scenario: Path, run_id: str, tmp_path: Path) -> None:
        self.env = {**os.environ, "HARNESS_RUNS_DIR": str(tmp_path / "runs")}
        self.log = tmp_path / f"{run_id}.log"
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "harness.cli", "run", str(scenario), "--run-id", run_id],
            env=self.env,
            stdin=subprocess.DEVNULL,
            stdout=open(self.log, "wb"),  # noqa: SIM115 - closed with the process
            stderr=subprocess.STDOUT,
        )
        self.tree: list[psutil.Process] = []

    def output(self) -> str:
        return self.log.read_text()[-3000:]

    def sigkill(self, spare: int | None) -> float:
        """SIGKILL the driver (only); remember its process tree for the cleanup."""
        self.tree = [p for p in psutil.Process(self.proc.pid).children(recursive=True) if p.pid != spare]
        self.proc.send_signal(signal.SIGKILL)
        killed_at = time.time()
        self.proc.wait(10)
        return killed_at

    def cleanup(self) -> None:
        if self.proc.poll() is None:
            self.tree = psutil.Process(self.proc.pid).children(recursive=True)
            self.proc.kill()
            self.proc.wait(10)
        _gone, alive = psutil.wait_procs(self.tree, timeout=15)  # Ray leaves with its driver
        for proc in alive:
            with contextlib.suppress(psutil.NoSuchProcess):
                proc.kill()
        psutil.wait_procs(alive, timeout=10)


def _start(tmp_path: Path, port: int, sleeper: ShimmedSleeper, influxd: Any, run_id: str) -> tuple[Driver, Path]:
    influxd.create_database("crash")
    assert _traffic_flows(), "traffic between the namespaces does not flow before the run"
    driver = Driver(_scenario(tmp_path, port, sleeper, influxd.url, run_id), run_id, tmp_path)
    journal_dir = Path(os.environ["HARNESS_DATA_DIR"]) / "journal"
    assert _wait_for(lambda: _all_applied(sleeper) or driver.proc.poll() is not None, 90, step=0.1), (
        f"the faults were never all applied: {_left_behind(sleeper)}\n{driver.output()}"
    )
    assert driver.proc.poll() is None, driver.output()
    assert not _connects(0.5), "the partition is applied but TCP to B still connects"
    return driver, journal_dir


def test_sigkilled_driver_every_fault_reverted_by_the_watchdog_within_ttl_plus_2s(
    tmp_path: Path, http_target: int, sleeper: ShimmedSleeper, influxd: Any
) -> None:
    driver, journal_dir = _start(tmp_path, http_target, sleeper, influxd, "crash-watchdog")
    watchdog_pid: int | None = None
    try:
        time.sleep(2.0)  # renewals keep the leases alive meanwhile
        assert _all_applied(sleeper), f"a renewed fault was reverted: {_left_behind(sleeper)}\n{driver.output()}"
        watchdog_pid = watchdog.running_pid(journal_dir)
        assert watchdog_pid is not None, "no watchdog runs for the journal"
        killed_at = driver.sigkill(spare=watchdog_pid)
        clean = _wait_for(lambda: not _left_behind(sleeper), LEASE_TTL + 2.0, step=0.02)
        took = time.time() - killed_at
        print(f"every fault reverted {took:.2f} s after SIGKILL of the driver (lease TTL {LEASE_TTL:g} s)")
        assert clean, f"left behind {took:.1f} s after the kill: {_left_behind(sleeper)}"
        assert took <= LEASE_TTL + 2.0
        assert _traffic_flows(), "traffic does not flow again after the watchdog's revert"
        recovered = subprocess.run(
            [sys.executable, "-m", "harness.cli", "recover"], env=driver.env, capture_output=True, text=True, timeout=60
        )
        assert recovered.returncode == 0, recovered.stdout + recovered.stderr
        assert "nothing to recover" in recovered.stdout, recovered.stdout
    finally:
        driver.cleanup()
        _stop_pid(watchdog_pid)
        subprocess.run(  # on a failure above: revert what the journal still names (the io mount outlives the test)
            [sys.executable, "-m", "harness.cli", "recover"], env=driver.env, capture_output=True, text=True, timeout=60
        )


def test_driver_and_watchdog_killed_then_recover_restores_everything(
    tmp_path: Path, http_target: int, sleeper: ShimmedSleeper, influxd: Any
) -> None:
    driver, journal_dir = _start(tmp_path, http_target, sleeper, influxd, "crash-recover")
    try:
        watchdog_pid = watchdog.running_pid(journal_dir)
        assert watchdog_pid is not None
        os.kill(watchdog_pid, signal.SIGKILL)  # first: it must not get to revert anything
        assert _wait_for(lambda: not psutil.pid_exists(watchdog_pid) or _zombie(watchdog_pid), 5)
        driver.sigkill(spare=None)
        driver.cleanup()  # Ray and Locust gone too: nothing but the journal knows the faults
        time.sleep(LEASE_TTL + 1.0)  # the leases have lapsed, and no one reverted them
        left = _left_behind(sleeper)
        # one nft table holds both nftables faults' chains: 7 faults, 6 objects
        assert len(left) == 6, f"expected every fault still applied, found only {left}"
        outstanding = Journal("crash-recover", journal_dir).outstanding()
        assert sorted(r.fault_name for r in outstanding) == [
            "blackhole",
            "cut-tcp",
            "lossy-udp",
            "pause-sleeper",
            "skew-sleeper",
            "slow-disk",
            "slow-link",
        ]
        recovered = subprocess.run(
            [sys.executable, "-m", "harness.cli", "recover"], env=driver.env, capture_output=True, text=True, timeout=60
        )
        print(recovered.stdout)
        assert recovered.returncode == 0, recovered.stdout + recovered.stderr
        for name in ("blackhole", "cut-tcp", "lossy-udp", "pause-sleeper", "skew-sleeper", "slow-disk", "slow-link"):
            assert f"'{name}'" in recovered.stdout, recovered.stdout
        assert _left_behind(sleeper) == []
        assert _traffic_flows(), "traffic does not flow again after harness recover"
        again = subprocess.run(
            [sys.executable, "-m", "harness.cli", "recover"], env=driver.env, capture_output=True, text=True, timeout=60
        )
        assert again.returncode == 0 and "nothing to recover" in again.stdout, again.stdout
    finally:
        driver.cleanup()
        # On a failure above, the journal still names what is applied: the io mount outlives the
        # test's namespaces and processes, so revert from the journal whatever happened.
        subprocess.run(
            [sys.executable, "-m", "harness.cli", "recover"], env=driver.env, capture_output=True, text=True, timeout=60
        )


def _zombie(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True
