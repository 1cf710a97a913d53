"""Issue 7: network, proxy, stress and io faults act only on what the scenario's ``safety`` block allows.

Each rule is refused through the real ``harness run`` in a subprocess: exit 2, the problem
located as ``file:line:col: key.path: message`` (or, for what needs the host, the preflight's
``error: fault '...'`` line), and nothing started or applied: no run directory, no journal,
no process of the run alive, no harness nftables table, qdisc or blackhole route added in the
host's namespace, no link taken down, no file written. The allowed variants pass ``harness
validate``. ``harness schema`` describes the new keys.

A refused scenario also carries a *tripwire*: a partition in a network namespace that does
not exist. Should an allow-list check ever stop refusing, the preflight refuses the tripwire
before Ray starts (with another message, so the test fails), and no fault can act on the host.
Everything here is validation or preflight: a few seconds in all.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil
import pytest

from harness.chaos import cgroups, preflight
from harness.chaos import processes as process
from harness.errors import ConfigError, FaultError, ScenarioError
from harness.scenario import ProcessTarget, load_scenario

ROOT = Path(__file__).resolve().parents[1]
LOCUSTFILE = ROOT / "tests" / "locustfiles" / "ping.py"
TRIPWIRE_NETNS = f"hallow-none-{os.getpid()}"
BASE_URL = "http://127.0.0.1:9"  # discard: nothing is ever sent, every case stops before load


def scenario_text(faults: str, safety: str = "", base_url: str = BASE_URL, hosts: str = "") -> str:
    """A 30 s scenario whose faults[0] is the tripwire and faults[1:] are ``faults``."""
    allowed_hosts = f"\n  allowed_hosts: [{hosts}]" if hosts else ""
    return f"""\
name: allow-lists
target:
  base_url: "{base_url}"{allowed_hosts}
load:
  locustfile: {LOCUSTFILE}
  user_classes: [{{class: Idler}}]
  processes: 1
  stages: [{{name: s, duration: 30s, users: 1, spawn_rate: 1}}]
faults:
  - {{name: tripwire, kind: network.partition, at: 25s, duration: 1s,
     target: {{netns: {TRIPWIRE_NETNS}}}, params: {{peers: [127.0.0.1]}}}}
{faults}slos:
  - {{name: up, objective: "error_rate < 100%", window: run}}
{safety}"""


def position(text: str, needle: str) -> tuple[int, int]:
    """1-based line and column of the first ``needle`` in ``text``."""
    offset = text.index(needle)
    line = text.count("\n", 0, offset) + 1
    return line, offset - (text.rfind("\n", 0, offset) + 1) + 1


def located(text: str, case: Refusal) -> list[tuple[int, int, str, str]]:
    """(line, column, key path, message) of each problem ``case`` expects in ``text``."""
    return [(*position(text, needle), key, message) for needle, key, message in case.expected]


@dataclass(frozen=True)
class Refusal:
    name: str
    faults: str
    safety: str
    expected: list[tuple[str, str, str]]  # (needle located, key path, message)


NOT_LOAD = "and is not a load host (127.0.0.1)"

REFUSALS = [
    Refusal(
        "peer-outside-in-the-host-namespace",
        "  - {name: cut, kind: network.partition, at: 5s, duration: 5s,\n"
        "     params: {peers: [127.0.0.1, 203.0.113.0/24]}}\n",
        "",
        [
            (
                "203.0.113.0/24]",
                "faults[1].params.peers[1]",
                f"203.0.113.0/24 is outside safety.allowed_networks (none given) {NOT_LOAD}",
            )
        ],
    ),
    Refusal(
        "peers-outside-or-wider-in-a-named-namespace",
        f"  - {{name: lossy, kind: network.loss, at: 5s, duration: 5s, target: {{netns: {TRIPWIRE_NETNS}}},\n"
        "     params: {percent: 10, peers: [198.51.100.7, 203.0.113.4/32, 203.0.112.0/23]}}\n",
        "safety: {allowed_networks: [203.0.113.0/24]}\n",
        [
            (
                "198.51.100.7",
                "faults[1].params.peers[0]",
                f"198.51.100.7/32 is outside safety.allowed_networks (203.0.113.0/24) {NOT_LOAD}",
            ),
            (
                "203.0.112.0/23",
                "faults[1].params.peers[2]",
                f"203.0.112.0/23 is outside safety.allowed_networks (203.0.113.0/24) {NOT_LOAD}",
            ),
        ],
    ),
    Refusal(
        "host-interface-not-listed",
        "  - {name: thin, kind: network.bandwidth, at: 5s, duration: 5s,\n"
        "     target: {interface: hallow9}, params: {rate: 1mbit}}\n",
        "",
        [
            (
                "interface: hallow9",
                "faults[1].target.interface",
                "interface hallow9 of the host's own network namespace is not in safety.allowed_interfaces "
                "(none given); list it there, or give the target.netns it is in",
            )
        ],
    ),
    Refusal(
        "host-loopback-is-no-exception",
        "  - {name: slow-lo, kind: network.netem, at: 5s, duration: 5s,\n"
        "     target: {interface: lo}, params: {delay: 100ms}}\n",
        "safety: {allowed_interfaces: [hallow9]}\n",
        [
            (
                "interface: lo",
                "faults[1].target.interface",
                "interface lo of the host's own network namespace is not in safety.allowed_interfaces (hallow9); "
                "list it there, or give the target.netns it is in",
            )
        ],
    ),
    Refusal(
        "transparent-proxy-service-outside",
        '  - {name: abort, kind: proxy.abort, at: 5s, duration: 5s, target: {service: "203.0.113.5:80"},\n'
        "     params: {status: 503, percent: 10}}\n",
        "",
        [
            (
                "service:",
                "faults[1].target.service",
                f"203.0.113.5:80 is outside safety.allowed_networks (none given) {NOT_LOAD}",
            )
        ],
    ),
    Refusal(
        "proxy-control-not-loopback",
        '  - {name: slow, kind: proxy.latency, at: 5s, duration: 5s, target: {control: "198.51.100.5:9000"},\n'
        "     params: {latency: 50ms}}\n",
        "",
        [
            (
                "control:",
                "faults[1].target.control",
                f"198.51.100.5:9000 is not loopback and is outside safety.allowed_networks (none given) {NOT_LOAD}",
            )
        ],
    ),
    Refusal(
        "http-rule-service-outside",
        '  - {name: slow-route, kind: http.delay, at: 5s, duration: 5s, target: {service: "203.0.113.7:80"},\n'
        "     params: {method: GET, path: /api/*, delay: 50ms}}\n",
        "",
        [
            (
                "service:",
                "faults[1].target.service",
                f"203.0.113.7:80 is outside safety.allowed_networks (none given) {NOT_LOAD}",
            )
        ],
    ),
    Refusal(
        "http-rule-control-not-loopback",
        '  - {name: swap, kind: http.replace, at: 5s, duration: 5s, target: {control: "198.51.100.6:9000"},\n'
        "     params: {target: Response, replace: {code: 500}}}\n",
        "",
        [
            (
                "control:",
                "faults[1].target.control",
                f"198.51.100.6:9000 is not loopback and is outside safety.allowed_networks (none given) {NOT_LOAD}",
            )
        ],
    ),
    Refusal(
        "dns-outside-and-ambiguous-targets",
        '  - {name: fake, kind: dns.spoof, at: 5s, duration: 5s, target: {control: "198.51.100.5:5380"},\n'
        "     params: {patterns: [payments.shop.demo], address: 198.51.100.9}}\n"
        "  - {name: nx, kind: dns.error, at: 5s, duration: 5s, target: {pattern: gateway, netns: shop},\n"
        "     params: {patterns: ['*'], error: nxdomain}}\n",
        "",
        [
            (
                "control:",
                "faults[1].target.control",
                f"198.51.100.5:5380 is not loopback and is outside safety.allowed_networks (none given) {NOT_LOAD}",
            ),
            (
                "address: 198",
                "faults[1].params.address",
                f"198.51.100.9 is outside safety.allowed_networks (none given) {NOT_LOAD}",
            ),
            (
                "target: {pattern: gateway",
                "faults[2].target",
                "give exactly one of control (a running harness DNS responder), netns (a network namespace) "
                "or a process target (pid_file, pattern or systemd_unit)",
            ),
        ],
    ),
    Refusal(
        "stress-directories-outside-the-defaults",
        "  - {name: fill, kind: stress.disk_fill, at: 5s, duration: 5s, params: {path: /var/lib, bytes: 1M}}\n"
        "  - {name: climb, kind: stress.disk_fill, at: 5s, duration: 5s, params: {path: /tmp/../etc, bytes: 1M}}\n"
        "  - {name: rel, kind: stress.io, at: 5s, duration: 5s, params: {path: scratch}}\n",
        "",
        [
            ("path: /var/lib", "faults[1].params.path", "/var/lib is not under safety.allowed_paths (/tmp, /var/tmp)"),
            (
                "path: /tmp/../etc",
                "faults[2].params.path",
                "/tmp/../etc is not under safety.allowed_paths (/tmp, /var/tmp)",
            ),
            (
                "path: scratch",
                "faults[3].params.path",
                "'scratch' is not an absolute path; give the directory as /... (it is on the fault's node)",
            ),
        ],
    ),
    Refusal(
        "io-volume-outside-the-allowed-paths",
        "  - {name: slow-db, kind: io.latency, at: 5s, duration: 5s,\n"
        "     params: {volume_path: /var/lib/mysql, delay: 50ms}}\n",
        "",
        [
            (
                "volume_path: /var/lib/mysql",
                "faults[1].params.volume_path",
                "/var/lib/mysql is not under safety.allowed_paths (/tmp, /var/tmp)",
            )
        ],
    ),
    Refusal(
        "allowed-paths-replace-the-defaults",
        "  - {name: io, kind: stress.io, at: 5s, duration: 5s, params: {path: /tmp}}\n",
        "safety: {allowed_paths: [/srv/harness-scratch]}\n",
        [("path: /tmp}", "faults[1].params.path", "/tmp is not under safety.allowed_paths (/srv/harness-scratch)")],
    ),
]


def _kernel_thread() -> int:
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and int(entry.name) > 1 and process.never_a_target(int(entry.name)):
            return int(entry.name)
    pytest.skip("no kernel thread visible in /proc")


def _host_state() -> dict[str, Any]:
    """What a network fault in the host's namespace would leave: harness nft tables, harness
    qdiscs (tbf 4852:, netem/prio 4853:), blackhole routes of metric 4852, and lo's flags."""
    from pyroute2 import IPRoute

    state: dict[str, Any] = {"tables": set()}
    if shutil.which("nft") and os.geteuid() == 0:
        done = subprocess.run(["nft", "-j", "list", "tables"], capture_output=True, text=True, timeout=10)
        for item in json.loads(done.stdout or "{}").get("nftables", []):
            name = item.get("table", {}).get("name", "")
            if name.startswith("harness"):
                state["tables"].add(name)
    with IPRoute() as ipr:
        state["qdiscs"] = {
            (q["index"], q.get_attr("TCA_KIND"), q["handle"])
            for q in ipr.get_qdiscs()
            if q["handle"] >> 16 in (0x4852, 0x4853, 0x4854)
        }
        state["routes"] = {str(r.get_attr("RTA_DST")) for r in ipr.get_routes() if r.get_attr("RTA_PRIORITY") == 4852}
        state["lo_flags"] = ipr.link("get", ifname="lo")[0]["flags"]
    return state


def _ours(data_dir: Path) -> list[psutil.Process]:
    found = []
    for proc in psutil.process_iter(["pid"]):
        try:
            if proc.environ().get("HARNESS_DATA_DIR") == str(data_dir):
                found.append(proc)
        except psutil.Error:
            continue
    return found


def _env(work: Path) -> dict[str, str]:
    return {
        **os.environ,
        "HARNESS_DATA_DIR": str(work / "data"),
        "HARNESS_RUNS_DIR": str(work / "runs"),
        "PYTHONDONTWRITEBYTECODE": "1",
    }


def _harness(*args: str, work: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "harness.cli", *args],
        cwd=work,
        env=_env(work),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def _finish(proc: subprocess.Popen[str]) -> str:
    try:
        output, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    return output


@pytest.fixture
def preflight_cases(tmp_path: Path) -> Iterator[dict[str, tuple[str, str, str]]]:
    """Refusals only the host can decide: (faults, safety, expected error) by case name."""
    allowed, elsewhere = tmp_path / "allowed", tmp_path / "elsewhere"
    allowed.mkdir()
    elsewhere.mkdir()
    (allowed / "escape").symlink_to(elsewhere)
    (tmp_path / "init.pid").write_text("1\n")
    kthread = _kernel_thread()
    (tmp_path / "kthread.pid").write_text(f"{kthread}\n")
    plain = subprocess.Popen(["sleep", "60"], stdin=subprocess.DEVNULL)  # not under the clock shim
    (tmp_path / "plain.pid").write_text(f"{plain.pid}\n")
    yield {
        "symlink-out-of-the-allowed-paths": (
            f"  - {{name: fill, kind: stress.disk_fill, at: 5s, duration: 5s,\n"
            f"     params: {{path: {allowed / 'escape'}, bytes: 1M}}}}\n",
            f"safety: {{allowed_paths: [{allowed}]}}\n",
            f"error: fault 'fill': {allowed / 'escape'} is {elsewhere} once symbolic links are followed, "
            f"which is not under safety.allowed_paths ({allowed})",
        ),
        "io-symlink-out-of-the-allowed-paths": (
            f"  - {{name: slow, kind: io.latency, at: 5s, duration: 5s,\n"
            f"     params: {{volume_path: {allowed / 'escape'}, delay: 5ms}}}}\n",
            f"safety: {{allowed_paths: [{allowed}]}}\n",
            f"error: fault 'slow': {allowed / 'escape'} is {elsewhere} once symbolic links are followed, "
            f"which is not under safety.allowed_paths ({allowed})",
        ),
        "io-over-a-top-level-directory": (
            "  - {name: broken-tmp, kind: io.error, at: 5s, duration: 5s, params: {volume_path: /tmp}}\n",
            "",
            "error: fault 'broken-tmp': /tmp is a system or top-level directory: never an io fault's volume_path",
        ),
        "pid-file-naming-pid-1": (
            f"  - {{name: kill-init, kind: process.kill, at: 5s, duration: 5s,\n"
            f"     target: {{pid_file: {tmp_path}/init.pid}}}}\n",
            "",
            f"error: fault 'kill-init': pid file {tmp_path}/init.pid names process 1, PID 1 (init: stopping it "
            "takes the whole machine or container down): never a fault target",
        ),
        "pid-file-naming-a-kernel-thread": (
            f"  - {{name: stop-kthread, kind: process.pause, at: 5s, duration: 5s,\n"
            f"     target: {{pid_file: {tmp_path}/kthread.pid}}}}\n",
            "",
            f"error: fault 'stop-kthread': pid file {tmp_path}/kthread.pid names process {kthread}, "
            "a kernel thread: never a fault target",
        ),
        "dns-of-pid-1": (
            f"  - {{name: nx-init, kind: dns.error, at: 5s, duration: 5s,\n"
            f"     target: {{pid_file: {tmp_path}/init.pid}}, params: {{patterns: ['*'], error: nxdomain}}}}\n",
            "",
            f"error: fault 'nx-init': pid file {tmp_path}/init.pid names process 1, PID 1 (init: stopping it "
            "takes the whole machine or container down): never a fault target",
        ),
        "clock-skew-of-pid-1": (
            f"  - {{name: skew-init, kind: time.skew, at: 5s, duration: 5s,\n"
            f"     target: {{pid_file: {tmp_path}/init.pid}}, params: {{offset: -10m}}}}\n",
            "",
            f"error: fault 'skew-init': pid file {tmp_path}/init.pid names process 1, PID 1 (init: stopping it "
            "takes the whole machine or container down): never a fault target",
        ),
        "clock-skew-of-a-process-not-under-the-clock-shim": (
            f"  - {{name: skew-plain, kind: time.skew, at: 5s, duration: 5s,\n"
            f"     target: {{pid_file: {tmp_path}/plain.pid}}, params: {{offset: -10m}}}}\n",
            "",
            f"error: fault 'skew-plain': pid {plain.pid} (sleep 60) was not started under harness's clock shim; "
            "start it under harness's clock shim: `python -m harness.chaos.clock_shim --file SKEW_FILE -- COMMAND` "
            "(the demo: `harness demo up --clock-shim payments`)",
        ),
    }
    plain.kill()
    plain.wait(10)
    assert list(elsewhere.iterdir()) == [], "the fill file was written through the link"


def test_each_refusal_exits_2_located_and_applies_nothing(
    tmp_path: Path, preflight_cases: dict[str, tuple[str, str, str]]
) -> None:
    before = _host_state()
    jobs: list[tuple[str, Path, subprocess.Popen[str], list[str]]] = []
    for case in REFUSALS:
        work = tmp_path / case.name
        work.mkdir()
        text = scenario_text(case.faults, case.safety)
        path = work / "scenario.yaml"
        path.write_text(text)
        lines = [f"{path}:{line}:{col}: {key}: {message}" for line, col, key, message in located(text, case)]
        lines.append(f"{len(case.expected)} problem{'s' if len(case.expected) > 1 else ''} found; nothing was started.")
        jobs.append((case.name, work, _harness("run", str(path), work=work), lines))
    for name, (faults, safety, expected) in preflight_cases.items():
        work = tmp_path / name
        work.mkdir()
        path = work / "scenario.yaml"
        path.write_text(scenario_text(faults, safety))
        jobs.append((name, work, _harness("run", str(path), work=work), [expected]))

    outputs = [_finish(proc) for _name, _work, proc, _lines in jobs]  # all of them, before any assert
    for (name, work, proc, lines), output in zip(jobs, outputs, strict=True):
        assert proc.returncode == 2, f"{name}: exit {proc.returncode}\n{output}"
        for line in lines:  # located problems are printed unwrapped; an error line may wrap
            found = (
                line in output.splitlines()
                if ": faults[" in line
                else " ".join(line.split()) in " ".join(output.split())
            )
            assert found, f"{name}: no line\n  {line}\nin\n{output}"
        assert "Traceback" not in output and "tripwire" not in output, f"{name}\n{output}"
        assert not (work / "runs").exists(), f"{name}: a run directory was made"
        journal = work / "data" / "journal"
        assert not journal.exists() or not any(journal.iterdir()), f"{name}: something was journaled"
        assert not _ours(work / "data"), f"{name}: a process of the run is alive"

    after = _host_state()
    assert after["tables"] <= before["tables"], after["tables"] - before["tables"]
    assert after["qdiscs"] <= before["qdiscs"], after["qdiscs"] - before["qdiscs"]
    assert after["routes"] <= before["routes"], after["routes"] - before["routes"]
    assert after["lo_flags"] == before["lo_flags"]


ALLOWED = scenario_text(
    """\
  - {name: cut-load-host, kind: network.partition, at: 1s, duration: 1s, params: {peers: [127.0.0.1/32]}}
  - {name: cut-allowed-host, kind: network.partition, at: 1s, duration: 1s, params: {peers: [10.214.9.9]}}
  - {name: cut-inside, kind: network.loss, at: 1s, duration: 1s,
     params: {percent: 5, peers: [203.0.113.0/25, 203.0.113.200, "2001:db8::/48"]}}
  - {name: listed-host-interface, kind: network.bandwidth, at: 2s, duration: 1s,
     target: {interface: hallow9}, params: {rate: 1mbit}}
  - {name: listed-loopback, kind: network.link_down, at: 2s, duration: 1s, target: {interface: lo}}
  - {name: interface-in-a-namespace, kind: network.netem, at: 2s, duration: 1s,
     target: {netns: shop, interface: eth0}, params: {delay: 5ms, peers: [198.51.100.0/24]}}
  - {name: proxy-on-load-host, kind: proxy.abort, at: 3s, duration: 1s, target: {service: "127.0.0.1:8701"},
     params: {status: 503, percent: 5}}
  - {name: proxy-inside, kind: proxy.reset, at: 3s, duration: 1s, target: {service: "203.0.113.9:80", netns: shop}}
  - {name: control-loopback, kind: proxy.latency, at: 3s, duration: 1s, target: {control: "[::1]:8705"},
     params: {latency: 5ms}}
  - {name: control-inside, kind: proxy.latency, at: 4s, duration: 1s, target: {control: "203.0.113.1:8705"},
     params: {latency: 5ms}}
  - {name: io-default-tmp, kind: stress.io, at: 4s, duration: 1s}
  - {name: dns-loopback, kind: dns.spoof, at: 4s, duration: 1s, target: {control: "127.0.0.1:8707"},
     params: {patterns: ["*.shop.demo"], address: random, network: 203.0.113.0/28}}
  - {name: dns-in-a-namespace, kind: dns.error, at: 4s, duration: 1s, target: {netns: shop},
     params: {patterns: [payments.shop.demo], error: timeout}}
  - {name: dns-of-a-process, kind: dns.error, at: 5s, duration: 1s,
     target: {pattern: shop-gateway, upstream: "127.0.0.1:5399"},
     params: {patterns: [payments.shop.demo], error: servfail}}
  - {name: fill-var-tmp, kind: stress.disk_fill, at: 4s, duration: 1s, params: {path: /var/tmp/x/, bytes: 1M}}
""",
    'safety:\n  allowed_networks: [203.0.113.0/24, "2001:db8::/32"]\n  allowed_interfaces: [hallow9, lo]\n',
    hosts="127.0.0.1, 10.214.9.9, shop.internal",
)

ALLOWED_ELSEWHERE = scenario_text(
    """\
  - {name: cut-localhost, kind: network.partition, at: 1s, duration: 1s, params: {peers: [127.0.0.1, "::1"]}}
  - {name: io-scratch, kind: stress.io, at: 1s, duration: 1s, params: {path: /srv/scratch/io}}
  - {name: fill-scratch, kind: stress.disk_fill, at: 1s, duration: 1s, params: {path: /srv/scratch, bytes: 1M}}
""",
    "safety: {allowed_paths: [/srv/scratch/]}\n",
    base_url="http://localhost:9",
)


def test_allowed_targets_validate(tmp_path: Path) -> None:
    """Load hosts (IP or localhost), listed networks and interfaces, a named namespace, loopback
    control addresses and directories under the allowed paths all pass ``harness validate``."""
    procs = []
    for name, text in (("allowed", ALLOWED), ("elsewhere", ALLOWED_ELSEWHERE)):
        path = tmp_path / f"{name}.yaml"
        path.write_text(text)
        procs.append((path, _harness("validate", str(path), work=tmp_path)))
    for path, proc in procs:
        output = _finish(proc)
        assert proc.returncode == 0, output
        assert f"{path}: valid:" in output, output
    assert load_scenario(tmp_path / "elsewhere.yaml").safety.allowed_paths == ["/srv/scratch"]


def test_preflight_passes_a_real_directory_under_the_allowed_paths(tmp_path: Path) -> None:
    """No symbolic link on the way out: the preflight lets a directory under /tmp through."""
    path = tmp_path / "fill.yaml"
    fill = f"  - {{name: fill, kind: stress.disk_fill, at: 1s, duration: 1s, params: {{path: {tmp_path}, bytes: 1M}}}}"
    path.write_text(scenario_text(fill + "\n"))
    scenario = load_scenario(path)
    preflight.check(scenario.model_copy(update={"faults": scenario.faults[1:]}))  # without the tripwire
    assert not list(tmp_path.glob("harness-fill-*"))


def test_schema_describes_the_allow_lists() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "harness.cli", "schema"], capture_output=True, text=True, timeout=60, check=True
    )
    safety = json.loads(done.stdout)["$defs"]["Safety"]["properties"]
    for key in ("allowed_contexts", "allowed_networks", "allowed_interfaces", "allowed_paths"):
        assert len(safety[key].get("description", "")) > 40, key
    assert safety["allowed_paths"]["default"] == ["/tmp", "/var/tmp"]
    assert "load host" in safety["allowed_networks"]["description"]


# ---------------------------------------------------------------- process faults: PID 1 and kernel threads


def test_pid_1_and_kernel_threads_are_never_targets(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Even when the ancestor chain does not reach PID 1 (monkeypatched away here): a pid file
    naming PID 1 or a kernel thread is refused, a pattern matching only PID 1 matches nothing,
    and a systemd unit whose control group holds PID 1 is refused. Nothing is signalled."""
    monkeypatch.setattr(process, "protected_processes", lambda: [])
    kthread = _kernel_thread()
    assert process.never_a_target(1) is not None
    assert process.never_a_target(kthread) == "a kernel thread"
    assert process.never_a_target(os.getpid()) is None

    (tmp_path / "init.pid").write_text("1\n")
    with pytest.raises(FaultError, match=r"process 1 from .*init.pid is PID 1 \(init"):
        process.resolve_targets(ProcessTarget(pid_file=str(tmp_path / "init.pid")))
    (tmp_path / "kthread.pid").write_text(str(kthread))
    with pytest.raises(FaultError, match=f"process {kthread} from .* is a kernel thread; refusing"):
        process.resolve_targets(ProcessTarget(pid_file=str(tmp_path / "kthread.pid")))

    argv = Path("/proc/1/cmdline").read_bytes().rstrip(b"\0").split(b"\0")
    if argv and argv[0]:
        only_init = "^" + re.escape(" ".join(a.decode(errors="replace") for a in argv)) + "$"
        with pytest.raises(FaultError, match="PID 1 excluded"):
            process.resolve_targets(ProcessTarget(pattern=only_init))

    shown = {"ControlGroup": "/init.scope", "MainPID": "1"}
    monkeypatch.setattr(process, "_systemctl_show", lambda unit, prop: shown.get(prop, ""))
    monkeypatch.setattr(cgroups, "cgroup_dirs", lambda group: ["/sys/fs/cgroup/init.scope"])
    monkeypatch.setattr(cgroups, "cgroup_pids", lambda directory: {1})
    with pytest.raises(FaultError, match=r"init.scope: its control group /init.scope holds PID 1 .*refusing"):
        process.resolve_targets(ProcessTarget(systemd_unit="init.scope"))


def test_refusals_are_scenario_errors_in_process(tmp_path: Path) -> None:
    """The same checks through load_scenario: every problem of a file at once, each located."""
    path = tmp_path / "all.yaml"
    path.write_text(scenario_text("".join(case.faults for case in REFUSALS[:3])))
    with pytest.raises(ScenarioError) as caught:
        load_scenario(path)
    paths = [p.path for p in caught.value.problems]
    assert paths == [
        "faults[1].params.peers[1]",
        "faults[2].params.peers[0]",
        "faults[2].params.peers[1]",  # 203.0.113.4: this file allows no network
        "faults[2].params.peers[2]",
        "faults[3].target.interface",
    ], paths
    assert all(p.line > 1 and p.column > 1 for p in caught.value.problems)
    assert caught.value.exit_code == 2


def test_the_tripwire_alone_is_refused_by_the_preflight(tmp_path: Path) -> None:
    """The safety net of the refusal test: its tripwire fault can never be applied."""
    path = tmp_path / "tripwire.yaml"
    path.write_text(scenario_text(""))
    with pytest.raises(ConfigError, match="fault 'tripwire'"):
        preflight.check(load_scenario(path))


def test_allowed_hosts_count_as_single_addresses_only(tmp_path: Path) -> None:
    """A network written in target.allowed_hosts allows no peer: networks go in safety.allowed_networks."""
    path = tmp_path / "wide.yaml"
    cut = "  - {name: cut, kind: network.partition, at: 5s, duration: 5s, params: {peers: [10.1.2.3]}}\n"
    path.write_text(scenario_text(cut, hosts="127.0.0.1, 10.0.0.0/8"))
    with pytest.raises(ScenarioError) as caught:
        load_scenario(path)
    [problem] = caught.value.problems
    assert problem.path == "faults[1].params.peers[0]"
    assert problem.message == f"10.1.2.3/32 is outside safety.allowed_networks (none given) {NOT_LOAD}"
