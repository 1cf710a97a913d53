"""Start, stop and inspect the local demo shop: the functions behind ``harness demo up|down|status``.

The demo runs detached under its supervisor (:mod:`harness.demo.supervisor`), so it outlives the
command that started it and a scenario can be run against it from another terminal. All state is
in one directory (default ``<data dir>/demo``): pid files and logs. Every signal this module
sends goes to a PID read from that directory *and* verified by its command line, never to a
process found by name, so a stale pid file can never make it kill something else.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import json
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psutil

from harness.errors import ConfigError, DemoError
from harness.paths import data_dir

from . import network
from . import victoria as metrics
from .breaker import DEFAULT_BREAKER, BreakerSettings
from .supervisor import (
    CONTROL_OFFSET,
    DNS_CONTROL_OFFSET,
    PORTS_USED,
    SERVICE_NAMES,
    SUPERVISOR,
    SUPERVISOR_MODULE,
    catalog_replica_ports,
    child_environment,
    is_service_process,
    is_supervisor_process,
    option_value,
    pid_file,
    process_cmdline,
    process_pattern,
    read_pid_file,
    remove_pid_file,
    service_port,
)

__all__ = [
    "DEFAULT_BASE_PORT",
    "DEMO_PROCESS_PATTERN",
    "SERVICE_NAMES",
    "DemoError",
    "DemoInfo",
    "default_directory",
    "down",
    "process_pattern",
    "status",
    "up",
]

DEFAULT_BASE_PORT = 8700
HOST = "127.0.0.1"

DEMO_PROCESS_PATTERN: dict[str, str] = {name: process_pattern(name) for name in SERVICE_NAMES}
"""Regex per service matching its full command line, for ``process`` faults that target by
``pattern``. It matches that service in *any* running demo; ``process_pattern(name, base_port)``
or the pid file ``<dir>/<name>.pid`` pins one demo."""

_SPAWNED: dict[int, subprocess.Popen[bytes]] = {}  # supervisors started by this process, to reap


@dataclass(frozen=True)
class DemoInfo:
    """A running demo: where its files are, where users reach it, and its processes."""

    directory: Path
    base_url: str
    pids: dict[str, int]
    supervisor_pid: int
    payments_netns: network.DemoNet | None = None  # None: payments is on loopback
    note: str = ""  # why payments is on loopback, when it is
    metrics_url: str | None = None  # the demo's VictoriaMetrics (Prometheus query API); None: not installed


def default_directory() -> Path:
    return data_dir() / "demo"


def up(
    directory: Path | None = None,
    base_port: int = DEFAULT_BASE_PORT,
    restart_delay: float = 3.0,
    timeout: float = 20.0,
    clock_shims: tuple[str, ...] = (),
    catalog_instances: int = 1,
    breaker: BreakerSettings = DEFAULT_BREAKER,
) -> DemoInfo:
    """Start the demo detached and wait until it serves; return the running demo if already up.

    ``clock_shims`` names services started under harness's clock shim (``time.skew`` faults);
    ``catalog_instances`` runs catalog as that many instances behind the gateway (round robin),
    the further ones on the ports after the demo's own (a demo already up keeps its own).
    ``breaker`` is the gateway's circuit breaker around payments.
    Raises :class:`ConfigError` when the ports are taken by something else or the demo in this
    directory already runs on another base port, without a clock shim asked for or with other
    breaker settings, and
    :class:`DemoError` when it does not become healthy within ``timeout`` seconds (whatever was
    started is stopped again).
    """
    directory = _directory(directory)
    _check_base_port(base_port)
    with _locked(directory):
        running = _running_supervisor(directory)
        if running is not None:
            _check_clock_shims(directory, running, clock_shims)
            _check_breaker(directory, running, breaker)
            return _adopt(directory, running, base_port, timeout)
        _remove_pid_files(directory)  # stale ones from a crash
        _check_ports_free(base_port, catalog_instances)
        net, note = _payments_network(directory, base_port)
        supervisor = _spawn_supervisor(
            directory, base_port, restart_delay, net is not None, clock_shims, catalog_instances, breaker
        )
        try:
            info = _wait_until_ready(directory, base_port, supervisor, timeout, all_healthy=True)
        except BaseException:
            if _alive(supervisor):  # ours, and maybe too young to have written its pid file
                _terminate(supervisor, 10.0)
            _stop(directory, 10.0)
            raise
        return dataclasses.replace(info, payments_netns=net, note=note)


NETNS_FILE = "payments.netns"  # the base port whose namespace this demo made, for down


def _payments_network(directory: Path, base_port: int) -> tuple[network.DemoNet | None, str]:
    """Make payments' namespace when this host allows it; else (None, why not)."""
    reason = network.unavailable_reason()
    if reason is not None:
        return None, f"payments runs on loopback ({reason}): network faults cannot single it out"
    net = network.for_base_port(base_port)
    try:
        network.ensure(net)
    except (OSError, subprocess.SubprocessError) as exc:
        detail = getattr(exc, "stderr", "") or str(exc)
        return None, f"payments runs on loopback (its namespace could not be made: {str(detail).strip()})"
    (directory / NETNS_FILE).write_text(f"{base_port}\n")
    return net, ""


def down(directory: Path | None = None, timeout: float = 10.0) -> bool:
    """Stop the demo; True if anything was running. Safe to call any number of times.

    SIGTERM to the supervisor (which stops its services), SIGKILL after ``timeout``; then any
    service left over from a supervisor that died hard is stopped too, and the pid files go.
    """
    directory = _directory(directory)
    with _locked(directory):
        return _stop(directory, timeout)


def status(directory: Path | None = None) -> dict[str, int | None]:
    """PID of the supervisor and of each service, None for whatever is not running."""
    directory = _directory(directory)
    result: dict[str, int | None] = {SUPERVISOR: _running_supervisor(directory)}
    result.update(_service_pids(directory))
    return result


# ---------------------------------------------------------------------------------------------
# up
# ---------------------------------------------------------------------------------------------


def _directory(directory: Path | None) -> Path:
    path = (directory or default_directory()).resolve()
    path.mkdir(parents=True, exist_ok=True)
    return path


@contextlib.contextmanager
def _locked(directory: Path) -> Iterator[None]:
    """Serialise up/down on one directory, so two concurrent ``up`` calls start one demo."""
    with open(directory / ".lock", "a") as lock_file:
        fcntl.flock(lock_file, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock_file, fcntl.LOCK_UN)


def _check_base_port(base_port: int) -> None:
    if not 1 <= base_port <= 65535 - PORTS_USED + 1:
        raise ConfigError(f"demo base port {base_port} is out of range (the demo uses {PORTS_USED} consecutive ports)")


def _adopt(directory: Path, supervisor_pid: int, base_port: int, timeout: float) -> DemoInfo:
    """The demo is already up: return it, if it is the one asked for."""
    running_port = option_value(process_cmdline(supervisor_pid) or [], "--base-port")
    running = int(running_port) if running_port and running_port.isdigit() else DEFAULT_BASE_PORT
    if running != base_port:
        raise ConfigError(
            f"the demo in {directory} already runs on base port {running}, not {base_port}; "
            "run `harness demo down` first or use that port"
        )
    info = _wait_until_ready(directory, base_port, supervisor_pid, timeout, all_healthy=False)
    made = directory / NETNS_FILE
    net = network.for_base_port(base_port) if made.exists() else None
    return dataclasses.replace(info, payments_netns=net)


def _check_clock_shims(directory: Path, supervisor_pid: int, wanted: tuple[str, ...]) -> None:
    cmdline = process_cmdline(supervisor_pid) or []
    running = {cmdline[i + 1] for i, arg in enumerate(cmdline[:-1]) if arg == "--clock-shim"}
    missing = sorted(set(wanted) - running)
    if missing:
        raise ConfigError(
            f"the demo in {directory} already runs without the clock shim for {', '.join(missing)}; "
            "run `harness demo down` first, then up again with --clock-shim"
        )


def _check_breaker(directory: Path, supervisor_pid: int, wanted: BreakerSettings) -> None:
    cmdline = process_cmdline(supervisor_pid) or []
    failures = option_value(cmdline, "--breaker-failures")
    reset = option_value(cmdline, "--breaker-reset")
    defaults = BreakerSettings()
    running = BreakerSettings(
        int(failures) if failures is not None else defaults.failures,
        float(reset) if reset is not None else defaults.reset,
    )
    if running != wanted:
        raise ConfigError(
            f"the demo in {directory} already runs with the circuit breaker at --breaker-failures "
            f"{running.failures} --breaker-reset {running.reset:g}, not {wanted.failures} and {wanted.reset:g}; "
            "run `harness demo down` first"
        )


def _check_ports_free(base_port: int, catalog_instances: int = 1) -> None:
    replicas = catalog_replica_ports(base_port, catalog_instances)
    ports = {
        **{service_port(n, base_port): n for n in SERVICE_NAMES},
        **{port: f"catalog-{i + 2}" for i, port in enumerate(replicas)},
        base_port + CONTROL_OFFSET: "proxy control",
        base_port + DNS_CONTROL_OFFSET: "dns control",
        **({metrics.metrics_port(base_port): "victoria-metrics"} if metrics.available() else {}),
    }
    busy = [(port, name) for port, name in ports.items() if not _port_free(port)]
    if not busy:
        return
    detail = "; ".join(f"port {port} ({name}) is in use{_port_owner(port)}" for port, name in busy)
    raise ConfigError(f"cannot start the demo on {HOST}: {detail}; stop that or choose another base port (--base-port)")


def _port_free(port: int) -> bool:
    """Whether our services could bind the port (SO_REUSEADDR, as they use: TIME_WAIT is no obstacle)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((HOST, port))
        except OSError:
            return False
    return True


def _port_owner(port: int) -> str:
    """`` used by pid N (name)`` when that can be found out, for a message a user can act on."""
    try:
        for conn in psutil.net_connections(kind="tcp"):
            if conn.laddr and conn.laddr.port == port and conn.status == psutil.CONN_LISTEN and conn.pid:
                return f" by pid {conn.pid} ({psutil.Process(conn.pid).name()})"
    except psutil.Error:
        pass
    return ""


def _spawn_supervisor(
    directory: Path,
    base_port: int,
    restart_delay: float,
    payments_netns: bool,
    clock_shims: tuple[str, ...],
    catalog_instances: int = 1,
    breaker: BreakerSettings = DEFAULT_BREAKER,
) -> int:
    """Start the supervisor in its own session: the caller's Ctrl-C or exit must not reach it."""
    command = [
        sys.executable,
        "-m",
        SUPERVISOR_MODULE,
        "--dir",
        str(directory),
        "--base-port",
        str(base_port),
        "--restart-delay",
        repr(float(restart_delay)),
        *(["--payments-netns"] if payments_netns else []),
        *[arg for name in clock_shims for arg in ("--clock-shim", name)],
        *(["--catalog-instances", str(catalog_instances)] if catalog_instances > 1 else []),
        *["--breaker-failures", str(breaker.failures), "--breaker-reset", repr(float(breaker.reset))],
    ]
    with open(directory / "supervisor.out", "ab") as out:
        process = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=directory,
            env=child_environment(),
            start_new_session=True,
            close_fds=True,
        )
    _SPAWNED[process.pid] = process
    return process.pid


def _wait_until_ready(
    directory: Path, base_port: int, supervisor_pid: int, timeout: float, all_healthy: bool
) -> DemoInfo:
    """Poll until every service has a live pid and the gateway's /health answers.

    A fresh demo must report every downstream ok, so the first requests of a run do not fail;
    an adopted one only needs the gateway up (a chaos test may be pausing a dependency).
    """
    base_url = f"http://{HOST}:{base_port}"
    deadline = time.monotonic() + timeout
    while True:
        if not _alive(supervisor_pid):
            raise DemoError(f"the demo supervisor exited during start-up{_log_tail(directory)}")
        pids = {name: pid for name, pid in _service_pids(directory).items() if pid is not None}
        if len(pids) == len(SERVICE_NAMES) and _healthy(base_url, all_healthy):
            return DemoInfo(directory, base_url, pids, supervisor_pid, metrics_url=_metrics(base_port, deadline))
        if time.monotonic() >= deadline:
            raise DemoError(f"the demo was not healthy within {timeout:g} s; logs are in {directory}")
        time.sleep(0.1)


_DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # never via $http_proxy


def _metrics(base_port: int, deadline: float) -> str | None:
    """The demo's VictoriaMetrics URL once it answers (a probe's preflight may ask at once), None without it."""
    if not metrics.available():
        return None
    if not metrics.wait_ready(base_port, max(1.0, deadline - time.monotonic())):
        raise DemoError(f"the demo's VictoriaMetrics did not answer on {metrics.metrics_url(base_port)}")
    return metrics.metrics_url(base_port)


def _healthy(base_url: str, all_healthy: bool) -> bool:
    try:
        with _DIRECT.open(f"{base_url}/health", timeout=2.0) as response:
            body = json.loads(response.read())
    except (OSError, ValueError):
        return False
    return not all_healthy or body.get("status") == "ok"


def _log_tail(directory: Path, lines: int = 15) -> str:
    tail: list[str] = []
    for name in ("supervisor.out", "supervisor.log"):
        with contextlib.suppress(OSError):
            tail += (directory / name).read_text(errors="replace").splitlines()[-lines:]
    return ":\n" + "\n".join(tail) if tail else f"; see the logs in {directory}"


# ---------------------------------------------------------------------------------------------
# down and status
# ---------------------------------------------------------------------------------------------


def _stop(directory: Path, timeout: float) -> bool:
    stopped = False
    supervisor = _running_supervisor(directory)
    if supervisor is not None:
        _terminate(supervisor, timeout)
        stopped = True
    for name, pid in _service_pids(directory).items():  # left over only if the supervisor died hard
        if pid is not None and is_service_process(pid, name):
            _terminate(pid, 3.0)
            stopped = True
    _reap_spawned()
    _remove_pid_files(directory)
    made = directory / NETNS_FILE
    if made.exists():  # after the services: payments' namespace goes last
        text = made.read_text().strip()
        if text.isdigit():
            network.remove(network.for_base_port(int(text)))
        made.unlink(missing_ok=True)
    return stopped


def _running_supervisor(directory: Path) -> int | None:
    pid = read_pid_file(pid_file(directory, SUPERVISOR))
    _reap_spawned()
    return pid if pid is not None and is_supervisor_process(pid, directory) else None


def _service_pids(directory: Path) -> dict[str, int | None]:
    pids: dict[str, int | None] = {}
    for name in SERVICE_NAMES:
        pid = read_pid_file(pid_file(directory, name))
        pids[name] = pid if pid is not None and is_service_process(pid, name) else None
    return pids


def _remove_pid_files(directory: Path) -> None:
    for name in (SUPERVISOR, *SERVICE_NAMES, metrics.METRICS_NAME):
        remove_pid_file(pid_file(directory, name))


def _terminate(pid: int, timeout: float) -> None:
    """SIGTERM (plus SIGCONT, in case it is paused), SIGKILL if still there after ``timeout``."""
    try:
        process = psutil.Process(pid)  # one object: psutil refuses to signal a reused pid
    except psutil.Error:
        return
    for signum, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 5.0)):
        try:
            process.send_signal(signum)
            process.resume()
        except psutil.Error:
            return
        if _wait_gone(pid, wait):
            return


def _wait_gone(pid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while _alive(pid):
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.05)
    return True


def _alive(pid: int) -> bool:
    """Running or stopped, but neither gone nor a zombie (our own zombies are reaped here)."""
    _reap_spawned()
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def _reap_spawned() -> None:
    for pid, process in list(_SPAWNED.items()):
        if process.poll() is not None:
            del _SPAWNED[pid]
