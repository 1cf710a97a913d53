"""The io family by its real effect: a FUSE mount over a directory, a target process timing and
counting its own operations there, and every way the fault is taken back.

The target is a fresh Python process (it opens its files after the injection, as the fault
requires) that reports, as JSON, how long each of its fsyncs and reads took and which errno
each operation failed with. The mount, the server and the data underneath are checked on the
host: ``/proc/self/mountinfo``, the server's PID, the files read through a descriptor of the
directory opened before the mount covered it. Needs root (mounting) and /dev/fuse.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest
from scipy.stats import binom

from harness.chaos import capabilities, processes, watchdog
from harness.chaos.families.io import FAMILY, mounts
from harness.chaos.families.io.params import IoErrorFault, IoLatencyFault
from harness.chaos.journal import Journal, all_outstanding
from harness.chaos.steps import InjectContext
from tests.test_watchdog import _stop_pid, _wait_for

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or not capabilities.probe([capabilities.FUSE])[0].ok, reason="needs root and FUSE"
)

#: The target: ``ops`` rounds of write 4 KiB, fsync, read it back, in a file it opens now; each
#: fsync's and read's duration (ms) and every operation's errno (0: fine) as one JSON line.
TARGET = r"""
import errno, json, os, sys, time
directory, ops, name = sys.argv[1], int(sys.argv[2]), sys.argv[3]
out = {"write_ms": [], "fsync_ms": [], "read_ms": [], "errors": {"open": [], "write": [], "fsync": [], "read": []}}
def timed(what, call):
    t = time.perf_counter()
    try:
        call()
        out["errors"][what].append(0)
    except OSError as exc:
        out["errors"][what].append(exc.errno)
    return (time.perf_counter() - t) * 1000
fd = None
for attempt in range(50):  # the open itself may be a chosen operation
    try:
        fd = os.open(os.path.join(directory, name), os.O_CREAT | os.O_RDWR | os.O_APPEND, 0o644)
        out["errors"]["open"].append(0)
        break
    except OSError as exc:
        out["errors"]["open"].append(exc.errno)
for i in range(ops):
    block = f"{name} {i:06d} ".encode().ljust(4096, b".")
    out["write_ms"].append(timed("write", lambda: os.write(fd, block)))
    out["fsync_ms"].append(timed("fsync", lambda: os.fsync(fd)))
    out["read_ms"].append(timed("read", lambda: os.pread(fd, 4096, 0)))
os.close(fd)
print(json.dumps(out))
"""


def _target(directory: Path, ops: int, name: str) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, "-c", TARGET, str(directory), str(ops), name], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    return dict(json.loads(done.stdout))


def _latency(volume: Path, delay: str, methods: list[str], **extra: Any) -> IoLatencyFault:
    params = {"volume_path": str(volume), "delay": delay, "methods": methods, **extra}
    return IoLatencyFault.model_validate(
        {"name": "slow-disk", "kind": "io.latency", "at": 0, "duration": 60, "params": params}
    )


def _error(volume: Path, percent: float, methods: list[str], errno: str = "EIO") -> IoErrorFault:
    params = {"volume_path": str(volume), "percent": percent, "methods": methods, "errno": errno}
    return IoErrorFault.model_validate(
        {"name": "bad-disk", "kind": "io.error", "at": 0, "duration": 60, "params": params}
    )


def _gone(pid: int) -> bool:
    """The process ended (a zombie of ours counts: it holds nothing any more)."""
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def _ours(volume: Path) -> list[mounts.Mount]:
    return [m for m in mounts.harness_mounts() if m.point == str(volume)]


@pytest.fixture
def volume(tmp_path: Path) -> Iterator[Path]:
    """A directory with a file in it; any harness mount left on it is detached at the end."""
    directory = tmp_path / "volume"
    directory.mkdir()
    (directory / "before.txt").write_text("written before the fault\n")
    try:
        yield directory
    finally:
        for mount in _ours(directory):
            mounts.detach(mount.point, mount.source)
        for proc, _tag in processes.tagged([mounts.TAG]):
            if str(directory) in " ".join(proc.cmdline()):  # a server of this test's (its spec names the path)
                _stop_pid(proc.pid)


@pytest.fixture
def inject(tmp_path: Path) -> Iterator[Callable[..., Any]]:
    journal = Journal("io-effects", tmp_path / "journal")
    records: list[Any] = []

    def apply(fault: Any, lease_until: float | None = None) -> Any:
        record = FAMILY.inject(fault, InjectContext(journal.run_id, journal, lease_until))
        records.append(record)
        return record

    apply.journal = journal  # type: ignore[attr-defined]
    try:
        yield apply
    finally:
        for record in records:
            FAMILY.revert(record, journal)


def test_latency_adds_the_delay_to_the_chosen_operations_only(volume: Path, inject: Callable[..., Any]) -> None:
    before = _target(volume, 20, "base")
    record = inject(_latency(volume, "40ms", ["fsync", "read"]))
    assert [m.source for m in _ours(volume)] == ["harness-io:io-effects/slow-disk"]
    during = _target(volume, 20, "during")
    FAMILY.revert(record, inject.journal)  # type: ignore[attr-defined]
    after = _target(volume, 20, "after")

    for what in ("fsync_ms", "read_ms"):
        added = statistics.median(during[what]) - statistics.median(before[what])
        print(f"{what}: before {statistics.median(before[what]):.2f}, during {statistics.median(during[what]):.2f}")
        assert 40 * 0.8 <= added <= 40 * 1.2, (what, added)
        assert statistics.median(after[what]) < statistics.median(before[what]) + 8, (what, after[what])
    # writes were not chosen: no delay on them
    assert statistics.median(during["write_ms"]) < statistics.median(before["write_ms"]) + 8, during["write_ms"]
    assert not _ours(volume), "the mount is still there after the revert"
    # data written before, during and after the fault, read on the directory itself
    for name in ("base", "during", "after"):
        text = (volume / name).read_bytes()
        assert len(text) == 20 * 4096 and text.startswith(f"{name} 000000 ".encode()), name
        assert f"{name} 000019 ".encode() in text
    assert (volume / "before.txt").read_text() == "written before the fault\n"


def test_errors_come_at_the_configured_share_for_the_chosen_operations_only(
    volume: Path, inject: Callable[..., Any]
) -> None:
    inject(_error(volume, 30, ["write"], errno="ENOSPC"))
    seen = _target(volume, 400, "errors")
    writes = seen["errors"]["write"]
    failed = sum(1 for e in writes if e)
    low, high = binom.ppf(1e-6, len(writes), 0.30), binom.ppf(1 - 1e-6, len(writes), 0.30)
    print(f"{failed} of {len(writes)} writes failed (bounds {low:g}..{high:g})")
    assert low <= failed <= high
    assert set(writes) == {0, 28}  # ENOSPC only
    for other in ("open", "fsync", "read"):
        assert set(seen["errors"][other]) == {0}, other
    # the writes that succeeded are all there, in order, under the mount and underneath
    data = (volume / "errors").read_bytes()
    assert len(data) == (len(writes) - failed) * 4096


def test_unmount_succeeds_while_the_target_holds_a_file_open(volume: Path, inject: Callable[..., Any]) -> None:
    record = inject(_latency(volume, "1ms", ["read"]))
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; f = open(sys.argv[1], 'ab'); f.write(b'held\\n'); f.flush();"
         "print('open', flush=True); time.sleep(30)", str(volume / "held.txt")],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "open"
        server = psutil.Process(int(record.details["server_pid"]))
        FAMILY.revert(record, inject.journal)  # type: ignore[attr-defined]
        assert not _ours(volume)
        assert _gone(server.pid)
        assert holder.poll() is None, "the target died with the revert"
        assert (volume / "held.txt").read_text() == "held\n"  # on the directory underneath
        assert sorted(p.name for p in volume.iterdir()) == ["before.txt", "held.txt"]
    finally:
        holder.kill()
        holder.wait(10)


def test_watchdog_reverts_a_lapsed_lease(volume: Path, tmp_path: Path, inject: Callable[..., Any]) -> None:
    journal_dir = tmp_path / "journal"
    pid = watchdog.ensure_running(journal_dir)
    try:
        lease_until = time.time() + 1.5
        record = inject(_latency(volume, "5ms", ["read"]), lease_until=lease_until)
        assert _ours(volume)
        assert _wait_for(lambda: not _ours(volume), 1.5 + 2.0, step=0.02), "the watchdog left the mount"
        assert time.time() >= lease_until
        assert _wait_for(lambda: _gone(int(record.details["server_pid"])), 5)
        assert _wait_for(lambda: all_outstanding(journal_dir) == [], 3)
    finally:
        _stop_pid(pid)


def test_recover_reverts_from_the_journal_alone(volume: Path) -> None:
    journal = Journal("io-recover", Path(os.environ["HARNESS_DATA_DIR"]) / "journal")
    record = FAMILY.inject(_error(volume, 100, ["read"]), InjectContext(journal.run_id, journal))
    assert _ours(volume)
    done = subprocess.run([sys.executable, "-m", "harness.cli", "recover"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"unmounted {volume}" in done.stdout, done.stdout
    assert not _ours(volume)
    assert _wait_for(lambda: _gone(int(record.details["server_pid"])), 5)
    assert (volume / "before.txt").read_text() == "written before the fault\n"


def test_sweep_removes_a_mount_and_server_no_journal_knows(volume: Path, tmp_path: Path) -> None:
    from harness.chaos.families.io.spec import spec_of

    fault = _latency(volume, "5ms", ["read"])
    source, tag = "harness-io:lost-run/slow-disk", "lost-run/slow-disk"
    other = tmp_path / "other"  # an untagged look-alike: a mount that is not harness's
    other.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "harness-io-lookalike", str(other)], check=True)
    try:
        pid, _ticks = mounts.start(
            spec_of(fault, str(volume), source, 60), str(volume), source, tag, str(tmp_path / "log")
        )
        found = {(item.kind, item.name) for item in FAMILY.leftovers()}
        assert ("fuse mount", f"{volume} ({source})") in found
        assert ("process", f"pid {pid} (HARNESS_IO_FAULT={tag})") in found
        assert not [name for _kind, name in found if str(other) in name]
        done = subprocess.run(
            [sys.executable, "-m", "harness.cli", "recover", "--sweep"], capture_output=True, text=True, timeout=60
        )
        assert done.returncode == 0, done.stdout + done.stderr
        assert f"removed fuse mount {volume} ({source})" in done.stdout, done.stdout
        assert not _ours(volume)
        assert _wait_for(lambda: _gone(pid), 5)
        assert mounts.top_mount(str(other)) is not None, "the sweep unmounted a mount that is not harness's"
    finally:
        subprocess.run(["umount", str(other)], check=False)


def test_the_server_detaches_itself_after_its_lifetime(volume: Path, tmp_path: Path) -> None:
    from harness.chaos.families.io.spec import spec_of

    fault = _latency(volume, "5ms", ["read"])
    source, tag = "harness-io:short/slow-disk", "short/slow-disk"
    pid, _ticks = mounts.start(spec_of(fault, str(volume), source, 1.0), str(volume), source, tag, str(tmp_path / "l"))
    assert _wait_for(lambda: not _ours(volume), 5), "the server outlived its lifetime"
    assert _wait_for(lambda: _gone(pid), 5)


def test_refused_directories(tmp_path: Path) -> None:
    from harness.chaos.families.io import system_directory_refusal
    from harness.paths import journal_dir

    for path in ("/", "/etc", "/usr/lib", "/tmp", "/var/lib", "/proc/self"):
        assert system_directory_refusal(path), path
    assert system_directory_refusal(str(journal_dir().parent))
    assert system_directory_refusal(str(tmp_path)) is None
    journal = Journal("io-refused", tmp_path / "journal")
    with pytest.raises(Exception, match="system or top-level directory"):
        FAMILY.inject(_latency(Path("/tmp"), "5ms", ["read"]), InjectContext(journal.run_id, journal))
    with pytest.raises(Exception, match="is not a directory"):
        FAMILY.inject(_latency(tmp_path / "nope", "5ms", ["read"]), InjectContext(journal.run_id, journal))
    assert journal.records() == []


def test_a_target_in_its_own_mount_namespace_gets_the_mount_there(
    volume: Path, tmp_path: Path, inject: Callable[..., Any]
) -> None:
    """As a service started by ``ip netns exec`` (or in a container): the mount is made in its
    namespace (the host's mount table never shows it), and detached there on revert."""
    script = (
        "import json, sys, time\n"
        "sys.stdin.readline()\n"
        "t = time.perf_counter(); open(sys.argv[1] + '/before.txt', 'rb', buffering=0).read(100)\n"
        "print(json.dumps((time.perf_counter() - t) * 1000), flush=True)\n"
        "sys.stdin.readline()\n"
    )
    target = subprocess.Popen(
        ["unshare", "--mount", "--propagation", "private", sys.executable, "-c", script, str(volume)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        mine = os.readlink("/proc/self/ns/mnt")
        assert _wait_for(lambda: os.readlink(f"/proc/{target.pid}/ns/mnt") != mine, 5)
        (tmp_path / "target.pid").write_text(f"{target.pid}\n")
        fault = IoLatencyFault.model_validate(
            {
                "name": "slow-disk", "kind": "io.latency", "at": 0, "duration": 60,
                "target": {"pid_file": str(tmp_path / "target.pid")},
                "params": {"volume_path": str(volume), "delay": "50ms", "methods": ["read"]},
            }
        )  # fmt: skip
        assert "in the mount namespace of the process whose PID is in" in FAMILY.describe(fault), FAMILY.describe(fault)
        record = inject(fault)
        assert record.details["ns_pid"] == target.pid
        assert not _ours(volume), "mounted in the host's namespace instead of the target's"
        assert [m.point for m in mounts.harness_mounts(target.pid)] == [str(volume)]
        assert target.stdin is not None and target.stdout is not None
        target.stdin.write("go\n")
        target.stdin.flush()
        took = json.loads(target.stdout.readline())
        print(f"the target's read took {took:.1f} ms")
        assert 40 <= took <= 60 * 1.2 + 10
        FAMILY.revert(record, inject.journal)  # type: ignore[attr-defined]
        assert mounts.harness_mounts(target.pid) == []
        assert _gone(int(record.details["server_pid"]))
    finally:
        target.kill()
        target.wait(10)


def test_an_operation_in_flight_at_the_revert_completes(volume: Path, inject: Callable[..., Any]) -> None:
    """The revert stops the faults first and lets the detached server finish what it is doing:
    an fsync delayed when the revert starts returns success, and the file closed right after is
    intact, instead of failing with ENOTCONN."""
    record = inject(_latency(volume, "800ms", ["fsync"]))
    script = (
        "import json, os, sys, time\n"
        "fd = os.open(sys.argv[1], os.O_CREAT | os.O_WRONLY, 0o644); os.write(fd, b'in flight\\n')\n"
        "print('open', flush=True); sys.stdin.readline()\n"
        "t = time.perf_counter()\n"
        "try:\n    os.fsync(fd); result = 0\nexcept OSError as exc:\n    result = exc.errno\n"
        "os.close(fd); print(json.dumps([result, (time.perf_counter() - t) * 1000]), flush=True)\n"
    )
    holder = subprocess.Popen(
        [sys.executable, "-c", script, str(volume / "inflight.txt")],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert holder.stdin is not None and holder.stdout is not None
        assert holder.stdout.readline().strip() == "open"
        holder.stdin.write("go\n")
        holder.stdin.flush()
        time.sleep(0.2)  # the fsync is being delayed now
        FAMILY.revert(record, inject.journal)  # type: ignore[attr-defined]
        result, took = json.loads(holder.stdout.readline())
        print(f"fsync in flight at the revert: errno {result}, {took:.0f} ms")
        assert result == 0 and took >= 700
        assert not _ours(volume) and _gone(int(record.details["server_pid"]))
        assert (volume / "inflight.txt").read_text() == "in flight\n"
    finally:
        holder.kill()
        holder.wait(10)
