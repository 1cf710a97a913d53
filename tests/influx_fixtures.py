"""Real result servers for tests: influxd 1.x and VictoriaMetrics on loopback.

Loaded as a pytest plugin (``pytest_plugins = ["tests.influx_fixtures"]`` in conftest.py).
No mocks: the writers are tested against the servers they will meet.  Every server started
here runs on a free loopback port with its own data directory, and is stopped in a
``finally`` (SIGTERM, then SIGKILL) with a check that the process is really gone, also when
the test fails.

* ``influxd`` (session): a shared influxd; tests use their own database names.
* ``victoria_metrics`` (session): VictoriaMetrics, the real server behind the v2 write test.
* :func:`running_influxd`: a context manager for tests that need a server of their own, for
  example one that comes up on a port where the writer has been failing.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.parse
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from harness.results._http import http_request
from harness.results.embedded import config_path, ping, render_config
from harness.results.query import InfluxQuery

__all__ = [
    "InfluxServer",
    "VictoriaMetricsServer",
    "free_port",
    "influxd",
    "running_influxd",
    "running_victoria_metrics",
    "stop_process",
    "victoria_metrics",
]

VICTORIA_METRICS = "/usr/bin/victoria-metrics"
START_TIMEOUT = 20.0


def free_port() -> int:
    """A loopback port nobody listens on right now (the kernel picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _register(pid: int) -> None:
    """Tell the lead's leftover-process check that this session server is expected."""
    try:
        from tests.conftest import register_session_process
    except ImportError:
        return
    register_session_process(pid)


def stop_process(proc: subprocess.Popen[bytes], term_timeout: float = 10.0) -> None:
    """SIGTERM, wait, SIGKILL, wait; then insist the process is gone (reaped, not a zombie)."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(term_timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            proc.wait(10)
    assert proc.poll() is not None, f"process {proc.pid} is still running"
    # Reaped by wait(): the PID is gone, or the kernel already gave it to an unrelated process.
    args = [str(a) for a in proc.args] if isinstance(proc.args, list | tuple) else [str(proc.args)]
    assert _cmdline(proc.pid) != args, f"process {proc.pid} is still in /proc"


def _cmdline(pid: int) -> list[str] | None:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return None
    return [part.decode(errors="replace") for part in raw.split(b"\0") if part]


def _wait_until(check: Callable[[], bool], proc: subprocess.Popen[bytes], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        if proc.poll() is not None:
            return False
        time.sleep(0.1)
    return check()


@dataclass
class InfluxServer:
    """A running influxd: where it answers, its PID, and helpers to query it."""

    url: str
    port: int
    rpc_port: int
    pid: int
    root: Path
    process: subprocess.Popen[bytes]

    def query(self, q: str, db: str = "", epoch: str = "ns") -> list[dict[str, Any]]:
        return InfluxQuery(self.url, db).query(q, epoch=epoch)

    def create_database(self, name: str) -> str:
        escaped = name.replace("\\", "\\\\").replace('"', '\\"')
        InfluxQuery(self.url, "").query(f'CREATE DATABASE "{escaped}"')
        return name

    def count(self, db: str, measurement: str, field: str) -> int:
        rows = self.query(f'SELECT count("{field}") FROM "{measurement}"', db)
        return int(rows[0]["count"]) if rows else 0

    def log(self) -> str:
        path = self.root / "influxd.log"
        return path.read_text(errors="replace") if path.exists() else ""


@contextlib.contextmanager
def running_influxd(root: Path, port: int | None = None, rpc_port: int | None = None) -> Iterator[InfluxServer]:
    """Start influxd with its own config under ``root``; stop it (and check) on the way out.

    The config is the embedded server's own (harness.results.embedded.render_config), so the
    tests also prove that config works.  With no ``port`` given, a free one is found; if
    another process grabs it first, the start is retried on a new port.
    """
    binary = shutil.which("influxd")
    if binary is None:
        pytest.skip("influxd is not installed (Debian package influxdb)")
    attempts = 1 if port is not None else 3
    last_log = ""
    for _ in range(attempts):
        http_port = port if port is not None else free_port()
        backup_port = rpc_port if rpc_port is not None else free_port()
        conf = config_path(root)
        conf.parent.mkdir(parents=True, exist_ok=True)
        conf.write_text(render_config(root, http_port, backup_port))
        log_path = conf.parent / "influxd.log"
        url = f"http://127.0.0.1:{http_port}"
        with open(log_path, "ab") as log:
            proc = subprocess.Popen(
                [binary, "-config", str(conf)],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

        def answers(url: str = url) -> bool:
            return ping(url, timeout=0.5)

        try:
            if _wait_until(answers, proc, START_TIMEOUT):
                yield InfluxServer(url, http_port, backup_port, proc.pid, conf.parent, proc)
                return
            last_log = log_path.read_text(errors="replace")[-2000:]
        finally:
            stop_process(proc)
    raise RuntimeError(f"influxd did not start; its log ends with:\n{last_log}")


@pytest.fixture(scope="session")
def influxd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[InfluxServer]:
    """One influxd for the whole session (tests isolate themselves by database name)."""
    with running_influxd(tmp_path_factory.mktemp("influxd")) as server:
        _register(server.pid)
        yield server


@dataclass
class VictoriaMetricsServer:
    """A running VictoriaMetrics; ``export`` reads back what the v2 writer sent."""

    url: str
    port: int
    pid: int
    root: Path
    process: subprocess.Popen[bytes]

    def flush(self) -> None:
        """Make just-written samples searchable now instead of within a second or so."""
        http_request("GET", f"{self.url}/internal/force_flush", timeout=5)

    def export(self, match: str) -> list[dict[str, Any]]:
        """``/api/v1/export`` parsed: one {"metric", "values", "timestamps"} dict per series."""
        self.flush()
        query = urllib.parse.urlencode({"match[]": match})
        status, body = http_request("GET", f"{self.url}/api/v1/export?{query}", timeout=10)
        assert status == 200, body[:500]
        return [json.loads(line) for line in body.decode().splitlines() if line.strip()]


@contextlib.contextmanager
def running_victoria_metrics(root: Path) -> Iterator[VictoriaMetricsServer]:
    if not os.access(VICTORIA_METRICS, os.X_OK):
        pytest.skip(f"{VICTORIA_METRICS} is missing: apt-get install victoria-metrics (the v2 write test server)")
    last_log = ""
    for _ in range(3):
        port = free_port()
        data = root / "data"
        log_path = root / "victoria-metrics.log"
        with open(log_path, "ab") as log:
            proc = subprocess.Popen(
                [
                    VICTORIA_METRICS,
                    f"-httpListenAddr=127.0.0.1:{port}",
                    f"-storageDataPath={data}",
                    "-loggerLevel=ERROR",
                    "-retentionPeriod=100y",
                ],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        url = f"http://127.0.0.1:{port}"

        def healthy(url: str = url) -> bool:
            try:
                status, body = http_request("GET", f"{url}/health", timeout=0.5)
            except OSError:
                return False
            return status == 200 and body.strip() == b"OK"

        try:
            if _wait_until(healthy, proc, START_TIMEOUT):
                yield VictoriaMetricsServer(url, port, proc.pid, root, proc)
                return
            last_log = log_path.read_text(errors="replace")[-2000:]
        finally:
            stop_process(proc)
    raise RuntimeError(f"victoria-metrics did not start; its log ends with:\n{last_log}")


@pytest.fixture(scope="session")
def victoria_metrics(tmp_path_factory: pytest.TempPathFactory) -> Iterator[VictoriaMetricsServer]:
    """VictoriaMetrics accepts /api/v2/write: the real server for the influxdb-client writer."""
    with running_victoria_metrics(tmp_path_factory.mktemp("victoria-metrics")) as server:
        _register(server.pid)
        yield server
