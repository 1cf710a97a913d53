"""Node selectors: which Ray node a fault's agent and the generators go to, and the refusals.

Pure: the cluster is a list of :class:`harness.run.nodes.Node` records shaped like ``ray.nodes()``
entries; the orchestrator's use of them against real Ray nodes is in test_multihost_run.py.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.errors import ConfigError, ScenarioError
from harness.run.nodes import Node, generator_nodes, matches, place_faults
from harness.scenario import NodeSelector, Scenario, load_scenario

ROOT = Path(__file__).resolve().parents[1]

DRIVER = Node("d" * 56, "10.0.0.1", "head", {"harness.io/host": "head", "harness.io/role": "head"}, {"CPU": 0})
A = Node("a" * 56, "10.0.0.11", "vm-a", {"harness.io/host": "a", "harness.io/role": "generator"}, {"CPU": 4})
B = Node("b" * 56, "10.0.0.12", "vm-b", {"harness.io/host": "b", "harness.io/role": "generator"}, {"CPU": 4})
C = Node("c" * 56, "10.0.0.13", "vm-c", {"harness.io/host": "c", "harness.io/role": "db"}, {"CPU": 2, "db-1": 1})
NODES = [DRIVER, A, B, C]


def _scenario(tmp_path: Path, faults: str, load_node: str = "") -> Scenario:
    text = f"""
name: placed
target: {{base_url: "http://127.0.0.1:8700"}}
load:
  locustfile: {ROOT / "locustfiles" / "shop.py"}
  user_classes: [{{class: Shopper}}]
  stages: [{{duration: 30s, users: 10, spawn_rate: 10}}]
{load_node}
faults:
{faults}
safety: {{allowed_networks: [10.0.0.0/24]}}
"""
    path = tmp_path / "placed.yaml"
    path.write_text(text)
    return load_scenario(path)


def test_labels_must_all_match_and_resources_must_be_declared() -> None:
    assert matches(NodeSelector(labels={"harness.io/host": "a"}), A)
    assert not matches(NodeSelector(labels={"harness.io/host": "a", "harness.io/role": "db"}), A)
    assert matches(NodeSelector(resource="db-1"), C)
    assert not matches(NodeSelector(resource="db-1"), A)


def test_each_fault_goes_to_the_one_node_it_names_and_the_rest_to_the_driver(tmp_path: Path) -> None:
    scenario = _scenario(
        tmp_path,
        """
  - {name: cut-b, kind: network.partition, at: 1s, duration: 5s, node: {labels: {harness.io/host: b}},
     params: {peers: [10.0.0.13/32]}}
  - {name: db-pause, kind: process.pause, at: 2s, duration: 5s, node: {resource: db-1}, target: {pattern: postgres}}
  - {name: local, kind: network.partition, at: 3s, duration: 5s, params: {peers: [10.0.0.12/32]}}
""",
    )
    placement = place_faults(scenario, NODES, DRIVER)
    assert placement.node_of("cut-b") is B
    assert placement.node_of("db-pause") is C
    assert placement.node_of("local") is DRIVER
    assert [n.node_id for n in placement.nodes()] == [B.node_id, C.node_id, DRIVER.node_id]
    assert B.name == "b" and Node("x" * 56, "10.9.9.9").name == "10.9.9.9"


def test_a_fault_matching_no_node_or_two_is_refused_naming_the_fault_and_the_nodes(tmp_path: Path) -> None:
    scenario = _scenario(
        tmp_path,
        """
  - {name: nowhere, kind: network.partition, at: 1s, duration: 5s, node: {labels: {harness.io/host: z}},
     params: {peers: [10.0.0.13/32]}}
  - {name: twice, kind: network.partition, at: 1s, duration: 5s, node: {labels: {harness.io/role: generator}},
     params: {peers: [10.0.0.13/32]}}
""",
    )
    with pytest.raises(ConfigError) as caught:
        place_faults(scenario, NODES, DRIVER)
    text = str(caught.value)
    assert "faults[0].node (nowhere): no live Ray node has labels harness.io/host=z" in text
    assert "faults[1].node (twice): 2 Ray nodes have labels harness.io/role=generator" in text
    assert "vm-a 10.0.0.11" in text and "a fault acts on one host" in text
    assert caught.value.exit_code == 2


def test_generators_use_the_selected_nodes_or_the_run_is_refused(tmp_path: Path) -> None:
    fault = "  []"
    chosen = _scenario(tmp_path, fault, "  node: {labels: {harness.io/role: generator}}")
    assert generator_nodes(chosen, NODES) == [A, B]
    assert generator_nodes(_scenario(tmp_path, fault), NODES) == NODES
    with pytest.raises(ConfigError, match=r"load.node: no live Ray node has resource gpu-box"):
        generator_nodes(_scenario(tmp_path, fault, "  node: {resource: gpu-box}"), NODES)


@pytest.mark.parametrize(
    ("node", "where", "message"),
    [
        ("{}", "faults[0].node", "give exactly one of labels or resource"),
        ("{labels: {a: b}, resource: x}", "faults[0].node", "give exactly one of labels or resource"),
        ("{labels: {'bad key': x}}", "faults[0].node.labels.bad key", "'bad key' is not a label key"),
        ("{labels: {host: 'two words'}}", "faults[0].node.labels.host", "'two words' is not a label value"),
        ("{zone: a}", "faults[0].node.zone", "unknown key 'zone'; allowed keys: labels, resource"),
    ],
)
def test_bad_selectors_are_located(tmp_path: Path, node: str, where: str, message: str) -> None:
    with pytest.raises(ScenarioError) as caught:
        _scenario(
            tmp_path,
            f"  - {{name: f, kind: network.partition, at: 1s, duration: 5s, node: {node}, "
            "params: {peers: [10.0.0.13/32]}}",
        )
    text = str(caught.value)
    assert "placed.yaml:" in text and where in text and message in text, text


def test_a_kubernetes_fault_takes_no_node(tmp_path: Path) -> None:
    with pytest.raises(ScenarioError, match=r"faults\[0\].node: Kubernetes faults act through the API server"):
        _scenario(
            tmp_path,
            "  - {name: k, kind: kubernetes.pod_kill, at: 1s, duration: 5s, node: {labels: {a: b}}, "
            "target: {namespace: shop, selector: app=payments}}",
        )


def test_a_pod_fault_is_placed_on_every_node_holding_a_chosen_pod(tmp_path: Path) -> None:
    from harness.chaos.kubelet import PodRef
    from harness.run.nodes import plan_rows

    path = _scenario(tmp_path, "  []").source  # the same file, with a pod fault and a kube context instead
    text = (
        Path(path)
        .read_text()
        .replace(
            "faults:\n  []",
            "faults:\n  - {name: cut, kind: network.partition, at: 5s, duration: 5s, params: {peers: [10.0.0.0/24]},\n"
            "     pods: {namespace: shop, selector: app=payments, mode: all}}",
        )
    )
    Path(path).write_text(text.replace("safety: {", "safety: {allowed_contexts: [k], "))
    scenario = load_scenario(Path(path))
    pods = {
        "cut": [PodRef("shop", "p-0", "u0", "a"), PodRef("shop", "p-1", "u1", "b"), PodRef("shop", "p-2", "u2", "a")]
    }
    placement = place_faults(scenario, NODES, DRIVER, pods)
    sites = {node.name: [p.name for p in on_node] for node, on_node in placement.sites("cut")}
    assert sites == {"a": ["p-0", "p-2"], "b": ["p-1"]}
    assert {n.name for n in placement.nodes()} == {"a", "b"}  # the driver's node needs no agent here
    rows = dict(plan_rows(scenario, NODES, DRIVER, pods))
    assert rows["chaos agent for cut"] == (
        f"a (10.0.0.11, node {'a' * 8}) for pods p-0, p-2; b (10.0.0.12, node {'b' * 8}) for pods p-1"
    )
    lost = {"cut": [PodRef("shop", "p-9", "u9", "gone-node")]}
    with pytest.raises(ConfigError, match=r"pod shop/p-9 is on Kubernetes node gone-node, which has no Ray node"):
        place_faults(scenario, NODES, DRIVER, lost)
