"""Restarting a killed target when its fault is reverted: at most once, from the journal alone.

A kill with a restart command (``params.restart``, or ``systemctl start UNIT`` for a unit)
starts it when the fault is reverted: detached in its own session, at normal priority, output to
a log file beside the journal, no shell. The command, its working directory and the log path are
journaled with the kill, so the watchdog or ``harness recover`` can restart from the journal
alone. The log file is created with ``O_EXCL`` before the command is started, and that claim is
what makes the restart happen once even when the agent, the watchdog and ``recover`` revert at
the same moment: whoever creates the file starts the command; a later revert finds the file, or
the ``reverted`` record, and starts nothing. If a recorded target is still running at revert
time (the signal did not end it), nothing is restarted: a second instance would only collide
with the first.
"""

from __future__ import annotations

import json
import logging
import os
import shlex
import subprocess
import threading
import time
import uuid
from pathlib import Path

from harness.chaos.families.process.params import ProcessKillFault
from harness.chaos.families.process.signals import pid_list, still_running
from harness.chaos.journal import FaultRecord, Journal
from harness.chaos.processes import normal_niceness
from harness.chaos.steps import Details
from harness.errors import FaultError, RevertFailed

__all__ = ["restart_command", "restart_details", "undo_kill"]

log = logging.getLogger(__name__)


def restart_command(fault: ProcessKillFault) -> list[str] | None:
    """The argv a revert of ``fault`` runs: ``params.restart``, else ``systemctl start UNIT`` for a
    unit target, else None (the kill is not undone)."""
    if fault.params.restart:
        return list(fault.params.restart)
    if fault.target.systemd_unit is not None:
        return ["systemctl", "start", fault.target.systemd_unit]
    return None


def restart_details(fault: ProcessKillFault, run_id: str, journal: Journal) -> Details:
    """What the kill's ``injecting`` record carries so a revert can restart: the command (JSON
    argv), its working directory (``restart_cwd`` made absolute, or the injecting process's, so
    a later ``recover`` elsewhere runs it in the same place) and the log file it will write."""
    argv = restart_command(fault)
    if argv is None:
        return {}
    cwd = os.path.abspath(fault.params.restart_cwd or os.getcwd())
    # A fresh name per inject: a run id reused after its journal was retired must not find
    # the old log and take it for a restart already done.
    log_path = journal.directory / f"{run_id}.{fault.name}.{uuid.uuid4().hex[:8]}.restart.log"
    return {"restart": json.dumps(argv), "restart_cwd": cwd, "restart_log": str(log_path)}


def _restart_argv(record: FaultRecord) -> list[str] | None:
    raw = record.details.get("restart")
    if not isinstance(raw, str) or not raw:
        return None
    try:
        argv = json.loads(raw)
    except ValueError:
        argv = None
    if not isinstance(argv, list) or not argv or not all(isinstance(a, str) and a for a in argv):
        raise FaultError(f"fault '{record.fault_name}': journaled restart command is malformed: {raw[:200]}")
    return argv


def _note_exit(child: subprocess.Popen[bytes], log_fd: int) -> None:
    """Reap the restart command when it ends (no zombie under a long-lived agent) and say how
    it ended in its log, where an operator reading why a service did not come back looks."""
    try:
        status = child.wait()
        os.write(log_fd, f"harness: restart command pid {child.pid} exited with status {status}\n".encode())
    except OSError:
        pass
    finally:
        os.close(log_fd)


def undo_kill(latest: FaultRecord) -> Details:
    """Run the journaled restart command at most once (see the module docstring), or just say a
    kill without one is reverted; the details of the ``reverted`` record. Raises
    ``RevertFailed`` when the command could not be started (recover retries it)."""
    argv = _restart_argv(latest)
    if argv is None:
        return {"note": "a kill cannot be undone; nothing to revert"}
    command = shlex.join(argv)
    alive = still_running(latest)
    if alive:
        note = f"pid {pid_list(alive)} still running (the signal did not end it); `{command}` not run"
        log.warning("run %s: fault %s: %s", latest.run_id, latest.fault_name, note)
        return {"restart_command": command, "note": note}
    log_path = str(latest.details.get("restart_log") or "")
    cwd = str(latest.details.get("restart_cwd") or "/")
    try:
        Path(log_path).parent.mkdir(parents=True, exist_ok=True)
        log_fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND | os.O_CLOEXEC, 0o644)
    except FileExistsError:  # claimed by an earlier (or concurrent) revert: never a second restart
        note = f"the restart was already started by an earlier revert (log {log_path}); not run again"
        return {"restart_command": command, "note": note}
    except OSError as exc:
        why = f"cannot create the restart log {log_path}: {exc.strerror or exc}"
        raise RevertFailed(f"fault '{latest.fault_name}': {why}", restart_command=command, restart_error=why) from None
    header = f"harness: {time.strftime('%Y-%m-%dT%H:%M:%S%z')} run {latest.run_id} fault {latest.fault_name}: "
    os.write(log_fd, f"{header}running {command} in {cwd}\n".encode())
    try:
        child = subprocess.Popen(
            argv,
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=log_fd,
            stderr=log_fd,
            start_new_session=True,  # outlives the agent, the watchdog or recover that started it
            preexec_fn=normal_niceness,
        )
    except (OSError, subprocess.SubprocessError) as exc:
        why = f"could not start `{command}` in {cwd}: {getattr(exc, 'strerror', None) or exc}"
        os.write(log_fd, f"harness: {why}\n".encode())
        os.close(log_fd)
        os.unlink(log_path)  # nothing ran: free the claim so recover may try again
        raise RevertFailed(f"fault '{latest.fault_name}': {why}", restart_command=command, restart_error=why) from None
    threading.Thread(target=_note_exit, args=(child, log_fd), name=f"restart-{child.pid}", daemon=True).start()
    log.info("run %s: fault %s: restarted with %s (pid %d)", latest.run_id, latest.fault_name, command, child.pid)
    return {
        "restart_command": command,
        "restarted_pid": child.pid,
        "restarted_at": repr(time.time()),
        "restart_error": "",
    }
