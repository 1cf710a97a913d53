"""The embedded local InfluxDB: a Debian ``influxd`` (1.x) that harness starts for the user.

Why: a capacity engineer running ``harness run`` on a laptop should get queryable results
without setting up a server.  When the results URL is the default local one and nothing
answers there, harness starts ``influxd`` with its own config and data under the user's data
directory, detached (its own session, so Ctrl-C on a run does not take it down), and leaves it
running after the run on purpose: reviewers query it afterwards.  ``harness influx stop`` (and
``make stop``) call :func:`stop_local_influx`, which only ever signals the process harness
started (the PID in our pid file whose command line is ``influxd -config <our config>``).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shlex
import shutil
import signal
import subprocess
import time
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from harness.errors import ConfigError, ResultsError
from harness.results._http import http_request, is_loopback_host

__all__ = [
    "DEFAULT_PORT",
    "DEFAULT_URL",
    "EmbeddedInflux",
    "config_path",
    "ensure_local_influx",
    "influx_dir",
    "load_command",
    "ping",
    "render_config",
    "stop_local_influx",
]

DEFAULT_PORT = 8086
DEFAULT_URL = f"http://127.0.0.1:{DEFAULT_PORT}"
START_TIMEOUT = 15.0
STOP_TIMEOUT = 10.0


@dataclass(frozen=True, slots=True)
class EmbeddedInflux:
    """The local server a run writes to.  ``started`` is True when this call started it;
    ``pid`` is set when the server is the one harness manages (None for a foreign server)."""

    url: str
    pid: int | None
    data_dir: Path
    started: bool

    @property
    def config_path(self) -> Path:
        return config_path(self.data_dir)

    @property
    def log_path(self) -> Path:
        return influx_dir(self.data_dir) / "influxd.log"


def influx_dir(data_dir: Path) -> Path:
    """Everything of the embedded server lives here: config, meta/data/wal, log, pid file."""
    return Path(data_dir).resolve() / "influxdb"


def config_path(data_dir: Path) -> Path:
    return influx_dir(data_dir) / "influxdb.conf"


def _pid_path(data_dir: Path) -> Path:
    return influx_dir(data_dir) / "influxd.pid"


def ping(url: str, timeout: float = 1.0) -> bool:
    """True when an InfluxDB answers ``GET /ping`` with 204 (anything else, or nothing, is False)."""
    try:
        status, _ = http_request("GET", url.rstrip("/") + "/ping", timeout=timeout)
    except OSError:
        return False
    return status == 204


def render_config(data_dir: Path, port: int, rpc_port: int) -> str:
    """The influxd config: loopback only, quiet, no phoning home, no extra listeners.

    Both ``reporting-disabled`` (upstream) and ``reporting-enabled`` (Debian's patched name)
    are written: influxd ignores keys it does not know, so either build stays quiet.
    """
    root = influx_dir(data_dir)

    def q(value: object) -> str:  # TOML basic strings accept JSON escapes
        return json.dumps(str(value))

    return f"""# Written by harness for its embedded InfluxDB; rewritten on every start.
reporting-disabled = true
reporting-enabled = false
bind-address = {q(f"127.0.0.1:{rpc_port}")}

[meta]
  dir = {q(root / "meta")}
  logging-enabled = false

[data]
  dir = {q(root / "data")}
  wal-dir = {q(root / "wal")}
  query-log-enabled = false

[http]
  enabled = true
  bind-address = {q(f"127.0.0.1:{port}")}
  log-enabled = false
  pprof-enabled = false

[logging]
  level = "warn"
  suppress-logo = true

[monitor]
  store-enabled = false

[continuous_queries]
  enabled = false

[subscriber]
  enabled = false

[admin]
  enabled = false

[[graphite]]
  enabled = false

[[collectd]]
  enabled = false

[[opentsdb]]
  enabled = false

[[udp]]
  enabled = false
"""


def _loopback_port(url: str) -> int:
    parts = urllib.parse.urlsplit(url)
    if parts.scheme != "http" or not is_loopback_host(parts.hostname):
        raise ConfigError(f"the embedded InfluxDB serves only http on loopback; cannot start one for {url}")
    return parts.port or DEFAULT_PORT


def _cmdline(pid: int) -> list[str] | None:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return None
    return [part.decode("utf-8", "replace") for part in raw.split(b"\0") if part]


def _alive(pid: int) -> bool:
    """Running and not a zombie (a zombie has exited; only its parent's wait is missing)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    state = stat.rsplit(")", 1)[-1].split()[0:1]
    return state != ["Z"] and state != ["X"]


def _is_ours(pid: int, data_dir: Path) -> bool:
    """The process is ``influxd -config <our config file>``: safe to signal."""
    argv = _cmdline(pid)
    if not argv or not _alive(pid):
        return False
    return os.path.basename(argv[0]) == "influxd" and argv[1:] == ["-config", str(config_path(data_dir))]


def _read_pid(data_dir: Path) -> int | None:
    try:
        text = _pid_path(data_dir).read_text().strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None


def _our_pid(data_dir: Path) -> int | None:
    pid = _read_pid(data_dir)
    return pid if pid is not None and _is_ours(pid, data_dir) else None


def _configured_port(data_dir: Path) -> int | None:
    """The HTTP port in our config file, to tell whether our server is the one at a URL."""
    try:
        text = config_path(data_dir).read_text()
    except OSError:
        return None
    in_http = False
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith("["):
            in_http = stripped == "[http]"
        elif in_http and stripped.startswith("bind-address"):
            value = stripped.split("=", 1)[1].strip().strip('"')
            port = value.rsplit(":", 1)[-1]
            return int(port) if port.isdigit() else None
    return None


@contextlib.contextmanager
def _locked(data_dir: Path) -> Iterator[None]:
    """Serialise check-then-start between concurrent harness processes on one machine."""
    root = influx_dir(data_dir)
    root.mkdir(parents=True, exist_ok=True)
    with open(root / "start.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _log_tail(path: Path, limit: int = 2000) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return ""
    return text[-limit:].strip()


def _wait_for_ping(url: str, pid: int | None, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if ping(url, timeout=0.5):
            return True
        if pid is not None and not _alive(pid):
            return False
        time.sleep(0.1)
    return ping(url, timeout=0.5)


def _spawn_detached(influxd: str, conf: Path, log_path: Path) -> int:
    """Start influxd re-parented away from us (sh backgrounds it and exits at once), so it
    outlives the run and never lingers as our zombie; returns influxd's PID."""
    script = '"$0" -config "$1" >>"$2" 2>&1 </dev/null & echo $!'
    done = subprocess.run(
        ["/bin/sh", "-c", script, influxd, str(conf), str(log_path)],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=10,
        start_new_session=True,
        check=False,
    )
    pid_text = done.stdout.strip()
    if done.returncode != 0 or not pid_text.isdigit():
        raise ResultsError(f"could not start {influxd}: {done.stderr.strip() or 'no PID reported'}")
    return int(pid_text)


def ensure_local_influx(
    url: str,
    data_dir: Path,
    *,
    rpc_port: int | None = None,
    start_timeout: float = START_TIMEOUT,
) -> EmbeddedInflux | None:
    """Make sure an InfluxDB answers at the loopback ``url``, starting ours if nothing does.

    Returns None when nothing answers and ``influxd`` is not installed: the caller then writes
    results.lp only and tells the user how to load it (:func:`load_command`).  Raises
    ConfigError for a URL that is not local http, ResultsError when influxd fails to start
    (the message carries the tail of its log).  ``rpc_port`` (influxd's backup/restore
    listener, also on 127.0.0.1) defaults to the HTTP port + 2.
    """
    port = _loopback_port(url)
    data_dir = Path(data_dir).resolve()
    if ping(url):
        pid = _our_pid(data_dir)
        return EmbeddedInflux(url, pid if _configured_port(data_dir) == port else None, data_dir, False)
    influxd = shutil.which("influxd")
    if influxd is None:
        return None
    with _locked(data_dir):
        existing = _our_pid(data_dir)
        if existing is not None:
            # Ours, but not answering (yet): starting a second one on the same files cannot work.
            if _configured_port(data_dir) == port and _wait_for_ping(url, existing, start_timeout):
                return EmbeddedInflux(url, existing, data_dir, False)
            raise ResultsError(
                f"the embedded influxd (pid {existing}) is running but does not answer at {url}; "
                f"stop it with `harness influx stop` and see {influx_dir(data_dir) / 'influxd.log'}"
            )
        if ping(url):  # someone else started a server while we waited for the lock
            return EmbeddedInflux(url, None, data_dir, False)
        root = influx_dir(data_dir)
        for sub in ("meta", "data", "wal"):
            (root / sub).mkdir(parents=True, exist_ok=True)
        conf = config_path(data_dir)
        conf.write_text(render_config(data_dir, port, rpc_port if rpc_port is not None else port + 2))
        log_path = root / "influxd.log"
        pid = _spawn_detached(influxd, conf, log_path)
        _pid_path(data_dir).write_text(f"{pid}\n")
        if not _wait_for_ping(url, pid, start_timeout):
            stop_local_influx(data_dir)
            tail = _log_tail(log_path)
            raise ResultsError(
                f"influxd did not answer at {url} within {start_timeout:.0f}s"
                + (f"; its log ({log_path}) ends with:\n{tail}" if tail else f"; see {log_path}")
            )
        return EmbeddedInflux(url, pid, data_dir, True)


def stop_local_influx(data_dir: Path, timeout: float = STOP_TIMEOUT) -> bool:
    """Stop the embedded influxd: SIGTERM, then SIGKILL after ``timeout`` seconds.

    Only the PID from our pid file is signalled, and only while its command line is
    ``influxd -config <our config>`` (a stale pid file may name an unrelated process now).
    Returns True when our server was running and is now gone.
    """
    data_dir = Path(data_dir).resolve()
    pid = _read_pid(data_dir)
    if pid is None:
        return False
    if not _is_ours(pid, data_dir):
        _pid_path(data_dir).unlink(missing_ok=True)
        return False
    for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 5.0)):
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            break
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)  # only reaps if it happens to be our child
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline and _alive(pid):
            time.sleep(0.05)
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, os.WNOHANG)
        if not _alive(pid):
            break
    if _alive(pid):
        raise ResultsError(f"influxd (pid {pid}) did not exit after SIGKILL")
    _pid_path(data_dir).unlink(missing_ok=True)
    return True


def load_command(lp_path: Path, url: str = DEFAULT_URL, database: str = "harness") -> str:
    """The shell command that loads a run's results.lp into an InfluxDB 1.x later.

    The file is posted in slices of 5000 lines because influxd refuses bodies over 25 MB.
    """
    statement = 'q=CREATE DATABASE "' + database.replace("\\", "\\\\").replace('"', '\\"') + '"'
    create = f"curl -sS -XPOST {shlex.quote(url + '/query')} --data-urlencode {shlex.quote(statement)}"
    write_url = f"{url}/write?{urllib.parse.urlencode({'db': database, 'precision': 'ns'})}"
    post = f"curl -sS -XPOST {shlex.quote(write_url)} --data-binary @-"
    load = f"split -l 5000 --filter {shlex.quote(post)} {shlex.quote(str(lp_path))}"
    return f"{create} && {load}"
