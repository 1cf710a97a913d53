"""heal_time: how long the system takes to be whole again, measured from its side (issue 18).

Against real parts only:

* the Kubernetes API double's controllers (``tests/k8s_api.py``), read through the official
  client: a deleted pod of a ReplicaSet comes back with a new UID and name, Pending, and is Ready
  ``ready_delay`` seconds later; a Deployment's status follows its pods; a scale to 0 and back
  recreates them with the delay;
* the run's :class:`~harness.run.heal.HealWatch` polling that double and a real HTTP server;
* ``harness run`` against the demo shop (its supervisor restarts a killed service after
  ``RESTART_DELAY``) and the double: the heal_time measured after a ``process.kill`` (default
  condition: its pattern matches again) equals the restart delay, after a
  ``kubernetes.pod_kill`` (default: as many Ready pods as before) the double's delay, each
  within 1 s; a run whose heal SLOs hold exits 0, one whose heal is too slow or never comes
  exits 1, as summary.json, JUnit and InfluxDB show it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from junitparser import Failure, JUnitXml

from harness.chaos import kube_health
from harness.chaos.families.kubernetes import api as kube
from harness.chaos.families.kubernetes.params import KubernetesPodKillFault, KubernetesScaleFault
from harness.demo.control import DemoInfo, down, up
from harness.run.heal import HealWatch
from harness.run.recorder import Recorder
from harness.scenario import load_scenario
from tests.influx_fixtures import InfluxServer, free_port
from tests.k8s_api import Cluster, FakeApiServer

ROOT = Path(__file__).resolve().parents[1]
CONTEXT = "kind-chaos"
OPT_IN = {kube.OPT_IN_LABEL: kube.OPT_IN_VALUE}
READY_DELAY = 1.5  # the double's: a replacement pod is Ready this long after it is created
BASE_PORT = 19960  # the demo's ports; its payments subnet 10.214.210.0/24 is this module's own
RESTART_DELAY = 2.0  # the demo supervisor's: a killed service is started again this long after it died


@pytest.fixture
def double() -> Iterator[FakeApiServer]:
    cluster = Cluster()
    cluster.add_namespace("shop", OPT_IN)
    cluster.add_deployment("shop", "payments", 3, ready_delay=READY_DELAY)
    server = FakeApiServer(cluster)
    yield server
    server.close()


@pytest.fixture
def api(double: FakeApiServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> kube.KubeApi:
    monkeypatch.setenv("KUBECONFIG", str(double.write_kubeconfig(tmp_path / "kubeconfig", [CONTEXT], CONTEXT)))
    return kube.connect([CONTEXT])


def pods_ready(api: kube.KubeApi, namespace: str, selector: str) -> tuple[int, int]:
    return kube_health.pods_ready(api, namespace, selector, "test")


def replicas_available(api: kube.KubeApi, namespace: str, deployment: str) -> tuple[int, int]:
    return kube_health.replicas_available(api, namespace, deployment, "test")


def _pods(api: kube.KubeApi) -> dict[str, Any]:
    pods: list[Any] = api.core.list_namespaced_pod("shop", label_selector="app=payments").items
    return {p.metadata.name: p for p in pods}


def _ready(pod: Any) -> bool:
    return any(c.type == "Ready" and c.status == "True" for c in pod.status.conditions)


def _pod_kill(mode: str = "one") -> KubernetesPodKillFault:
    return KubernetesPodKillFault.model_validate(
        {
            "name": "kill",
            "kind": "kubernetes.pod_kill",
            "at": 0,
            "duration": 1,
            "target": {"namespace": "shop", "selector": "app=payments"},
            "params": {"mode": mode},
        }
    )


def _wait(check: Any, timeout: float) -> float:
    """Seconds until ``check()`` is true (polled every 20 ms); fails after ``timeout``."""
    began = time.monotonic()
    while not check():
        assert time.monotonic() - began < timeout, "timed out"
        time.sleep(0.02)
    return time.monotonic() - began


# ---------------------------------------------------------------- the double's controllers


def test_a_deleted_pod_of_a_replicaset_comes_back_pending_then_ready_after_the_delay(api: kube.KubeApi) -> None:
    before = _pods(api)
    assert len(before) == 3 and all(_ready(p) for p in before.values())
    owner = {ref.name for p in before.values() for ref in p.metadata.owner_references}
    assert len(owner) == 1 and owner.pop().startswith("payments-")
    record = kube.inject(_pod_kill(), api)
    [killed] = record.deleted
    deleted_at = time.monotonic()
    after = _pods(api)
    assert killed not in after and len(after) == 3
    [new] = set(after) - set(before)
    replacement = after[new]
    assert new.startswith(before[killed].metadata.owner_references[0].name + "-") and len(new.split("-")[-1]) == 5
    assert replacement.metadata.uid not in {p.metadata.uid for p in before.values()}
    assert replacement.status.phase == "Pending" and not _ready(replacement)
    assert pods_ready(api, "shop", "app=payments") == (2, 3)
    assert replicas_available(api, "shop", "payments") == (3, 2)
    _wait(lambda: pods_ready(api, "shop", "app=payments") == (3, 3), timeout=5)
    took = time.monotonic() - deleted_at
    assert READY_DELAY - 0.1 <= took <= READY_DELAY + 0.5
    assert _pods(api)[new].status.phase == "Running"
    assert replicas_available(api, "shop", "payments") == (3, 3)


def test_a_scale_to_zero_and_back_recreates_the_pods_with_the_delay(api: kube.KubeApi) -> None:
    fault = KubernetesScaleFault.model_validate(
        {
            "name": "zero",
            "kind": "kubernetes.scale",
            "at": 0,
            "duration": 1,
            "target": {"namespace": "shop", "deployment": "payments"},
        }
    )
    before = set(_pods(api))
    record = kube.inject(fault, api)
    assert _pods(api) == {} and replicas_available(api, "shop", "payments") == (0, 0)
    kube.revert(record, api)
    back = _pods(api)
    assert len(back) == 3 and not set(back) & before and not any(_ready(p) for p in back.values())
    assert replicas_available(api, "shop", "payments") == (3, 0)
    took = _wait(lambda: replicas_available(api, "shop", "payments") == (3, 3), timeout=5)
    assert took <= READY_DELAY + 0.5


# ---------------------------------------------------------------- the heal: key, validated at the edge

BAD_HEALS = """\
name: heal-errors
target: {base_url: 'http://127.0.0.1:8700'}
load: {locustfile: locust.py, user_classes: [{class: U}], stages: [{duration: 20s, users: 1}]}
faults:
  - {name: kill, kind: process.kill, at: 1s, duration: 1s, target: {pid_file: /tmp/p.pid},
     heal: {url: 'http://10.9.9.9/health'}}
  - {name: both, kind: process.pause, at: 1s, duration: 1s, target: {pid_file: /tmp/p.pid},
     heal: {url: 'http://127.0.0.1:1/health', pattern: x}}
  - {name: pause, kind: process.pause, at: 1s, duration: 1s, target: {pid_file: /tmp/p.pid}}
  - {name: named, kind: process.pause, at: 1s, duration: 1s, target: {pid_file: /tmp/p.pid},
     heal: {url: 'http://payments.local/health'}}
slos:
  - {name: a, objective: heal_time < 5s, window: 'after:pause'}
  - {name: b, objective: heal_time < 5s, window: 'after:kill', endpoint: /x}
  - {name: c, objective: heal_time < 5s, window: 'during:kill'}
"""


def test_every_heal_problem_is_located_at_once_and_nothing_starts(tmp_path: Path) -> None:
    (tmp_path / "locust.py").write_text(LOCUSTFILE)
    path = tmp_path / "s.yaml"
    path.write_text(BAD_HEALS)
    env = {**os.environ, "HARNESS_RUNS_DIR": str(tmp_path / "runs")}
    done = subprocess.run(
        [sys.executable, "-m", "harness.cli", "run", str(path)], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 2, done.stdout + done.stderr
    lines = [line.removeprefix(f"{path}:") for line in done.stderr.splitlines() if line.startswith(str(path))]
    assert lines == [
        "6:13: faults[0].heal.url: 10.9.9.9 is outside safety.allowed_networks (none given) and is not a load host "
        "(127.0.0.1)",
        "8:6: faults[1].heal: give exactly one of url, pattern, pods or deployment (given: url, pattern)",
        "11:13: faults[3].heal.url: write the host of 'http://payments.local/health' as an IP address (names are "
        "not resolved)",
        "13:15: slos[0].objective: heal_time needs a heal condition on fault 'pause': give it heal: {url: ...}, "
        "{pattern: ...}, {pods: ...} or {deployment: ...} (process.pause derives none from its target)",
        "14:64: slos[1].endpoint: heal_time is measured from the system's side, not per endpoint",
        "15:42: slos[2].window: heal_time is measured from a fault's end (a kill: from the kill): use window "
        "after:FAULT",
    ], done.stderr
    assert "6 problems found; nothing was started." in done.stderr
    assert not (tmp_path / "runs").exists()


# ---------------------------------------------------------------- the run's heal watch


LOCUSTFILE = "from locust import HttpUser, task\n\n\nclass U(HttpUser):\n    @task\n    def t(self):\n        pass\n"


class _Points:
    def __init__(self) -> None:
        self.points: list[Any] = []

    def write(self, points: list[Any]) -> None:
        self.points.extend(points)


def _scenario(tmp_path: Path, faults: str, slos: str = "") -> Any:
    (tmp_path / "locust.py").write_text(
        "from locust import HttpUser, task\n\nclass U(HttpUser):\n    @task\n    def t(self):\n        pass\n"
    )
    path = tmp_path / "s.yaml"
    path.write_text(
        "name: heal\ntarget: {base_url: 'http://127.0.0.1:8700'}\n"
        "load: {locustfile: locust.py, user_classes: [{class: U}], stages: [{duration: 20s, users: 1}]}\n"
        f"faults:\n{faults}slos:\n{slos or '  []'}\nsafety: {{allowed_contexts: [{CONTEXT}]}}\n"
    )
    return load_scenario(path)


def test_the_heal_watch_measures_a_pod_kill_until_as_many_pods_are_ready_as_before(
    api: kube.KubeApi, tmp_path: Path
) -> None:
    scenario = _scenario(
        tmp_path,
        "  - {name: kill, kind: kubernetes.pod_kill, at: 1s, duration: 1s,\n"
        "     target: {namespace: shop, selector: app=payments}, params: {mode: all}}\n",
        "  - {name: heals, objective: heal_time < 5s, window: 'after:kill'}\n",
    )
    recorder = Recorder("r1", _Points())
    watch = HealWatch(scenario, recorder, agent_of=lambda name: None)
    watch.start()  # reads that 3 pods are Ready now
    kube.inject(scenario.faults[0], api)
    watch.fault_started("kill", time.time())
    watch.fault_ended("kill", time.time() + 1)  # a kill is watched from the kill, not from its window's end
    _wait(lambda: any(e.kind == "heal" for e in recorder.events), timeout=5)
    heals = watch.stop()
    heal = heals["kill"]
    assert heal.from_start and heal.healed is not None
    assert heal.seconds == pytest.approx(READY_DELAY, abs=0.3)
    assert heal.polls >= READY_DELAY / 0.15 - 1
    assert heal.check == "pods 'app=payments' in shop Ready (as many as at the start of the run)"
    [event] = [e for e in recorder.events if e.kind == "heal"]
    assert event.text.startswith("fault kill healed after 1.") and event.time == heal.healed


def test_the_heal_watch_measures_a_scale_from_its_end_until_its_replicas_are_available(
    api: kube.KubeApi, tmp_path: Path
) -> None:
    scenario = _scenario(
        tmp_path,
        "  - {name: zero, kind: kubernetes.scale, at: 1s, duration: 1s,\n"
        "     target: {namespace: shop, deployment: payments}}\n",
        "  - {name: back, objective: heal_time < 5s, window: 'after:zero'}\n",
    )
    recorder = Recorder("r3", _Points())
    watch = HealWatch(scenario, recorder, agent_of=lambda name: None)
    watch.start()
    record = kube.inject(scenario.faults[0], api)
    watch.fault_started("zero", time.time())  # not a kill: watched from its end only
    time.sleep(0.5)
    kube.revert(record, api)
    watch.fault_ended("zero", time.time())
    _wait(lambda: any(e.kind == "heal" for e in recorder.events), timeout=5)
    heal = watch.stop()["zero"]
    assert not heal.from_start and heal.seconds == pytest.approx(READY_DELAY, abs=0.3)
    assert heal.check == "deployment shop/payments availableReplicas back at spec.replicas"


class _Health(BaseHTTPRequestHandler):
    healthy_from = 0.0

    def do_GET(self) -> None:
        self.send_response(200 if time.time() >= type(self).healthy_from else 503)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        pass


def test_the_heal_watch_measures_a_url_from_the_fault_end_and_says_when_one_never_answers(tmp_path: Path) -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Health)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    closed = free_port()
    try:
        scenario = _scenario(
            tmp_path,
            "  - {name: slow, kind: process.pause, at: 1s, duration: 1s, target: {pattern: nothing-here},\n"
            f"     heal: {{url: 'http://127.0.0.1:{server.server_address[1]}/health'}}}}\n"
            "  - {name: gone, kind: process.pause, at: 1s, duration: 1s, target: {pattern: nothing-here},\n"
            f"     heal: {{url: 'http://127.0.0.1:{closed}/health'}}}}\n",
        )
        watch = HealWatch(scenario, Recorder("r2", _Points()), agent_of=lambda name: None)
        watch.start()
        ended = time.time()
        _Health.healthy_from = ended + 0.8  # 503 until then
        watch.fault_started("slow", ended - 1)  # not a kill: nothing is watched from the injection
        watch.fault_ended("slow", ended)
        watch.fault_ended("gone", ended)
        time.sleep(1.5)
        heals = watch.stop()
    finally:
        server.shutdown()
        server.server_close()
    slow, gone = heals["slow"], heals["gone"]
    assert not slow.from_start and slow.began == ended
    assert slow.seconds == pytest.approx(0.8, abs=0.2)
    assert gone.healed is None and gone.seconds is None and gone.watched == pytest.approx(1.5, abs=0.3)
    assert "Connection refused" in gone.last_error


# ---------------------------------------------------------------- harness run: as a user sees it

slow = pytest.mark.slow


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DemoInfo]:
    directory = tmp_path_factory.mktemp("demo")
    try:
        yield up(directory=directory, base_port=BASE_PORT, restart_delay=RESTART_DELAY)
    finally:
        down(directory=directory)


@pytest.fixture(scope="module")
def cluster_double(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[FakeApiServer, Path]]:
    cluster = Cluster()
    cluster.add_namespace("shop", OPT_IN)
    cluster.add_deployment("shop", "payments", 3, ready_delay=READY_DELAY)
    server = FakeApiServer(cluster)
    kubeconfig = server.write_kubeconfig(tmp_path_factory.mktemp("kube") / "kubeconfig", [CONTEXT], CONTEXT)
    yield server, kubeconfig
    server.close()


def _run_scenario(
    tmp_path: Path, demo: DemoInfo, kubeconfig: Path, influxd: InfluxServer, faults: str, slos: str
) -> tuple[subprocess.CompletedProcess[str], dict[str, Any], dict[str, Any]]:
    path = tmp_path / "heal.yaml"
    path.write_text(
        f"name: heal\ntarget: {{base_url: '{demo.base_url}'}}\n"
        f"load:\n  locustfile: {ROOT / 'locustfiles' / 'shop.py'}\n  user_classes: [{{class: Shopper}}]\n"
        "  stages: [{name: steady, duration: 9s, users: 5, spawn_rate: 5}]\n"
        f"faults:\n{faults}slos:\n{slos}safety: {{allowed_contexts: [{CONTEXT}]}}\n"
    )
    runs = tmp_path / "runs"
    env = {**os.environ, "HARNESS_RUNS_DIR": str(runs), "KUBECONFIG": str(kubeconfig)}
    command = [sys.executable, "-m", "harness.cli", "run", str(path), "--run-id", "heal", "--processes", "1"]
    command += ["--results-url", influxd.url, "--junit", str(tmp_path / "junit.xml")]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
    summary = json.loads((runs / "heal" / "summary.json").read_text())
    junit = {case.name: case for suite in JUnitXml.fromfile(str(tmp_path / "junit.xml")) for case in suite}
    return done, summary, junit


def _kill(name: str, service: str, at: str = "2s", heal: str = "") -> str:
    pattern = f"harness\\.demo\\.services {service} --port {BASE_PORT + {'catalog': 1, 'payments': 3}[service]}\\b"
    return f"  - {{name: {name}, kind: process.kill, at: {at}, duration: 1s, target: {{pattern: '{pattern}'}}{heal}}}\n"


@slow
def test_heal_slos_hold_when_the_system_heals_in_time(
    tmp_path: Path, demo: DemoInfo, cluster_double: tuple[FakeApiServer, Path], influxd: InfluxServer
) -> None:
    _, kubeconfig = cluster_double
    catalog = f"http://127.0.0.1:{BASE_PORT + 1}/health"
    faults = (
        _kill("kill-payments", "payments")  # heals, by default, when its pattern matches again
        + _kill("kill-catalog", "catalog", heal=f", heal: {{url: '{catalog}'}}")
        + "  - {name: kill-pod, kind: kubernetes.pod_kill, at: 2s, duration: 1s,\n"
        "     target: {namespace: shop, selector: app=payments}}\n"  # heals when 3 pods are Ready again
    )
    slos = (
        "  - {name: payments-heals, objective: heal_time < 5s, window: 'after:kill-payments'}\n"
        "  - {name: catalog-heals, objective: heal_time < 6s, window: 'after:kill-catalog'}\n"
        "  - {name: pod-heals, objective: heal_time < 5s, window: 'after:kill-pod'}\n"
    )
    done, summary, junit = _run_scenario(tmp_path, demo, kubeconfig, influxd, faults, slos)
    assert done.returncode == 0, done.stdout + done.stderr
    heals = {h["fault"]: h for h in summary["heals"]}
    print({name: heal["heal_time_s"] for name, heal in heals.items()})
    assert heals["kill-payments"]["since"] == "kill"
    assert heals["kill-payments"]["heal_time_s"] == pytest.approx(RESTART_DELAY, abs=1.0)
    assert heals["kill-pod"]["heal_time_s"] == pytest.approx(READY_DELAY, abs=1.0)
    # The URL answers once the restarted service has started up: after the delay, a little later.
    assert RESTART_DELAY <= heals["kill-catalog"]["heal_time_s"] <= RESTART_DELAY + 3
    slo = {s["name"]: s for s in summary["slos"]}
    for name, fault in (("payments-heals", "kill-payments"), ("pod-heals", "kill-pod")):
        assert slo[name]["status"] == "met" and slo[name]["measured"] == pytest.approx(
            heals[fault]["heal_time_s"], abs=1e-3
        )
    assert all(not case.result for name, case in junit.items() if name.endswith("-heals"))
    assert "fault kill-pod healed after 1." in done.stdout
    rows = influxd.query(
        "SELECT \"text\", \"name\" FROM harness_events WHERE run_id = 'heal' AND kind = 'heal'", "harness"
    )
    assert sorted(r["name"] for r in rows) == ["kill-catalog", "kill-payments", "kill-pod"]


@slow
def test_a_heal_too_slow_fails_and_one_that_never_comes_fails_saying_so(
    tmp_path: Path, demo: DemoInfo, cluster_double: tuple[FakeApiServer, Path], influxd: InfluxServer
) -> None:
    _, kubeconfig = cluster_double
    nowhere = f"http://127.0.0.1:{free_port()}/health"
    faults = _kill("kill-payments", "payments") + (
        "  - {name: pause-catalog, kind: process.pause, at: 2s, duration: 2s,\n"
        f"     target: {{pattern: 'harness\\.demo\\.services catalog --port {BASE_PORT + 1}\\b'}},\n"
        f"     heal: {{url: '{nowhere}'}}}}\n"
    )
    slos = (
        "  - {name: payments-heals-fast, objective: heal_time < 1s, window: 'after:kill-payments'}\n"
        "  - {name: catalog-heals, objective: heal_time < 5s, window: 'after:pause-catalog'}\n"
    )
    done, summary, junit = _run_scenario(tmp_path, demo, kubeconfig, influxd, faults, slos)
    assert done.returncode == 1, done.stdout + done.stderr
    assert summary["verdict"] == "failed" and summary["exit_code"] == 1
    slo = {s["name"]: s for s in summary["slos"]}
    fast, never = slo["payments-heals-fast"], slo["catalog-heals"]
    assert fast["status"] == "breached" and fast["measured"] == pytest.approx(RESTART_DELAY, abs=1.0)
    assert fast["message"].startswith("heal_time ") and fast["message"].endswith("breached < 1s")
    assert never["status"] == "never_healed" and never["measured"] is None
    assert never["message"].startswith(f"never healed within the run after pause-catalog: {nowhere} answers 2xx")
    [heal] = [h for h in summary["heals"] if h["fault"] == "pause-catalog"]
    assert heal["since"] == "end" and heal["healed"] is None and "Connection refused" in heal["last_error"]
    [failure] = [r for r in junit["catalog-heals"].result if isinstance(r, Failure)]
    assert failure.type == "NeverHealed" and "measured never" in failure.message
    [failure] = [r for r in junit["payments-heals-fast"].result if isinstance(r, Failure)]
    assert failure.type == "SloFailed"
    assert "fault pause-catalog did not heal within the run" in done.stdout


def test_summary_heals_round_trip_and_the_report_shows_them(tmp_path: Path) -> None:
    from harness.judge.summary import HealEntry, RunSummary
    from harness.review import report_tables
    from harness.review.report_data import from_run_dir

    heals = [
        HealEntry("kill", "a process matching 'x' runs", "kill", 10.0, 12.1, 2.1, 15, ""),
        HealEntry("gone", "http://127.0.0.1:9/health answers 2xx", "end", 20.0, None, None, 40, "Connection refused"),
    ]
    written = RunSummary(run_id="r", heals=heals).to_json()
    assert RunSummary.from_json(written).heals == heals
    assert "heals" not in RunSummary(run_id="r").to_json()  # no heal watched: the key is absent, as before
    (tmp_path / "summary.json").write_text(json.dumps(written))
    data = from_run_dir(tmp_path)  # the report's rows as harness report reads them from the run's directory
    assert [(r.fault, r.since, r.seconds, r.last_error) for r in data.heals] == [
        ("kill", "kill", 2.1, ""),
        ("gone", "end", None, "Connection refused"),
    ]
    html = report_tables.heals(data)
    assert "<td>kill</td><td>the kill</td>" in html and "<td>2.10s</td>" in html
    assert "never healed within the run</span> (last poll: Connection refused)" in html
