"""Kubernetes faults through the real ``kubernetes`` client against a local API server double.

No cluster can run here (TESTBED.md), so ``tests/k8s_api.py`` serves the REST subset the
fault code uses on 127.0.0.1 and records every request; the tests point a real kubeconfig
(via ``$KUBECONFIG``) at it and call :mod:`harness.chaos.families.kubernetes.api` as the agent will.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from harness.chaos.families.kubernetes import api as kube
from harness.chaos.families.kubernetes.params import KubernetesPodKillFault, KubernetesScaleFault, PodKillParams
from harness.errors import ConfigError, FaultError
from tests.k8s_api import PATCH_TYPES, Cluster, FakeApiServer, selector_matches

ALLOWED = "kind-chaos"
OPT_IN = {kube.OPT_IN_LABEL: kube.OPT_IN_VALUE}
PAYMENTS = [f"payments-7d9f-{c}" for c in "abcde"]


@pytest.fixture
def server() -> Iterator[FakeApiServer]:
    cluster = Cluster()
    cluster.add_namespace("shop", OPT_IN)
    cluster.add_namespace("prod", {"team": "payments"})  # no opt-in label
    cluster.add_namespace("half", {kube.OPT_IN_LABEL: "disabled"})
    for name in PAYMENTS:
        cluster.add_pod("shop", name, {"app": "payments", "tier": "api"})
    cluster.add_pod("shop", "payments-canary-x", {"app": "payments", "tier": "api", "canary": "true"})
    cluster.add_pod("shop", "payments-worker-y", {"app": "payments", "tier": "worker"})
    cluster.add_pod("shop", "catalog-1", {"app": "catalog", "tier": "api"})
    cluster.add_pod("prod", "payments-prod-1", {"app": "payments"})
    cluster.add_pod("half", "payments-half-1", {"app": "payments"})
    cluster.replicas[("shop", "payments")] = 3
    cluster.replicas[("prod", "payments")] = 4
    double = FakeApiServer(cluster)
    yield double
    double.close()


@pytest.fixture
def kubeconfig(server: FakeApiServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = server.write_kubeconfig(tmp_path / "kubeconfig", [ALLOWED, "prod-eu"], current=ALLOWED)
    monkeypatch.setenv("KUBECONFIG", str(path))
    return path


@pytest.fixture
def api(kubeconfig: Path) -> kube.KubeApi:
    return kube.connect([ALLOWED])


def pod_kill(selector: str = "app=payments,tier in (api),!canary", namespace: str = "shop", **params: Any):
    return KubernetesPodKillFault.model_validate(
        {
            "name": "kill-payments",
            "kind": "kubernetes.pod_kill",
            "at": "10s",
            "duration": "5s",
            "target": {"namespace": namespace, "selector": selector},
            "params": params,
        }
    )


def scale(namespace: str = "shop", deployment: str = "payments") -> KubernetesScaleFault:
    return KubernetesScaleFault.model_validate(
        {
            "name": "scale-payments",
            "kind": "kubernetes.scale",
            "at": "10s",
            "duration": "20s",
            "target": {"namespace": namespace, "deployment": deployment},
        }
    )


def deleted_names(server: FakeApiServer) -> list[str]:
    return [r.path.rsplit("/", 1)[1] for r in server.deletes()]


# ---------------------------------------------------------------- pod kill: which pods


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"mode": "one"}, 1),
        ({"mode": "all"}, 5),
        ({"mode": "fixed", "count": 2}, 2),
        ({"mode": "fixed", "count": 9}, 5),  # more than match: all of them
        ({"mode": "percent", "percent": 50}, 3),  # 2.5 rounds up
        ({"mode": "percent", "percent": 40}, 2),  # exactly 2.0: no rounding up past it
        ({"mode": "percent", "percent": 1}, 1),  # any share above 0 kills at least one
        ({"mode": "percent", "percent": 100}, 5),
    ],
    ids=["one", "all", "fixed-2", "fixed-9-of-5", "percent-50", "percent-40", "percent-1", "percent-100"],
)
def test_exactly_the_selected_pods_are_deleted_with_grace_period_zero(
    server: FakeApiServer, api: kube.KubeApi, params: dict[str, Any], expected: int
) -> None:
    fault = pod_kill(**params)
    planned = kube.resolve(fault, api)
    assert planned.matching == 5 and len(planned.pods) == expected
    assert server.mutating() == []

    record = kube.inject(fault, api)

    chosen = sorted(p.name for p in planned.pods)
    assert sorted(deleted_names(server)) == chosen == sorted(record.deleted)
    assert set(chosen) <= set(PAYMENTS)  # never the canary, the worker, catalog or another namespace
    for request in server.deletes():
        assert request.body["gracePeriodSeconds"] == 0
        assert request.query.get("gracePeriodSeconds") == ["0"]
        assert request.body["preconditions"]["uid"]
    left = set(server.cluster.pods["shop"])
    assert left == {*PAYMENTS, "payments-canary-x", "payments-worker-y", "catalog-1"} - set(chosen)
    assert set(server.cluster.pods["prod"]) == {"payments-prod-1"}
    assert [r.method for r in server.mutating()] == ["DELETE"] * expected


@pytest.mark.parametrize(
    ("selector", "expected"),
    [
        ("app=payments,tier notin (api)", {"payments-worker-y"}),
        ("app==payments,canary", {"payments-canary-x"}),
        ("tier in (api, worker),app!=payments", {"catalog-1"}),
        ("app in (payments),!canary,tier=api", set(PAYMENTS)),
    ],
)
def test_selector_forms_are_sent_as_written_and_select_exactly(
    server: FakeApiServer, api: kube.KubeApi, selector: str, expected: set[str]
) -> None:
    record = kube.inject(pod_kill(selector, mode="all"), api)
    assert set(record.deleted) == set(deleted_names(server)) == expected
    lists = [r for r in server.requests if r.method == "GET" and r.path.endswith("/pods")]
    assert lists and lists[0].query["labelSelector"] == [selector]


def test_terminating_pods_are_not_candidates(server: FakeApiServer, api: kube.KubeApi) -> None:
    server.cluster.add_pod("shop", "payments-old-z", {"app": "payments", "tier": "api"}, terminating=True)
    assert "payments-old-z" not in kube.inject(pod_kill(mode="all"), api).deleted


def test_choice_is_deterministic_given_the_seed_and_sorted() -> None:
    pods = [kube.ResolvedPod(f"p{i:02d}", f"uid-{i}") for i in range(20)]
    params = PodKillParams(mode="fixed", count=4)
    first = kube.select_pods(pods, params, "seed-a")
    assert first == kube.select_pods(list(reversed(pods)), params, "seed-a")  # input order does not matter
    assert [p.name for p in first] == sorted(p.name for p in first)
    assert {kube.select_pods(pods, params, f"seed-{i}") for i in range(10)} != {first}  # the seed does choose


@pytest.mark.parametrize("n", range(0, 12))
def test_percent_rounds_up(n: int) -> None:
    pods = [kube.ResolvedPod(f"p{i}", "") for i in range(n)]
    for percent in (1, 10, 25, 33.3, 50, 99, 100):
        got = len(kube.select_pods(pods, PodKillParams(mode="percent", percent=percent), "s"))
        assert got == min(n, -(-n * percent // 100)), (n, percent)


def test_seed_defaults_to_the_fault_name_so_plan_and_run_agree(server: FakeApiServer, api: kube.KubeApi) -> None:
    fault = pod_kill(mode="fixed", count=2)
    assert kube.resolve(fault, api).pods == kube.resolve(fault, api).pods
    expected = kube.select_pods(kube.resolve(pod_kill(mode="all"), api).pods, fault.params, fault.name)
    assert kube.resolve(fault, api).pods == expected


def test_no_matching_pod_is_a_fault_error_and_deletes_nothing(server: FakeApiServer, api: kube.KubeApi) -> None:
    with pytest.raises(FaultError, match="no running pod matches 'app=nothing' in namespace shop"):
        kube.inject(pod_kill("app=nothing"), api)
    assert server.mutating() == []


def test_pod_kill_is_idempotent_and_its_revert_sends_nothing(server: FakeApiServer, api: kube.KubeApi) -> None:
    fault = pod_kill(mode="fixed", count=2)
    record = kube.inject(fault, api)
    assert kube.inject(fault, api, previous=record) == record
    assert len(server.deletes()) == 2
    before = len(server.requests)
    kube.revert(record, api)
    kube.revert(record, api)
    assert len(server.requests) == before


# ---------------------------------------------------------------- safety: refused before any change


@pytest.mark.parametrize("namespace", ["prod", "half"])
def test_namespace_without_opt_in_label_is_refused_before_any_change(
    server: FakeApiServer, api: kube.KubeApi, namespace: str
) -> None:
    for fault in (pod_kill("app=payments", namespace=namespace, mode="all"), scale(namespace=namespace)):
        if namespace == "half" and isinstance(fault, KubernetesScaleFault):
            continue  # no deployment there; the pod kill covers the wrong-value label
        with pytest.raises(ConfigError) as refused:
            kube.inject(fault, api)
        message = str(refused.value)
        assert f"namespace '{namespace}'" in message
        assert "opt-in label harness.io/chaos=enabled" in message
        with pytest.raises(ConfigError):
            kube.resolve(fault, api)
    assert server.mutating() == []
    assert server.cluster.replicas[("prod", "payments")] == 4
    assert "payments-prod-1" in server.cluster.pods["prod"]
    # Only the Namespace itself was read: not even the pods were listed.
    assert {r.path for r in server.requests} == {f"/api/v1/namespaces/{namespace}"}


def test_context_not_allowed_is_refused_before_any_request(server: FakeApiServer, kubeconfig: Path) -> None:
    api = kube.connect([ALLOWED], context="prod-eu")
    assert api.context == "prod-eu"
    for fault in (pod_kill(mode="all"), scale()):
        with pytest.raises(ConfigError, match=r"kube context 'prod-eu' is not in safety\.allowed_contexts"):
            kube.inject(fault, api)
        with pytest.raises(ConfigError, match=r"not in safety\.allowed_contexts"):
            kube.resolve(fault, api)
    record = kube.KubeRecord("scale-payments", "kubernetes.scale", "prod-eu", "shop", "payments", 3)
    with pytest.raises(ConfigError, match=r"not in safety\.allowed_contexts"):
        kube.revert(record, api)
    assert server.requests == []


def test_current_context_comes_from_the_kubeconfig_in_the_environment(
    server: FakeApiServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = server.write_kubeconfig(tmp_path / "other", [ALLOWED, "prod-eu"], current="prod-eu")
    monkeypatch.setenv("KUBECONFIG", str(path))
    api = kube.connect([ALLOWED])
    assert api.context == "prod-eu"
    with pytest.raises(ConfigError):
        kube.inject(scale(), api)
    assert server.requests == []
    with pytest.raises(ConfigError, match="has no context 'nope'"):
        kube.connect([ALLOWED], context="nope")
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "missing"))
    with pytest.raises(ConfigError, match="missing"):
        kube.connect([ALLOWED])


def test_revert_refuses_a_context_other_than_the_one_injected_in(server: FakeApiServer, kubeconfig: Path) -> None:
    api = kube.connect([ALLOWED, "prod-eu"], context="prod-eu")
    record = kube.KubeRecord("scale-payments", "kubernetes.scale", ALLOWED, "shop", "payments", 3)
    with pytest.raises(ConfigError, match="injected in kube context 'kind-chaos', not 'prod-eu'"):
        kube.revert(record, api)
    assert server.requests == []


# ---------------------------------------------------------------- scale to zero and back


def test_scale_to_zero_and_back_restores_the_recorded_count(server: FakeApiServer, api: kube.KubeApi) -> None:
    record = kube.inject(scale(), api)
    assert record.replicas == 3
    assert server.cluster.replicas[("shop", "payments")] == 0
    [patch] = server.mutating()
    assert patch.method == "PATCH" and patch.content_type in PATCH_TYPES
    assert patch.path == "/apis/apps/v1/namespaces/shop/deployments/payments/scale"
    assert patch.body == {"spec": {"replicas": 0}}

    kube.revert(record, api)
    assert server.cluster.replicas[("shop", "payments")] == 3
    kube.revert(record, api)  # idempotent
    assert server.cluster.replicas[("shop", "payments")] == 3


def test_inject_twice_revert_once_leaves_the_original_replicas(server: FakeApiServer, api: kube.KubeApi) -> None:
    fault = scale()
    first = kube.inject(fault, api)
    second = kube.inject(fault, api, previous=first)
    assert second.replicas == 3  # not the 0 the second read saw
    assert server.cluster.replicas[("shop", "payments")] == 0
    kube.revert(second, api)
    assert server.cluster.replicas[("shop", "payments")] == 3


def test_record_round_trips_through_journal_details(api: kube.KubeApi) -> None:
    scaled = kube.inject(scale(), api)
    assert kube.KubeRecord.from_details(scaled.fault_name, scaled.kind, scaled.details()) == scaled
    killed = kube.inject(pod_kill(mode="fixed", count=2), api)
    assert kube.KubeRecord.from_details(killed.fault_name, killed.kind, killed.details()) == killed
    kube.revert(kube.KubeRecord.from_details(scaled.fault_name, scaled.kind, scaled.details()), api)


def test_missing_deployment_is_a_fault_error_and_changes_nothing(server: FakeApiServer, api: kube.KubeApi) -> None:
    with pytest.raises(FaultError, match="deployment cart not found in namespace shop"):
        kube.inject(scale(deployment="cart"), api)
    assert server.mutating() == []


# ---------------------------------------------------------------- dry run


def test_describe_and_resolve_change_nothing(server: FakeApiServer, api: kube.KubeApi) -> None:
    before = (dict(server.cluster.replicas), {ns: set(p) for ns, p in server.cluster.pods.items()})
    kill = pod_kill(mode="percent", percent=50)
    assert kube.describe(kill) == (
        "delete 50% of the pods (rounded up) matching 'app=payments,tier in (api),!canary' "
        "in namespace shop (gracePeriodSeconds=0)"
    )
    assert kube.describe(scale()) == (
        "scale deployment shop/payments to 0 replicas, back to its recorded count after 20s"
    )
    assert server.requests == []  # describe sends nothing at all
    resolved = kube.resolve(kill, api)
    assert resolved.describe().startswith("3 of 5 matching pods (context kind-chaos, namespace shop): payments-7d9f-")
    assert (
        kube.resolve(scale(), api).describe()
        == "deployment payments (context kind-chaos, namespace shop) now at 3 replicas"
    )
    assert server.mutating() == []
    assert {r.method for r in server.requests} == {"GET"}
    assert before == (dict(server.cluster.replicas), {ns: set(p) for ns, p in server.cluster.pods.items()})


def test_the_double_matches_selectors_like_the_api_server() -> None:
    labels = {"app": "payments", "tier": "api"}
    assert selector_matches("app=payments,tier in (api,web)", labels)
    assert not selector_matches("app=payments,tier notin (api)", labels)
    assert selector_matches("tier notin (db),!canary,app", labels)
    assert not selector_matches("app!=payments", labels)
    assert selector_matches("zone notin (eu)", labels)  # notin holds when the key is absent


# ---------------------------------------------------------------- on the journal: agent, recover, watchdog


def test_journaled_scale_is_recorded_before_it_acts_and_recover_restores_it(
    server: FakeApiServer, kubeconfig: Path, tmp_path: Path
) -> None:
    from harness.chaos.families import kubernetes as kube_journal
    from harness.chaos.journal import FaultState, Journal
    from harness.chaos.recover import recover

    journal = Journal("kube-run", tmp_path / "journal")
    record = kube_journal.inject(scale(), "kube-run", journal, allowed_contexts=[ALLOWED], lease_until=None)
    assert server.cluster.replicas[("shop", "payments")] == 0
    states = [r.state for r in journal.records()]
    assert states == [FaultState.INJECTING, FaultState.INJECTED]
    first = journal.records()[0]
    assert (first.details["replicas"], first.details["context"], first.details["namespace"]) == (3, ALLOWED, "shop")
    # Injecting again (the agent retried) changes nothing and keeps the recorded count.
    assert kube_journal.inject(scale(), "kube-run", journal, allowed_contexts=[ALLOWED]) == record
    assert len(server.mutating()) == 1

    # The driver died: recover (and the watchdog, which uses the same path) restores the count.
    lines = recover(tmp_path / "journal")
    assert lines == [
        "run kube-run: kubernetes.scale 'scale-payments': scaled deployment shop/payments back to 3 replicas"
    ]
    assert server.cluster.replicas[("shop", "payments")] == 3
    assert recover(tmp_path / "journal") == []


def test_journaled_scale_interrupted_mid_way_is_restored_to_the_count_recorded_first(
    server: FakeApiServer, kubeconfig: Path, tmp_path: Path
) -> None:
    from harness.chaos.families import kubernetes as kube_journal
    from harness.chaos.journal import FaultRecord, FaultState, Journal
    from harness.chaos.recover import recover

    journal = Journal("kube-run", tmp_path / "journal")
    # A crash right after the patch, before "injected" was written: the record says 3.
    journal.append(
        FaultRecord(
            run_id="kube-run",
            fault_name="scale-payments",
            kind="kubernetes.scale",
            state=FaultState.INJECTING,
            details={"context": ALLOWED, "namespace": "shop", "deployment": "payments", "replicas": 3},
        )
    )
    server.cluster.replicas[("shop", "payments")] = 0
    kube_journal.inject(scale(), "kube-run", journal, allowed_contexts=[ALLOWED])
    assert journal.latest("scale-payments").details["replicas"] == 3  # type: ignore[union-attr]
    recover(tmp_path / "journal")
    assert server.cluster.replicas[("shop", "payments")] == 3


def test_journaled_pod_kill_has_nothing_to_revert(server: FakeApiServer, kubeconfig: Path, tmp_path: Path) -> None:
    from harness.chaos.families import kubernetes as kube_journal
    from harness.chaos.journal import Journal
    from harness.chaos.recover import recover

    journal = Journal("kube-run", tmp_path / "journal")
    record = kube_journal.inject(pod_kill(mode="fixed", count=2), "kube-run", journal, allowed_contexts=[ALLOWED])
    assert sorted(str(record.details["deleted"]).split(",")) == sorted(deleted_names(server))
    assert len(server.deletes()) == 2
    assert recover(tmp_path / "journal") == ["run kube-run: kubernetes.pod_kill 'kill-payments': marked reverted"]
    assert len(server.mutating()) == 2  # recover sent nothing


def test_journaled_inject_in_a_namespace_without_opt_in_journals_nothing(
    server: FakeApiServer, kubeconfig: Path, tmp_path: Path
) -> None:
    from harness.chaos.families import kubernetes as kube_journal
    from harness.chaos.journal import Journal

    journal = Journal("kube-run", tmp_path / "journal")
    with pytest.raises(ConfigError, match=r"harness\.io/chaos"):
        kube_journal.inject(scale(namespace="prod"), "kube-run", journal, allowed_contexts=[ALLOWED])
    assert journal.records() == []
    assert server.mutating() == []


# ---------------------------------------------------------------- the CLI: plan shows, run refuses first


def _scenario_file(tmp_path: Path, namespace: str) -> Path:
    path = tmp_path / "kube.yaml"
    path.write_text(
        f"""
name: kube
target: {{base_url: "http://127.0.0.1:9"}}
load:
  locustfile: {Path(__file__).resolve().parents[1] / "locustfiles" / "shop.py"}
  user_classes: [{{class: Shopper}}]
  stages: [{{duration: 10s, users: 1}}]
faults:
  - name: scale-payments
    kind: kubernetes.scale
    at: 2s
    duration: 5s
    target: {{namespace: {namespace}, deployment: payments}}
safety: {{allowed_contexts: [{ALLOWED}]}}
"""
    )
    return path


def _cli(*args: str, kubeconfig: Path, tmp_path: Path) -> Any:
    import os
    import subprocess
    import sys

    env = {**os.environ, "KUBECONFIG": str(kubeconfig), "HARNESS_RUNS_DIR": str(tmp_path / "runs")}
    return subprocess.run(
        [sys.executable, "-m", "harness.cli", *args], env=env, capture_output=True, text=True, timeout=60
    )


def test_plan_resolves_kubernetes_targets_and_changes_nothing(
    server: FakeApiServer, kubeconfig: Path, tmp_path: Path
) -> None:
    result = _cli("plan", str(_scenario_file(tmp_path, "shop")), kubeconfig=kubeconfig, tmp_path=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    flat = " ".join(result.stdout.replace("│", " ").split())  # the plan table wraps long cells
    assert "scale deployment shop/payments to 0 replicas" in flat
    assert f"now: deployment payments (context {ALLOWED}, namespace shop) now at 3 replicas" in flat
    assert server.mutating() == []


def test_run_refuses_a_namespace_without_opt_in_before_anything_starts(
    server: FakeApiServer, kubeconfig: Path, tmp_path: Path
) -> None:
    result = _cli("run", str(_scenario_file(tmp_path, "prod")), kubeconfig=kubeconfig, tmp_path=tmp_path)
    assert result.returncode == 2, result.stdout + result.stderr
    assert "prod" in result.stderr + result.stdout and "harness.io/chaos" in result.stderr + result.stdout
    assert "Traceback" not in result.stderr + result.stdout
    assert server.mutating() == []
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())  # no run was started
