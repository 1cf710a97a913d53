"""Proxy faults: ``proxy.latency``, ``proxy.bandwidth``, ``proxy.reset`` and ``proxy.abort``.

The faults are applied by the fault proxy (:mod:`harness.chaos.proxy_server`); this module
puts them there and takes them away again, with the journal discipline of every fault
family (:mod:`harness.chaos.network` is the model): ``injecting`` is journaled, fsynced,
with everything a revert needs *before* anything changes, then ``injected``; inject and
revert are idempotent, and revert undoes only what the journal recorded.

Two ways to reach a proxy, as the scenario's ``target`` says:

* **Explicit** (``target.control``): a ``harness proxy`` already sits in the traffic's path.
  Inject PUTs the fault to its control API under the name ``<run id>:<fault name>`` (so two
  runs sharing one proxy never remove each other's faults); revert DELETEs that name. A
  proxy that refuses the connection is not running, and its faults (held in memory only)
  went with it, so revert counts that as done; a proxy that does not answer in time is a
  ``revert_failed`` to retry.
* **Transparent** (``target.service``): nothing is in the path yet, so inject starts a proxy
  for this fault (``python -m harness.chaos.proxy_server``, inside ``target.netns`` through
  ``ip netns exec`` when given, in its own session, at nice 0 whatever the agent runs at)
  listening on a free port, loads the fault through its control API (a unix socket in a
  private work directory, reachable from outside the namespace), and only then redirects
  the service's port to it with nftables. The proxy's own upstream connections carry
  ``SO_MARK`` :data:`MARK`, which the redirect rule exempts, so they reach the service.
  Revert deletes the nftables chains first (new connections go straight to the service
  again), then stops the proxy: SIGTERM, SIGKILL after :data:`GRACE` seconds, only to a
  process whose start time matches the journal's, or that carries the fault's environment
  tag ``HARNESS_PROXY_FAULT=<run>/<fault>`` (so a crash between starting the proxy and
  journaling its PID leaves nothing unfindable, and a recycled PID is never signalled).

nftables objects: one table per run, ``ip harness_proxy_<run id>`` (``ip6`` for an IPv6
service), holding for each fault two nat base chains ``p_<fault>_out`` (hook output: clients
on the service's own host or namespace) and ``p_<fault>_pre`` (hook prerouting: clients
elsewhere), each with the one rule ``ip daddr <service ip> tcp dport <port> meta mark !=
<MARK> redirect to :<proxy port>``. Revert deletes the fault's chains, then the table once
it holds no chain. nft is driven through :mod:`harness.chaos.nft`, as for network faults.

The transparent proxy listens on every address of its namespace (``0.0.0.0``/``::``, a free
port): a redirect from prerouting delivers to the address of the interface the connection
came in on, so a loopback-only listener would miss clients from elsewhere. It forwards only
to the service, which those clients could reach anyway.

nat acts on new connections only, so a connection opened before inject would keep going
straight to the service: clients with a keep-alive pool (Locust's FastHttpUser, the demo
gateway) would never see the fault. With ``target.reset_established`` (the default), inject
therefore aborts, after the redirect is in place, every established TCP connection to the
service from clients in the service's namespace and in the agent's own (``ss -K``, sock
destroy; the proxy's marked upstream connections are spared); their next request fails
once with a connection abort and reconnects, through the proxy. Clients elsewhere keep
their connections until they reconnect. (Without it, what happens to an established
connection depends on conntrack: one it already tracks keeps going direct; one it first sees
mid-stream, in a namespace where the nat table just turned conntrack on, is redirected and
reset by the proxy's side.) A connection opened through the proxy is closed
when the proxy stops at revert (clients reconnect, directly). Two transparent faults
on the same service at once do not stack: a connection is redirected once, to one of the
two proxies; to combine faults, use one explicit proxy and put several faults in it.

This module imports neither gevent nor Ray: the chaos agent calls it from a Ray worker.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import ipaddress
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import psutil

from harness.chaos import nft
from harness.chaos.journal import FaultRecord, FaultState, Journal
from harness.chaos.process import _start_ticks
from harness.errors import ConfigError, FaultError
from harness.scenario import ProxyAbortFault, ProxyBandwidthFault, ProxyLatencyFault, ProxyResetFault

__all__ = [
    "GRACE",
    "KINDS",
    "MARK",
    "ProxyFault",
    "check",
    "describe",
    "inject",
    "is_proxy_kind",
    "proxy_fault_name",
    "revert",
    "table_name",
]

log = logging.getLogger(__name__)

ProxyFault = ProxyLatencyFault | ProxyBandwidthFault | ProxyResetFault | ProxyAbortFault

KINDS = frozenset({"proxy.latency", "proxy.bandwidth", "proxy.reset", "proxy.abort"})
#: SO_MARK of a transparent proxy's upstream connections ("HR"); recorded in the journal too.
MARK = 0x4852
#: Seconds between SIGTERM and SIGKILL when a transparent proxy is stopped.
GRACE = 5.0
#: Seconds a transparent proxy may take to answer its control API after it was started.
START_TIMEOUT = 15.0
#: Seconds any one control API call may take (it is a local, in-memory change).
CONTROL_TIMEOUT = 5.0
#: nat base chain priority: where the kernel's own dstnat sits.
NAT_PRIORITY = -100
TAG = "HARNESS_PROXY_FAULT"
NETNS_DIR = nft.NETNS_DIR
EXPLICIT, TRANSPARENT = "explicit", "transparent"

# Proxies started by this process, so they are reaped (no zombies in a long-lived agent).
_CHILDREN: dict[int, subprocess.Popen[bytes]] = {}


def is_proxy_kind(kind: str) -> bool:
    return kind in KINDS


# ---------------------------------------------------------------- names


def table_name(run_id: str) -> str:
    """``harness_proxy_<run id>``: the one nftables table (family ip or ip6) of a run's redirects."""
    return f"harness_proxy_{nft.ident(run_id, 64)}"


def _chain_names(fault_name: str) -> tuple[str, str]:
    base = f"p_{nft.ident(fault_name, 48)}"
    return f"{base}_out", f"{base}_pre"


def proxy_fault_name(run_id: str, fault_name: str) -> str:
    """The fault's name inside the proxy: namespaced by run, so runs sharing a proxy stay apart."""
    return f"{run_id}:{fault_name}"


def _workdir(run_id: str, fault_name: str) -> str:
    # Short on purpose: a unix socket path must fit in 108 bytes whatever the run id's length.
    digest = hashlib.sha1(f"{run_id}/{fault_name}".encode()).hexdigest()[:16]
    return os.path.join(tempfile.gettempdir(), f"harness-proxy-{digest}")


def _split(address: str) -> tuple[str, int]:
    host, _, port = address.rpartition(":")
    return (host[1:-1] if host.startswith("[") else host), int(port)


# ---------------------------------------------------------------- describe and check


def _spec(fault: ProxyFault) -> dict[str, Any]:
    """The PUT body of the fault (seconds, bits/s, percent: what the proxy expects)."""
    return {"kind": fault.kind, **fault.params.model_dump()}


def _what(fault: ProxyFault) -> str:
    if isinstance(fault, ProxyLatencyFault):
        jitter = f" +/- {fault.params.jitter * 1000:g}ms" if fault.params.jitter else ""
        return f"add {fault.params.latency * 1000:g}ms{jitter} latency to each response"
    if isinstance(fault, ProxyBandwidthFault):
        return f"limit each connection to {fault.params.rate / 1e6:g}mbit/s each way"
    if isinstance(fault, ProxyResetFault):
        return f"reset {fault.params.percent:g}% of requests' connections with a TCP RST"
    return f"answer {fault.params.percent:g}% of HTTP requests with {fault.params.status}"


def _mode(fault: ProxyFault) -> str:
    target = fault.target
    if (target.control is None) == (target.service is None):
        raise ConfigError(f"fault '{fault.name}': target needs exactly one of 'control' or 'service'")
    return EXPLICIT if target.control is not None else TRANSPARENT


def describe(fault: ProxyFault) -> str:
    """One line for ``harness plan``: what the fault will do, and through which proxy. Touches nothing."""
    target = fault.target
    if target.control is not None:
        where = f"through the fault proxy controlled at {target.control}"
    else:
        ns = f" in netns {target.netns}" if target.netns else ""
        where = f"for {target.service}{ns}, through a proxy started for the fault (nftables redirect)"
    return f"{_what(fault)} {where} for {fault.duration:g}s"


def check(fault: ProxyFault) -> None:
    """Raise ``ConfigError`` when the fault could never apply here: no proxy answers at the control
    address; for a transparent proxy no ``nft``, or no such namespace. Changes nothing."""
    if _mode(fault) == EXPLICIT:
        control = str(fault.target.control)
        try:
            status, _ = _call(control, "GET", "/health", timeout=2.0)
        except (FaultError, _Unreachable) as exc:
            raise ConfigError(
                f"fault '{fault.name}': no fault proxy answers at {control} ({exc}); start one with 'harness proxy'"
            ) from None
        if status != 200:
            raise ConfigError(f"fault '{fault.name}': {control} answered /health with {status}: not a harness proxy")
        return
    netns = fault.target.netns
    if shutil.which("nft") is None:
        raise ConfigError(f"fault '{fault.name}': the nft command is missing (Debian package nftables)")
    if netns is not None and not (NETNS_DIR / netns).exists():
        raise ConfigError(f"fault '{fault.name}': network namespace '{netns}' does not exist (ip netns list)")


# ---------------------------------------------------------------- the control API client


class _Unreachable(Exception):
    """Nothing listens at the control address: the proxy is not running."""


class _UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self._path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect(self._path)
        except OSError:
            sock.close()
            raise
        self.sock = sock


def _call(control: str, method: str, path: str, body: Any = None, timeout: float = CONTROL_TIMEOUT) -> tuple[int, Any]:
    """(status, JSON answer or None) of one control API call.

    Raises :class:`_Unreachable` when the connection is refused (or the unix socket is gone),
    ``FaultError`` on any other failure (a timeout included: the proxy may still hold the fault).
    """
    conn: http.client.HTTPConnection
    if control.startswith("unix:"):
        conn = _UnixHTTPConnection(control[len("unix:") :], timeout)
    else:
        host, port = _split(control)
        conn = http.client.HTTPConnection(host, port, timeout=timeout)
    payload = None if body is None else json.dumps(body)
    try:
        conn.request(method, path, body=payload, headers={"Content-Type": "application/json"})
        response = conn.getresponse()
        raw = response.read()
    except (ConnectionRefusedError, FileNotFoundError) as exc:
        raise _Unreachable(f"{control}: {exc.strerror or exc}") from None
    except (OSError, http.client.HTTPException) as exc:
        raise FaultError(f"fault proxy at {control}: {method} {path}: {exc}") from None
    finally:
        conn.close()
    try:
        answer = json.loads(raw) if raw else None
    except ValueError:
        answer = None
    return response.status, answer


def _put(control: str, name: str, spec: dict[str, Any]) -> None:
    try:
        status, answer = _call(control, "PUT", f"/faults/{name}", spec)
    except _Unreachable as exc:
        raise FaultError(f"no fault proxy answers at {exc}") from None
    if status not in (200, 201):
        why = answer.get("error") if isinstance(answer, dict) else answer
        raise FaultError(f"fault proxy at {control} refused the fault ({status}): {why}")


def _delete(control: str, name: str) -> str:
    """Remove the fault from the proxy; says what happened. ``FaultError`` when it may still be there."""
    try:
        status, _ = _call(control, "DELETE", f"/faults/{name}")
    except _Unreachable:
        return f"no proxy listens at {control} (its faults went with it)"
    if status == 204:
        return f"deleted {name} at {control}"
    if status == 404:
        return f"{name} was not in the proxy at {control}"
    raise FaultError(f"fault proxy at {control} answered DELETE with {status}")


# ---------------------------------------------------------------- nftables


def _nft_inject(d: dict[str, str | int], proxy_port: int) -> None:
    """One atomic transaction: the table, the fault's two nat chains (flushed), one redirect rule each."""
    family, table, netns = str(d["family"]), str(d["table"]), str(d["netns"])
    host, port = _split(str(d["service"]))
    rule = f"{family} daddr {host} tcp dport {port} meta mark != {int(d['mark'])} redirect to :{proxy_port}"
    lines = [f"add table {family} {table}"]
    for chain, hook in zip(str(d["chains"]).split(","), ("output", "prerouting"), strict=True):
        spec = f"{{ type nat hook {hook} priority {NAT_PRIORITY}; policy accept; }}"
        lines += [
            f"add chain {family} {table} {chain} {spec}",
            f"flush chain {family} {table} {chain}",
            f"add rule {family} {table} {chain} {rule}",
        ]
    nft.run(netns, ["-f", "-"], "\n".join(lines) + "\n")


def _abort_established(d: dict[str, str | int]) -> int:
    """Abort established client connections to the service that bypass the proxy; how many went.

    Looked for in the service's namespace and in ours (``ss -K`` with a filter; the proxy's
    upstream connections carry :data:`MARK` and are spared). A kernel without sock destroy
    answers with an error, which leaves those connections alone: a warning, not a failure.
    """
    host, port = _split(str(d["service"]))
    expression = f"dst {host} and dport = :{port} and fwmark != {int(d['mark']):#x}"
    aborted = 0
    for netns in dict.fromkeys([str(d["netns"]), ""]):
        cmd = (["ip", "netns", "exec", netns] if netns else []) + ["ss", "-K", "-H", "-tn", expression]
        try:
            done = subprocess.run(cmd, capture_output=True, text=True, timeout=nft.NFT_TIMEOUT, check=False)
        except (OSError, subprocess.TimeoutExpired) as exc:
            log.warning("could not abort established connections to %s: %s", d["service"], exc)
            continue
        if done.returncode != 0:
            log.warning("could not abort established connections to %s: %s", d["service"], done.stderr.strip())
        aborted += sum(1 for line in done.stdout.splitlines() if line.strip())
    return aborted


def _nft_revert(d: dict[str, str | int]) -> str:
    """Delete the fault's chains that still exist, then the table if it is empty; says what it did."""
    family, table, netns = str(d["family"]), str(d["table"]), str(d["netns"])
    if netns and not (NETNS_DIR / netns).exists():
        return f"netns {netns} is gone (its nft tables with it)"
    return nft.remove_chains(netns, family, table, str(d["chains"]).split(","))


# ---------------------------------------------------------------- the transparent proxy process


def _reap() -> None:
    for pid, child in list(_CHILDREN.items()):
        if child.poll() is not None:
            _CHILDREN.pop(pid, None)


def _normal_niceness() -> None:
    """In the proxy child before exec: nice 0, like the service it stands in front of."""
    with contextlib.suppress(OSError):
        os.setpriority(os.PRIO_PROCESS, 0, 0)


def _start_proxy(d: dict[str, str | int]) -> tuple[int, int, int]:
    """Start the fault's proxy; (pid, start ticks, listen port) once its control API answers."""
    workdir, control, netns = str(d["workdir"]), str(d["control"]), str(d["netns"])
    listen = "[::]:0" if d["family"] == "ip6" else "0.0.0.0:0"
    cmd = [sys.executable, "-m", "harness.chaos.proxy_server", "--listen", listen]
    # The package this module came from, whatever the caller's working directory (a Ray worker's is not ours).
    source = str(Path(__file__).resolve().parents[2])
    path = os.pathsep.join(p for p in (source, os.environ.get("PYTHONPATH", "")) if p)
    cmd += ["--upstream", str(d["service"]), "--control", control, "--mark", str(d["mark"])]
    if netns:
        cmd = ["ip", "netns", "exec", netns, *cmd]  # ip execs the command: the PID is the proxy's
    log_path = os.path.join(workdir, "proxy.log")
    with open(log_path, "ab") as out:
        child = subprocess.Popen(
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=out,
            env={**os.environ, "PYTHONPATH": path, TAG: str(d["tag"])},
            start_new_session=True,
            preexec_fn=_normal_niceness,
        )
    _CHILDREN[child.pid] = child
    deadline = time.monotonic() + START_TIMEOUT
    while True:
        if child.poll() is not None:
            why = Path(log_path).read_text(errors="replace").strip()[-400:]
            raise FaultError(f"the proxy exited at once with status {child.returncode}: {why}")
        try:
            status, health = _call(control, "GET", "/health", timeout=1.0)
            if status == 200 and isinstance(health, dict):
                break
        except (_Unreachable, FaultError):
            pass
        if time.monotonic() > deadline:
            raise FaultError(f"the proxy did not answer on {control} within {START_TIMEOUT:g}s")
        time.sleep(0.05)
    ticks = _start_ticks(child.pid)
    if ticks is None:
        raise FaultError("the proxy vanished right after it started")
    return child.pid, ticks, _split(str(health["listen"]))[1]


def _alive_with_ticks(pid: int, ticks: int) -> bool:
    """True while ``pid`` is the process started at ``ticks`` and not yet a zombie."""
    _reap()
    if _start_ticks(pid) != ticks:
        return False
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
        return data[data.rindex(b")") + 2 : data.rindex(b")") + 3] != b"Z"
    except (OSError, ValueError):
        return False


def _tagged(tag: str) -> dict[int, int]:
    """Live proxy processes carrying ``tag`` in their environment, as {pid: start ticks}."""
    found: dict[int, int] = {}
    for proc in psutil.process_iter(["cmdline"]):
        try:
            if "harness.chaos.proxy_server" not in (proc.info["cmdline"] or []):
                continue
            if proc.environ().get(TAG) == tag and proc.status() != psutil.STATUS_ZOMBIE:
                ticks = _start_ticks(proc.pid)
                if ticks is not None:
                    found[proc.pid] = ticks
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
    return found


def _stop_proxy(d: dict[str, str | int]) -> str:
    """SIGTERM the fault's proxy (recorded PID whose start time matches, and tagged ones), SIGKILL after GRACE."""
    victims: dict[int, int] = {}
    pid, ticks = d.get("proxy_pid"), d.get("proxy_start_ticks")
    if isinstance(pid, int) and isinstance(ticks, int) and pid > 0 and _alive_with_ticks(pid, ticks):
        victims[pid] = ticks
    tag = str(d.get("tag", ""))
    if tag:
        victims.update(_tagged(tag))
    if not victims:
        _reap()
        return "proxy not running"
    for sig, wait in ((signal.SIGTERM, GRACE), (signal.SIGKILL, 5.0)):
        for victim, start in victims.items():
            if _alive_with_ticks(victim, start):  # checked right before each signal: never a recycled PID
                with contextlib.suppress(ProcessLookupError):
                    os.kill(victim, sig)
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline and any(_alive_with_ticks(p, t) for p, t in victims.items()):
            time.sleep(0.02)
        if not any(_alive_with_ticks(p, t) for p, t in victims.items()):
            return f"stopped proxy {','.join(map(str, victims))} with {sig.name}"
    raise FaultError(f"proxy process(es) {','.join(map(str, victims))} still alive after SIGKILL")


# ---------------------------------------------------------------- journaled inject and revert


def _details(fault: ProxyFault, run_id: str) -> dict[str, str | int]:
    name = proxy_fault_name(run_id, fault.name)
    details: dict[str, str | int] = {"target": describe(fault), "proxy_fault": name, "spec": json.dumps(_spec(fault))}
    if _mode(fault) == EXPLICIT:
        details.update(mode=EXPLICIT, control=str(fault.target.control))
        return details
    service = str(fault.target.service)
    workdir = _workdir(run_id, fault.name)
    details.update(
        mode=TRANSPARENT,
        service=service,
        netns=fault.target.netns or "",
        family="ip6" if ipaddress.ip_address(_split(service)[0]).version == 6 else "ip",
        table=table_name(run_id),
        chains=",".join(_chain_names(fault.name)),
        mark=MARK,
        workdir=workdir,
        control=f"unix:{os.path.join(workdir, 'control.sock')}",
        tag=f"{run_id}/{fault.name}",
    )
    return details


def _undo_transparent(d: dict[str, str | int]) -> str:
    """Redirect first (new connections go straight to the service), then the proxy, then its files."""
    what = [_nft_revert(d), _stop_proxy(d)]
    workdir = str(d.get("workdir", ""))
    if workdir and os.path.isdir(workdir):
        shutil.rmtree(workdir)
        what.append(f"removed {workdir}")
    return "; ".join(what)


def inject(fault: ProxyFault, run_id: str, journal: Journal, *, lease_until: float | None = None) -> FaultRecord:
    """Put ``fault`` into effect and return its ``injected`` record; idempotent per fault name.

    ``injecting`` is journaled (fsynced) with everything a revert needs before anything is
    changed. A fault already injected or reverted in this run is not applied again; one left
    ``injecting`` by a crash is cleaned up (transparent: its chains and any tagged proxy) and
    applied afresh. Raises ``FaultError`` when it cannot be applied, after undoing what it had
    done (journaled ``reverted``).
    """
    _reap()
    previous, settled = journal.previous_inject(run_id, fault.name, fault.kind)
    if settled:
        assert previous is not None
        return previous
    try:
        details = _details(fault, run_id)
    except ConfigError as exc:
        raise FaultError(str(exc)) from None
    netns = str(details.get("netns", ""))
    if netns and not (NETNS_DIR / netns).exists():
        raise FaultError(f"fault '{fault.name}': network namespace '{netns}' does not exist")
    record = previous or journal.begin(fault.name, fault.kind, details, lease_until)
    d = record.details
    spec = json.loads(str(d["spec"]))
    try:
        if d["mode"] == EXPLICIT:
            _put(str(d["control"]), str(d["proxy_fault"]), spec)
            injected = record.advance(FaultState.INJECTED)
        else:
            if previous is not None:  # an attempt died mid-way: take away what it may have left
                _undo_transparent(d)
            os.makedirs(str(d["workdir"]), mode=0o700, exist_ok=True)
            pid, ticks, port = _start_proxy(d)
            # Recorded at once: if the rest fails, revert finds the proxy by PID as well as by tag.
            started = {"proxy_pid": pid, "proxy_start_ticks": ticks, "proxy_port": port}
            with contextlib.suppress(psutil.Error):
                started[f"create_time.{pid}"] = int(psutil.Process(pid).create_time())
            record = record.advance(FaultState.INJECTING, **started)
            journal.append(record)
            _put(str(d["control"]), str(d["proxy_fault"]), spec)
            _nft_inject(record.details, port)
            aborted = _abort_established(record.details) if fault.target.reset_established else 0
            injected = record.advance(FaultState.INJECTED, aborted_connections=aborted)
    except (FaultError, OSError) as exc:
        with contextlib.suppress(FaultError):
            revert(record, journal)
        raise FaultError(f"fault '{fault.name}': {exc}") from None
    journal.append(injected)
    log.info("run %s: fault %s: %s", run_id, fault.name, describe(fault))
    return injected


def revert(record: FaultRecord, journal: Journal) -> None:
    """Undo exactly what the journal recorded for this fault; journal the outcome.

    Safe to call any number of times, with no scenario at hand (``harness recover``, the
    watchdog), and after the proxy died. Raises ``FaultError`` after journaling
    ``revert_failed`` when the fault may still be in effect (the proxy did not answer in
    time, an nft call failed, a proxy process survived SIGKILL), so the next recover retries.
    """
    latest = journal.latest(record.fault_name) or record
    if latest.state is FaultState.REVERTED:
        return
    d = latest.details
    try:
        explicit = d.get("mode") == EXPLICIT
        what = _delete(str(d["control"]), str(d["proxy_fault"])) if explicit else _undo_transparent(d)
    except (FaultError, OSError, KeyError, ValueError) as exc:
        journal.append(latest.advance(FaultState.REVERT_FAILED, error=str(exc)))
        raise FaultError(f"fault '{latest.fault_name}': revert failed: {exc}") from None
    journal.append(latest.advance(FaultState.REVERTED, reverted=what))
    log.info("run %s: fault %s: reverted (%s)", latest.run_id, latest.fault_name, what)
