"""Run a command inside a User-Mode Linux guest whose root is this machine's own file system.

The host kernel has no netem (see TESTBED.md); Debian's ``linux.uml`` (a Linux 6.1 kernel
that runs as an ordinary process) has it as a module. The guest mounts ``/`` through
hostfs, so it runs this project's venv and code unchanged, against its own kernel, network
stack and namespaces: nothing it does to its network reaches the host's.

How a guest is run, and what it leaves behind (nothing):

* a private directory under ``/var/tmp`` holds the generated init script, UML's own
  ``uml_dir`` (mconsole socket, pid file), the console log and the result files. Not under
  ``/tmp``, because the guest mounts a tmpfs over ``/tmp`` and ``/run`` (so ``ip netns``
  and friends write into the guest, never into the host's ``/run/netns``);
* the init script mounts ``/proc``, ``/sys``, ``/tmp`` (unless the project lives there) and ``/run``, ``insmod``s the
  requested modules with their dependencies (resolved here from ``modules.dep``), runs the
  command in the project directory with a plain environment, writes its exit code next to
  the results and ends the kernel with ``halt -f``;
* ``linux.uml`` is started in a session of its own; when the guest does not halt within
  the timeout, or once it has, whatever is left of that process group is killed by its
  group id (the PID we started), never by name. The directory is removed at the end.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

__all__ = ["DEFAULT_MODULES", "GuestResult", "UmlError", "kernel", "missing_reason", "run_in_guest"]

PROJECT = Path(__file__).resolve().parent.parent
VENV_PYTHON = PROJECT / ".venv" / "bin" / "python"
MODULES_ROOT = Path("/usr/lib/uml/modules")
#: What the netem tests need: the qdiscs, the u32 classifier, mirred redirect to an ifb, veth.
DEFAULT_MODULES = ("sch_netem", "sch_prio", "sch_ingress", "cls_u32", "act_mirred", "ifb", "veth", "dummy")


class UmlError(RuntimeError):
    """The guest could not be run, or did not halt in time."""


@dataclass(frozen=True)
class GuestResult:
    """What a guest run left: the command's exit code, the console log, the files it wrote."""

    returncode: int
    console: str
    files: dict[str, str]
    seconds: float


def kernel() -> str | None:
    return shutil.which("linux.uml")


def missing_reason() -> str | None:
    """Why no guest can run here, or None when one can."""
    if kernel() is None:
        return "linux.uml is missing (Debian package user-mode-linux; `make apt` installs it)"
    return None


def _modules_dir() -> Path:
    versions = sorted(MODULES_ROOT.glob("*/modules.dep"))
    if not versions:
        raise UmlError(f"no UML kernel modules under {MODULES_ROOT} (package user-mode-linux)")
    return versions[-1].parent


def _module_paths(names: Sequence[str]) -> list[Path]:
    """The ``.ko`` files to insmod for ``names``, dependencies first, each once."""
    base = _modules_dir()
    deps: dict[str, list[str]] = {}
    by_name: dict[str, str] = {}
    for line in (base / "modules.dep").read_text().splitlines():
        path, _, rest = line.partition(":")
        deps[path] = rest.split()
        by_name[Path(path).name.removesuffix(".ko").replace("-", "_")] = path
    order: list[str] = []

    def visit(path: str) -> None:
        if path in order:
            return
        for dep in deps.get(path, []):  # modprobe loads the last listed dependency first
            visit(dep)
        order.append(path)

    for name in names:
        path = by_name.get(name.replace("-", "_"))
        if path is None:
            raise UmlError(f"no module {name} in {base}")
        visit(path)
    return [base / p for p in order]


def _init_script(workdir: Path, command: Sequence[str], modules: Sequence[str], env: dict[str, str]) -> str:
    # dummy and ifb would otherwise create dummy0 / ifb0, ifb1 in the guest's root namespace
    options = {"dummy": " numdummies=0", "ifb": " numifbs=0"}
    insmods = "\n".join(f"insmod {shlex.quote(str(p))}{options.get(p.stem, '')}" for p in _module_paths(modules))
    exports = "\n".join(f"export {k}={shlex.quote(v)}" for k, v in env.items())
    # A private /tmp keeps the guest's scratch files off the host, unless the project itself
    # lives under /tmp (a CI clone there): the tmpfs would hide its venv and code.
    tmp = "" if PROJECT.is_relative_to("/tmp") else "mount -t tmpfs tmpfs /tmp"
    return f"""#!/bin/sh
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
export HOME=/root LANG=C.UTF-8 PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
export PYTHONPATH={shlex.quote(str(PROJECT))}
export UML_OUT={shlex.quote(str(workdir / "out"))}
{exports}
mount -t proc proc /proc
mount -t sysfs sysfs /sys
{tmp}
mount -t tmpfs tmpfs /run
{insmods}
ip link set lo up
cd {shlex.quote(str(PROJECT))}
{shlex.join(command)}
echo $? > {shlex.quote(str(workdir / "rc"))}
halt -f
"""


def _kill_group(pgid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def run_in_guest(
    command: Sequence[str],
    *,
    timeout: float = 120.0,
    mem: str = "512M",
    modules: Sequence[str] = DEFAULT_MODULES,
    env: dict[str, str] | None = None,
) -> GuestResult:
    """Boot a guest, run ``command`` in it (cwd: the project; ``$UML_OUT``: a directory on the
    host to write results into) and return what it wrote.

    Raises ``UmlError`` when ``linux.uml`` is missing, the guest does not halt within
    ``timeout`` seconds (it is killed, and the console log is in the message) or the command
    never reported an exit code. Nothing is left running or on disk afterwards.
    """
    binary = kernel()
    if binary is None:
        raise UmlError(missing_reason() or "linux.uml is missing")
    workdir = Path(tempfile.mkdtemp(prefix="harness-uml-", dir="/var/tmp"))
    started = time.monotonic()
    try:
        (workdir / "out").mkdir()
        (workdir / "uml").mkdir()
        init = workdir / "init.sh"
        init.write_text(_init_script(workdir, command, modules, env or {}))
        init.chmod(0o755)
        console_path = workdir / "console.log"
        args = [
            binary,
            f"mem={mem}",
            "rootfstype=hostfs",
            "rootflags=/",
            "rw",
            f"init={init}",
            f"uml_dir={workdir / 'uml'}/",
            "umid=harness",
            "con=null",
            "ssl=null",
            "con0=null,fd:1",
        ]
        with console_path.open("wb") as console:
            proc = subprocess.Popen(
                args,
                stdin=subprocess.DEVNULL,
                stdout=console,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group: all of it dies by its id
                cwd=workdir,
            )
            try:
                proc.wait(timeout=timeout)
                timed_out = False
            except subprocess.TimeoutExpired:
                timed_out = True
            finally:
                # UML's helper processes share the group; none may outlive the guest.
                _kill_group(proc.pid)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(timeout=10)
                deadline = time.monotonic() + 10
                while _group_alive(proc.pid) and time.monotonic() < deadline:
                    _kill_group(proc.pid)
                    time.sleep(0.05)
        log = console_path.read_text(errors="replace")
        if timed_out:
            raise UmlError(f"the UML guest did not halt within {timeout:g}s; console:\n{log[-4000:]}")
        rc_file = workdir / "rc"
        if not rc_file.exists():
            raise UmlError(f"the guest command reported no exit code; console:\n{log[-4000:]}")
        files = {p.name: p.read_text(errors="replace") for p in sorted((workdir / "out").iterdir()) if p.is_file()}
        return GuestResult(int(rc_file.read_text().strip() or "255"), log, files, time.monotonic() - started)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
