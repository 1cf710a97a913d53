"""The demo shop's supervisor: starts the four services and restarts any that dies.

``python -m harness.demo.supervisor --dir DIR --base-port 8700 --restart-delay 3``

It plays the part of systemd or a container runtime for the local demo: a service killed by a
chaos fault comes back ``--restart-delay`` seconds later, which is what makes recovery time a
thing a scenario can measure. A paused (SIGSTOPped) service is not dead and is left alone.

Files in DIR: ``<name>.pid`` for each running service (removed while it is down, rewritten on
restart), ``supervisor.pid``, and logs ``<name>.log`` and ``supervisor.log``. A service named by
``--clock-shim NAME`` runs under harness's clock shim (:mod:`harness.chaos.clock_shim`) with its
skew file ``<name>.faketime`` (written unskewed at each start), so ``time.skew`` faults can move
its wall clock. Services die with
the supervisor (PR_SET_PDEATHSIG), so nothing lingers even if the supervisor is SIGKILLed.

This module also holds the small helpers shared with :mod:`harness.demo.control` (pid files,
command lines, process identification); it imports no gevent.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import logging
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

import psutil

from harness.chaos import clock_shim

from .breaker import DEFAULT_BREAKER, BreakerSettings
from .network import for_base_port
from .victoria import METRICS_NAME, METRICS_OFFSET, metrics_command

__all__ = [
    "CONTROL_OFFSET",
    "DEMO_RECORDS",
    "DNS_CONTROL_OFFSET",
    "MAX_CATALOG_INSTANCES",
    "PAYMENTS_NAME",
    "PORTS_USED",
    "PORT_OFFSETS",
    "SERVICES_MODULE",
    "SERVICE_NAMES",
    "SUPERVISOR_MODULE",
    "Supervisor",
    "catalog_replica_ports",
    "is_service_process",
    "is_supervisor_process",
    "main",
    "pid_file",
    "process_pattern",
    "read_pid_file",
    "service_port",
    "skew_file",
]

SERVICE_NAMES = ("catalog", "cart", "payments", "proxy", "dns", "gateway")  # start order: the gateway last
# The gateway reaches payments through a fault proxy (harness.chaos.proxy_server), whose
# control API on base + CONTROL_OFFSET takes proxy.* faults (target.control). It finds the
# proxy by the name PAYMENTS_NAME, which the demo's DNS server (harness.chaos.dns_server, UDP
# and TCP on base + 6) answers; that server's control API on base + DNS_CONTROL_OFFSET takes
# dns.* faults (target.control).
PORT_OFFSETS = {"gateway": 0, "catalog": 1, "cart": 2, "payments": 3, "proxy": 4, "dns": 6}
CONTROL_OFFSET = 5
DNS_CONTROL_OFFSET = 7
PORTS_USED = METRICS_OFFSET + 1  # the last: the demo's VictoriaMetrics (harness.demo.victoria)
PAYMENTS_NAME = "payments.shop.demo"
#: What the demo's DNS server answers (every name points at loopback, where the services listen).
DEMO_RECORDS = {PAYMENTS_NAME: "127.0.0.1", "catalog.shop.demo": "127.0.0.1", "cart.shop.demo": "127.0.0.1"}
SUPERVISOR_MODULE = "harness.demo.supervisor"
SERVICES_MODULE = "harness.demo.services"
SUPERVISOR = "supervisor"
STOP_GRACE = 3.0  # seconds between SIGTERM and SIGKILL for a child
POLL_INTERVAL = 0.1
_PR_SET_PDEATHSIG = 1
_REPO_ROOT = Path(__file__).resolve().parents[2]


# ---------------------------------------------------------------------------------------------
# Helpers shared with control.py
# ---------------------------------------------------------------------------------------------


def service_port(name: str, base_port: int) -> int:
    return base_port + PORT_OFFSETS[name]


def skew_file(directory: Path, name: str) -> Path:
    """``DIR/<name>.faketime``: the clock skew file of a service started under the clock shim."""
    return directory / f"{name}.faketime"


def pid_file(directory: Path, name: str) -> Path:
    """``DIR/<name>.pid``; ``name`` is a service name or ``"supervisor"``."""
    return directory / f"{name}.pid"


def write_pid_file(path: Path, pid: int) -> None:
    """Write atomically, so a reader (a chaos agent, ``status``) never sees a half-written pid."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(f"{pid}\n")
    os.replace(tmp, path)


def read_pid_file(path: Path) -> int | None:
    try:
        text = path.read_text().strip()
    except OSError:
        return None
    return int(text) if text.isdigit() and int(text) > 0 else None


def remove_pid_file(path: Path) -> None:
    path.unlink(missing_ok=True)


def process_pattern(name: str, base_port: int | None = None) -> str:
    """A regex matching the full command line of service ``name`` (of one demo if a port is given)."""
    pattern = rf"{re.escape(SERVICES_MODULE)} {name}\b"
    return pattern if base_port is None else rf"{pattern} --port {service_port(name, base_port)}\b"


def process_cmdline(pid: int) -> list[str] | None:
    """The command line of a live process, or None if it is gone, a zombie, or not ours to read."""
    try:
        process = psutil.Process(pid)
        if process.status() == psutil.STATUS_ZOMBIE:
            return None
        return process.cmdline()
    except psutil.Error:
        return None


def option_value(cmdline: list[str], option: str) -> str | None:
    """The value of ``--option VALUE`` or ``--option=VALUE`` in a command line."""
    for index, arg in enumerate(cmdline):
        if arg == option and index + 1 < len(cmdline):
            return cmdline[index + 1]
        if arg.startswith(option + "="):
            return arg.split("=", 1)[1]
    return None


def is_supervisor_process(pid: int, directory: Path) -> bool:
    """True only for a live demo supervisor of this very directory: the check before any signal."""
    cmdline = process_cmdline(pid)
    if not cmdline or SUPERVISOR_MODULE not in cmdline:
        return False
    value = option_value(cmdline, "--dir")
    return value is not None and Path(value).resolve() == directory.resolve()


def is_service_process(pid: int, name: str) -> bool:
    cmdline = process_cmdline(pid)
    return bool(cmdline) and re.search(process_pattern(name), " ".join(cmdline or [])) is not None


def child_environment() -> dict[str, str]:
    """The environment of the supervisor and its services: harness importable, logs unbuffered."""
    env = dict(os.environ)
    paths = [str(_REPO_ROOT), *filter(None, env.get("PYTHONPATH", "").split(os.pathsep))]
    env["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(paths))
    env["PYTHONUNBUFFERED"] = "1"
    return env


#: The most catalog instances a demo runs (``--catalog-instances``); the further ones listen on
#: the ports after the demo's own (base + PORTS_USED, ...).
MAX_CATALOG_INSTANCES = 4


def catalog_replica_ports(base_port: int, instances: int) -> list[int]:
    """The ports of catalog's instances beyond the first (which listens on base + 1)."""
    return [base_port + PORTS_USED + i for i in range(max(0, instances - 1))]


def service_command(
    name: str,
    base_port: int,
    payments_netns: bool = False,
    catalog_instances: int = 1,
    port: int | None = None,
    breaker: BreakerSettings = DEFAULT_BREAKER,
) -> list[str]:
    """How the supervisor starts service ``name`` (on ``port``, default its own); with
    ``payments_netns`` payments runs in the demo's namespace (:mod:`harness.demo.network`) and
    the proxy forwards there; with ``catalog_instances`` the gateway calls that many catalogs;
    ``breaker`` is the gateway's circuit breaker around payments."""
    net = for_base_port(base_port)
    port = service_port(name, base_port) if port is None else port
    command = [sys.executable, "-m", SERVICES_MODULE, name, "--port", str(port)]
    if name == "payments" and payments_netns:
        command = ["ip", "netns", "exec", net.netns, *command, "--host", net.payments_address]
    if name == "gateway":
        for downstream in ("catalog", "cart"):
            command += [f"--{downstream}-port", str(service_port(downstream, base_port))]
        command += ["--payments-port", str(service_port("proxy", base_port))]  # through the fault proxy
        command += [f"--catalog-replica-port={p}" for p in catalog_replica_ports(base_port, catalog_instances)]
        command += ["--payments-name", PAYMENTS_NAME, "--nameserver", f"127.0.0.1:{service_port('dns', base_port)}"]
        command += ["--breaker-failures", str(breaker.failures), "--breaker-reset", repr(float(breaker.reset))]
    elif name == "proxy":
        command += ["--upstream-port", str(service_port("payments", base_port))]
        if payments_netns:
            command += ["--upstream-host", net.payments_address]
        command += ["--control-port", str(base_port + CONTROL_OFFSET)]
    elif name == "dns":
        command += ["--control-port", str(base_port + DNS_CONTROL_OFFSET)]
        command += [arg for name_, address in DEMO_RECORDS.items() for arg in ("--record", f"{name_}={address}")]
    return command


def die_with_parent() -> Callable[[], None]:
    """A ``preexec_fn`` that makes the child get SIGKILL when this process dies.

    SIGKILL rather than SIGTERM: a SIGSTOPped child would hold a SIGTERM pending forever. libc is
    loaded here, before the fork, so the child only makes one system call.
    """
    prctl = ctypes.CDLL(None, use_errno=True).prctl
    parent = os.getpid()

    def preexec() -> None:
        prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)
        if os.getppid() != parent:  # the parent died before prctl took effect
            os._exit(1)

    return preexec


def describe_exit(returncode: int) -> str:
    if returncode < 0:
        try:
            return f"killed by {signal.Signals(-returncode).name}"
        except ValueError:
            return f"killed by signal {-returncode}"
    return f"exited with status {returncode}"


# ---------------------------------------------------------------------------------------------
# The supervisor
# ---------------------------------------------------------------------------------------------


@dataclass
class Child:
    """One supervised service: its command and, while it runs, its process."""

    name: str
    command: list[str]
    process: subprocess.Popen[bytes] | None = None
    start_at: float = 0.0  # monotonic time of the next (re)start while ``process`` is None
    restarts: int = 0


class Supervisor:
    """Keeps the four services running until told to stop by SIGTERM or SIGINT."""

    def __init__(
        self,
        directory: Path,
        base_port: int,
        restart_delay: float,
        log: logging.Logger,
        payments_netns: bool = False,
        clock_shims: tuple[str, ...] = (),
        catalog_instances: int = 1,
        breaker: BreakerSettings = DEFAULT_BREAKER,
    ) -> None:
        self.directory = directory
        self.clock_shims = frozenset(clock_shims)
        self.base_port = base_port
        self.restart_delay = restart_delay
        self.log = log
        self.children = [
            Child(name, service_command(name, base_port, payments_netns, catalog_instances, breaker=breaker))
            for name in SERVICE_NAMES
        ]
        for i, port in enumerate(catalog_replica_ports(base_port, catalog_instances)):  # before the gateway
            self.children.insert(1, Child(f"catalog-{i + 2}", service_command("catalog", base_port, port=port)))
        payments_host = for_base_port(base_port).payments_address if payments_netns else "127.0.0.1"
        metrics = metrics_command(directory, base_port, payments_host)  # VictoriaMetrics, scraping them: first up
        if metrics is not None:
            self.children.insert(0, Child(METRICS_NAME, metrics))
        self._stop_signal: int | None = None
        self._env = child_environment()
        self._preexec = die_with_parent()

    def run(self) -> int:
        """Supervise until a stop signal; then stop every child and remove the pid files."""
        if self._another_supervisor_running():
            return 2
        write_pid_file(pid_file(self.directory, SUPERVISOR), os.getpid())
        for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(signum, self._on_signal)
        self.log.info("supervising %s on base port %d", ", ".join(SERVICE_NAMES), self.base_port)
        try:
            while self._stop_signal is None:
                self._tick(time.monotonic())
                time.sleep(POLL_INTERVAL)
            self.log.info("received %s: stopping", signal.Signals(self._stop_signal).name)
        finally:
            self._stop_children()
            remove_pid_file(pid_file(self.directory, SUPERVISOR))
        self.log.info("stopped")
        return 0

    def _another_supervisor_running(self) -> bool:
        other = read_pid_file(pid_file(self.directory, SUPERVISOR))
        if other is not None and other != os.getpid() and is_supervisor_process(other, self.directory):
            self.log.error("another supervisor (pid %d) already runs the demo in %s", other, self.directory)
            return True
        return False

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        self._stop_signal = signum

    def _tick(self, now: float) -> None:
        for child in self.children:
            if child.process is not None and child.process.poll() is not None:
                self._on_exit(child, now)
            if child.process is None and now >= child.start_at and self._stop_signal is None:
                self._start(child, now)

    def _start(self, child: Child, now: float) -> None:
        try:
            env = self._env
            if child.name in self.clock_shims:  # unskewed at every start: a restart inherits no skew
                env = clock_shim.shim_environment(skew_file(self.directory, child.name), self._env)
            with open(self.directory / f"{child.name}.log", "ab") as log_file:
                child.process = subprocess.Popen(
                    child.command,
                    stdin=subprocess.DEVNULL,
                    stdout=log_file,
                    stderr=subprocess.STDOUT,
                    cwd=self.directory,
                    env=env,
                    preexec_fn=self._preexec,
                )
        except OSError as exc:
            child.start_at = now + self.restart_delay
            self.log.error("cannot start %s: %s; retrying in %g s", child.name, exc, self.restart_delay)
            return
        write_pid_file(pid_file(self.directory, child.name), child.process.pid)
        verb = "restarted" if child.restarts else "started"
        self.log.info("%s %s (pid %d)", verb, child.name, child.process.pid)

    def _on_exit(self, child: Child, now: float) -> None:
        assert child.process is not None
        pid, returncode = child.process.pid, child.process.returncode
        child.process = None
        child.restarts += 1
        child.start_at = now + self.restart_delay
        remove_pid_file(pid_file(self.directory, child.name))
        self.log.warning(
            "%s (pid %d) %s; restarting in %g s",
            child.name,
            pid,
            describe_exit(returncode),
            self.restart_delay,
        )

    def _stop_children(self) -> None:
        """SIGTERM (and SIGCONT, so a paused child can act on it), SIGKILL after STOP_GRACE."""
        running = [c.process for c in self.children if c.process is not None and c.process.poll() is None]
        for process in running:
            _signal(process, signal.SIGTERM)
            _signal(process, signal.SIGCONT)
        deadline = time.monotonic() + STOP_GRACE
        for process in running:
            _wait(process, deadline - time.monotonic())
        for process in running:
            if process.poll() is None:
                self.log.warning("pid %d ignored SIGTERM for %g s: SIGKILL", process.pid, STOP_GRACE)
                _signal(process, signal.SIGKILL)
                _wait(process, 2.0)
        for child in self.children:
            child.process = None
            remove_pid_file(pid_file(self.directory, child.name))


def _signal(process: subprocess.Popen[bytes], signum: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):
        process.send_signal(signum)


def _wait(process: subprocess.Popen[bytes], timeout: float) -> None:
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(timeout=max(timeout, 0.0))


def _logger(directory: Path) -> logging.Logger:
    log = logging.getLogger("harness.demo.supervisor")
    handler = logging.FileHandler(directory / "supervisor.log")
    handler.setFormatter(logging.Formatter("%(asctime)s supervisor[%(process)d] %(levelname)s %(message)s"))
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    log.propagate = False
    return log


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog=f"python -m {SUPERVISOR_MODULE}", description=__doc__)
    parser.add_argument("--dir", type=Path, required=True, help="pid files and logs go here")
    parser.add_argument("--base-port", type=int, default=8700, help="gateway port; others follow")
    parser.add_argument("--restart-delay", type=float, default=3.0, help="seconds before a restart")
    parser.add_argument(
        "--payments-netns", action="store_true", help="payments runs in the demo's network namespace (made by up)"
    )
    parser.add_argument(
        "--catalog-instances",
        type=int,
        default=1,
        choices=range(1, MAX_CATALOG_INSTANCES + 1),
        help="run catalog as this many instances, which the gateway calls round robin",
    )
    parser.add_argument(
        "--clock-shim",
        action="append",
        default=[],
        choices=[n for n in SERVICE_NAMES if n != "proxy"],
        help="start this service under harness's clock shim (time.skew faults); repeatable",
    )
    defaults = BreakerSettings()
    parser.add_argument(
        "--breaker-failures",
        type=int,
        default=defaults.failures,
        help="consecutive failed payments calls that open the gateway's circuit breaker (0: no breaker)",
    )
    parser.add_argument(
        "--breaker-reset", type=float, default=defaults.reset, help="seconds the breaker stays open before a trial"
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    directory = args.dir.resolve()
    directory.mkdir(parents=True, exist_ok=True)
    log = _logger(directory)
    breaker = BreakerSettings(failures=args.breaker_failures, reset=args.breaker_reset)
    supervisor = Supervisor(
        directory,
        args.base_port,
        args.restart_delay,
        log,
        args.payments_netns,
        tuple(args.clock_shim),
        args.catalog_instances,
        breaker,
    )
    return supervisor.run()


if __name__ == "__main__":
    sys.exit(main())
