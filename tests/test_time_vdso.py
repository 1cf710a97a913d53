"""time.skew's vdso mechanism on real running processes: a Go binary (``time.Now()``: Go's runtime calls
the vDSO itself), a C program calling the vDSO's symbols directly (the same path, without Go) and a
Python one (``time.time()`` through glibc).

Each target prints, every 100 ms, its own wall clock (through the vDSO), the true wall clock from a
raw ``clock_gettime`` system call (the patch never touches a system call), and the same pair for
``CLOCK_MONOTONIC``; the C one also ``gettimeofday`` and ``time``. Each runs threads (Go: four
goroutines) that read the clock in a loop, so the patch and the revert happen while threads are
inside the vDSO. Each test starts processes: run under the shared lock.
"""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness.chaos import recover, sweep, vdso_skew
from harness.chaos.families.time import running
from harness.chaos.family import HostContext, family_of
from harness.chaos.journal import FaultState, Journal
from harness.chaos.processes import ResolvedProcess
from harness.chaos.steps import InjectContext
from harness.errors import FaultError
from harness.scenario import Safety
from tests.test_chaos_time import Target
from tests.test_chaos_time import _pid_fault as _fault

pytestmark = pytest.mark.skipif(platform.machine() != "x86_64", reason="the vDSO patch is x86-64 only")

C_TARGET = r"""
#define _GNU_SOURCE
#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

/* The vDSO's own symbols, looked up and called directly: what Go's runtime does. */
static int (*vdso_clock_gettime)(clockid_t, struct timespec *);
static int (*vdso_gettimeofday)(struct timeval *, void *);
static time_t (*vdso_time)(time_t *);

static double ts(struct timespec t) { return t.tv_sec + t.tv_nsec / 1e9; }

static void *hammer(void *arg) {
    struct timespec t;
    for (;;) {
        for (int i = 0; i < 20000; i++) vdso_clock_gettime(i & 1, &t);
        usleep(1000);
    }
    return arg;
}

int main(void) {
    void *vdso = dlopen("linux-vdso.so.1", RTLD_LAZY | RTLD_NOLOAD);
    vdso_clock_gettime = dlsym(vdso, "__vdso_clock_gettime");
    vdso_gettimeofday = dlsym(vdso, "__vdso_gettimeofday");
    vdso_time = dlsym(vdso, "__vdso_time");
    if (!vdso_clock_gettime || !vdso_gettimeofday || !vdso_time) return 3;
    pthread_t thread;
    for (int i = 0; i < 2; i++) pthread_create(&thread, NULL, hammer, NULL);
    printf("{\"ready\": true}\n");
    fflush(stdout);
    for (int i = 0; i < 600; i++) {
        struct timespec wall, mono, real, real_mono;
        struct timeval tv;
        vdso_clock_gettime(CLOCK_REALTIME, &wall);
        vdso_clock_gettime(CLOCK_MONOTONIC, &mono);
        vdso_gettimeofday(&tv, NULL);
        time_t seconds = vdso_time(NULL);
        syscall(SYS_clock_gettime, CLOCK_REALTIME, &real);
        syscall(SYS_clock_gettime, CLOCK_MONOTONIC, &real_mono);
        printf("{\"wall\": %.6f, \"mono\": %.6f, \"real\": %.6f, \"real_mono\": %.6f, \"gtod\": %.6f, \"time\": %ld}\n",
               ts(wall), ts(mono), ts(real), ts(real_mono), tv.tv_sec + tv.tv_usec / 1e6, (long)seconds);
        fflush(stdout);
        usleep(100000);
    }
    return 0;
}
"""

GO_TARGET = r"""
package main

import (
	"fmt"
	"syscall"
	"time"
	"unsafe"
)

func raw(clock int) float64 {
	var ts syscall.Timespec
	syscall.Syscall(syscall.SYS_CLOCK_GETTIME, uintptr(clock), uintptr(unsafe.Pointer(&ts)), 0)
	return float64(ts.Sec) + float64(ts.Nsec)/1e9
}

func main() {
	for i := 0; i < 4; i++ {
		go func() {
			for {
				for j := 0; j < 20000; j++ {
					_ = time.Now()
				}
				time.Sleep(time.Millisecond)
			}
		}()
	}
	start := time.Now()
	startRaw := raw(1)
	fmt.Println(`{"ready": true}`)
	for i := 0; i < 600; i++ {
		now := time.Now()
		wall := float64(now.UnixNano()) / 1e9
		mono := startRaw + now.Sub(start).Seconds() // Go's monotonic reading, from its own clock
		fmt.Printf("{\"wall\": %.6f, \"mono\": %.6f, \"real\": %.6f, \"real_mono\": %.6f}\n",
			wall, mono, raw(0), raw(1))
		time.Sleep(100 * time.Millisecond)
	}
}
"""

PY_TARGET = textwrap.dedent(
    """
    import ctypes, json, threading, time
    libc = ctypes.CDLL(None, use_errno=True)
    class TS(ctypes.Structure):
        _fields_ = [("s", ctypes.c_long), ("ns", ctypes.c_long)]
    def raw(clock):  # SYS_clock_gettime: never through the vDSO
        ts = TS(); libc.syscall(228, clock, ctypes.byref(ts)); return ts.s + ts.ns / 1e9
    def hammer():
        while True:
            for _ in range(2000):
                time.time(); time.monotonic()
            time.sleep(0.002)
    for _ in range(2):
        threading.Thread(target=hammer, daemon=True).start()
    print(json.dumps({"ready": True}), flush=True)
    for _ in range(600):
        print(json.dumps({"wall": time.time(), "mono": time.monotonic(), "real": raw(0), "real_mono": raw(1)}),
              flush=True)
        time.sleep(0.1)
    """
)


@pytest.fixture(scope="module")
def c_binary(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if shutil.which("gcc") is None:
        pytest.skip("gcc is not installed (make setup installs TEST_APT)")
    work = tmp_path_factory.mktemp("vdso-c")
    (work / "target.c").write_text(C_TARGET)
    subprocess.run(["gcc", "-O2", "-pthread", "-o", str(work / "target"), str(work / "target.c")], check=True)
    return work / "target"


@pytest.fixture(scope="module")
def go_binary(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if shutil.which("go") is None:
        pytest.skip("go is not installed (Debian's golang-go, in the Makefile's TEST_APT)")
    work = tmp_path_factory.mktemp("vdso-go")
    (work / "main.go").write_text(GO_TARGET)
    env = {**os.environ, "GOCACHE": str(work / "cache"), "GOPATH": str(work / "gopath"), "GO111MODULE": "off"}
    subprocess.run(["go", "build", "-o", str(work / "target"), str(work / "main.go")], check=True, env=env, cwd=work)
    return work / "target"


@pytest.fixture(params=["go", "c-vdso-direct", "python"])
def target(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Target]:
    if request.param == "python":
        (tmp_path / "target.py").write_text(PY_TARGET)
        command = [sys.executable, str(tmp_path / "target.py")]
    else:
        command = [str(request.getfixturevalue(f"{request.param.split('-')[0]}_binary"))]
    started = Target(command)
    yield started
    started.stop()


def _offsets(samples: list[dict[str, float]], key: str = "wall") -> list[float]:
    return [round(s[key] - s["real"], 3) for s in samples]


def test_offset_seen_within_50ms_monotonic_untouched_and_clean_after(target: Target, tmp_path: Path) -> None:
    fault = _fault(tmp_path, target.process.pid, offset="-10m", mechanism="auto")
    family = family_of(fault.kind)
    assert family.resolve(fault, HostContext(Safety())) == f"; now: pid {target.process.pid} (vDSO patch)"
    journal = Journal("vdso-offset", tmp_path / "journal")
    time.sleep(0.6)
    injected_at = time.time()
    record = family.inject(fault, InjectContext("vdso-offset", journal))
    applied_at = time.time()
    assert record.state is FaultState.INJECTED and record.details["mechanism"] == "vdso"
    time.sleep(1.2)
    reverted_at = time.time()
    family.revert(record, journal)
    done_at = time.time()
    time.sleep(2.0)  # the process runs on: no crash, its output continues

    before = target.between(0, injected_at)
    during = target.between(applied_at, reverted_at)
    after = target.between(done_at, time.time())
    assert len(before) >= 4 and len(during) >= 10 and len(after) >= 17, (len(before), len(during), len(after))
    assert all(abs(o) < 0.01 for o in _offsets(before)), _offsets(before)
    assert all(abs(o + 600) < 0.01 for o in _offsets(during)), _offsets(during)
    assert during[0]["real"] - applied_at < 0.15  # the first sample after the inject (one every 100 ms) has it
    assert all(abs(o) < 0.01 for o in _offsets(after)), _offsets(after)
    if "gtod" in during[0]:  # the C target: gettimeofday and time are moved with it
        assert all(abs(o + 600) < 0.01 for o in _offsets(during, "gtod")), _offsets(during, "gtod")
        assert all(abs(s["time"] - (s["real"] - 600)) <= 1 for s in during), during
        assert all(abs(o) < 0.01 for o in _offsets(after, "gtod")), _offsets(after, "gtod")
    mono = [s["mono"] - s["real_mono"] for s in target.samples]
    assert max(mono) - min(mono) < 0.01, (min(mono), max(mono))  # CLOCK_MONOTONIC never moved
    assert target.process.poll() is None, "the target died"
    assert journal.records()[-1].state is FaultState.REVERTED
    assert vdso_skew.patched_processes() == []


def test_recover_from_the_journal_alone_then_the_sweep(c_binary: Path, tmp_path: Path) -> None:
    target = Target([str(c_binary)])
    try:
        fault = _fault(tmp_path, target.process.pid, offset="+2h", mechanism="vdso")
        journal_dir = tmp_path / "journal"
        family_of(fault.kind).inject(fault, InjectContext("vdso-recover", Journal("vdso-recover", journal_dir)))
        time.sleep(0.3)
        assert abs(_offsets(target.samples[-1:])[0] - 7200) < 0.01
        lines = recover.recover(journal_dir)  # what `harness recover` runs: the record is all it has
        assert any(f"vDSO restored in pid {target.process.pid}" in line for line in lines), lines
        time.sleep(0.3)
        assert abs(_offsets(target.samples[-1:])[0]) < 0.01

        # A run whose journal was lost left a patch: the sweep finds it by the page's tag and restores it.
        family_of(fault.kind).inject(fault, InjectContext("vdso-lost", Journal("vdso-lost", tmp_path / "lost")))
        found = [item for item in sweep.find() if item.family == "time"]
        assert [item.key[0] for item in found] == [target.process.pid], found
        done, failed = sweep.sweep()
        assert not failed and any(f"pid {target.process.pid}" in line for line in done), (done, failed)
        time.sleep(0.3)
        assert abs(_offsets(target.samples[-1:])[0]) < 0.01
        assert [item for item in sweep.find() if item.family == "time"] == []
        assert target.process.poll() is None
    finally:
        target.stop()


def test_an_exited_target_is_nothing_to_revert(c_binary: Path, tmp_path: Path) -> None:
    target = Target([str(c_binary)])
    fault = _fault(tmp_path, target.process.pid, offset="-1h", mechanism="vdso")
    journal = Journal("vdso-gone", tmp_path / "journal")
    record = family_of(fault.kind).inject(fault, InjectContext("vdso-gone", journal))
    target.stop()
    family_of(fault.kind).revert(record, journal)
    last = journal.records()[-1]
    assert last.state is FaultState.REVERTED and last.details["gone_pids"] == str(target.process.pid)


def test_harness_itself_and_pid_1_are_never_patched(tmp_path: Path) -> None:
    for pid in (1, os.getpid()):
        with pytest.raises(FaultError, match="never a clock-skew target"):
            running.prepare([ResolvedProcess(pid, "x", 0.0)])
    (tmp_path / "init.pid").write_text("1\n")
    fault = _fault(tmp_path, 1, name="init", offset="-1m", mechanism="vdso")
    refusal = family_of(fault.kind).refusal(fault, HostContext(Safety()))
    assert refusal is not None and "PID 1" in refusal and "never a fault target" in refusal


def test_vdso_takes_no_rate_and_the_stub_matches_its_source(tmp_path: Path) -> None:
    scenario = tmp_path / "bad.yaml"
    scenario.write_text(
        "name: bad\ntarget: {base_url: http://127.0.0.1:8700}\n"
        "load: {locustfile: x.py, stages: [{duration: 5s, users: 1}]}\n"
        "faults:\n"
        "  - {name: s, kind: time.skew, at: 1s, duration: 2s, target: {pid_file: /tmp/x.pid},\n"
        "     params: {offset: -1m, rate: 1.5, mechanism: vdso}}\n"
        "  - {name: t, kind: time.skew, at: 1s, duration: 2s, target: {pid_file: /tmp/x.pid},\n"
        "     params: {offset: -1m, mechanism: ptrace}}\n"
    )
    (tmp_path / "x.py").write_text("from locust import HttpUser\nclass U(HttpUser):\n    pass\n")
    done = subprocess.run(
        [str(Path(sys.executable).with_name("harness")), "validate", str(scenario)], capture_output=True, text=True
    )
    out = done.stdout + done.stderr
    assert done.returncode == 2 and "Traceback" not in out, out
    assert "bad.yaml:6:" in out and "mechanism vdso moves the clock by an offset only: leave rate at 1" in out, out
    assert "bad.yaml:8:" in out and "faults[1].params.mechanism" in out, out
    if shutil.which("as") is None or shutil.which("objcopy") is None:
        pytest.skip("binutils is not installed")
    source = Path(vdso_skew.__file__).with_suffix(".s")
    subprocess.run(["as", "--64", "-o", str(tmp_path / "stub.o"), str(source)], check=True)
    subprocess.run(["objcopy", "-O", "binary", "-j", ".text", str(tmp_path / "stub.o"), str(tmp_path / "stub.bin")])
    assembled = (tmp_path / "stub.bin").read_bytes()
    assert assembled[: len(vdso_skew.STUB_CODE)] == vdso_skew.STUB_CODE
    assert set(assembled[len(vdso_skew.STUB_CODE) : vdso_skew.DATA_AT]) == {0xCC}
