"""ray_cluster/'s launcher config, KubeRay manifest and README, judged by the libraries that will read them.

No Kubernetes API server and no VMs can run here: these files have never been applied, and
nothing below starts Ray, connects anywhere or runs a shell. What is verified instead:

* ``cluster-vms.yaml`` validates against the JSON schema shipped inside the installed Ray
  (``ray/autoscaler/ray-schema.json``) and passes Ray's own ``prepare_config`` and
  ``validate_config``, the checks ``ray up`` makes before it contacts a machine.
* Every ``ray start`` command line in both files parses with Ray's click parser for
  ``ray start`` (a misspelt option fails), with the options KubeRay generates from each
  group's ``rayStartParams`` added the way KubeRay adds them; every ``--labels`` string parses
  with ``ray._private.label_utils`` and carries the label contract of ray_cluster/README.md.
  Shell and downward-API variables that name the host are replaced by two sample host names
  in turn, so the check also proves that ``harness.io/host`` comes from the machine.
* Every object in ``raycluster.yaml`` deserialises into the kubernetes client's models and has
  no key those models lack (checked recursively against each model's ``attribute_map``, since
  the deserialiser itself drops unknown keys silently); the RayCluster's own fields are
  checked against the KubeRay v1.1 API; the head, generator and chaos groups have the
  settings the README promises; the in-cluster kubeconfig loads with the kubernetes client's
  kubeconfig reader; the Role equals the one in docs/security.md.
* Every ``harness`` command in ray_cluster/README.md names a real subcommand and real options
  (the approach of test_docs_ci.py, extended to ``kubectl exec ... -- harness``).

Not verified: what KubeRay, the kubelet, a container runtime or ``ray up`` actually do with
these files (the generated ``$KUBERAY_GEN_RAY_START_CMD``, variable expansion, hostPath and
capability behaviour, SSH and rsync).
"""

from __future__ import annotations

import json
import os
import re
import shlex
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click
import jsonschema
import kubernetes.client
import kubernetes.config
import pytest
import ray.autoscaler
import yaml
from ray._private.label_utils import parse_node_labels_string, validate_node_labels
from ray.autoscaler._private.util import prepare_config, validate_config
from ray.scripts.scripts import start as ray_start

from tests.cli_help import check_command

ROOT = Path(__file__).resolve().parents[1]
VMS = ROOT / "ray_cluster" / "cluster-vms.yaml"
KUBE = ROOT / "ray_cluster" / "raycluster.yaml"
README = ROOT / "ray_cluster" / "README.md"
SECURITY = ROOT / "docs" / "security.md"

# How each file names the machine a node runs on: replaced by a sample host name before parsing.
HOST_VARIABLES = ("$(hostname)", "${NODE_NAME}", "$NODE_NAME")
OTHER_VARIABLES = {"$RAY_HEAD_IP": "10.0.0.10"}
KUBERAY_CMD = "$KUBERAY_GEN_RAY_START_CMD"
ROLE_OF_GROUP = {"head": "head", "generators": "generator", "chaos-agents": "chaos"}
TOKEN_SECRET_KEY = "auth_token"

# RayCluster fields of KubeRay v1.1 (ray-operator/apis/ray/v1/raycluster_types.go). Fields added
# later (labels, authOptions, ...) are pruned without a word by older operators' CRDs.
KUBERAY_FIELDS = {
    "spec": {
        "headGroupSpec",
        "workerGroupSpecs",
        "rayVersion",
        "enableInTreeAutoscaling",
        "autoscalerOptions",
        "headServiceAnnotations",
        "suspend",
    },
    "headGroupSpec": {"serviceType", "headService", "enableIngress", "rayStartParams", "template"},
    "workerGroupSpecs": {
        "groupName",
        "replicas",
        "minReplicas",
        "maxReplicas",
        "numOfHosts",
        "rayStartParams",
        "template",
        "scaleStrategy",
    },
}
MODEL_OF_KIND = {
    "Namespace": "V1Namespace",
    "ServiceAccount": "V1ServiceAccount",
    "ConfigMap": "V1ConfigMap",
    "Role": "V1Role",
    "RoleBinding": "V1RoleBinding",
}
PRIMITIVES = {"str", "int", "float", "bool", "bytes", "object", "date", "datetime"}
FENCE = re.compile(r"^```(\w*)[^\n]*\n(.*?)^```", re.MULTILINE | re.DOTALL)
OPERATORS = {";", "&&", "||", "|", "&", "(", ")", ";;", "--"}
KEYWORDS = {"then", "else", "do", "if", "elif", "!", "time", "exec"}


# ---------------------------------------------------------------- reading the files


def _vms() -> dict[str, Any]:
    config = yaml.safe_load(VMS.read_text())
    assert isinstance(config, dict)
    return config


def _kube_docs() -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(KUBE.read_text()) if doc is not None]


def _raycluster() -> dict[str, Any]:
    [cluster] = [doc for doc in _kube_docs() if doc.get("kind") == "RayCluster"]
    return cluster


def _groups() -> dict[str, dict[str, Any]]:
    spec = _raycluster()["spec"]
    return {"head": spec["headGroupSpec"], **{group["groupName"]: group for group in spec["workerGroupSpecs"]}}


def _template(group: str) -> Any:
    """The group's pod template as a ``V1PodTemplateSpec`` (typed Any: assertions check the Nones)."""
    return _deserialize(_groups()[group]["template"], "V1PodTemplateSpec")


def _ray_container(group: str) -> Any:
    return _template(group).spec.containers[0]  # KubeRay's Ray container is the first one


def _deserialize(data: Any, model: str) -> Any:
    return kubernetes.client.ApiClient()._ApiClient__deserialize(data, model)  # type: ignore[attr-defined]


def _strings(node: Any) -> Iterator[str]:
    if isinstance(node, str):
        yield node
    elif isinstance(node, dict):
        for value in node.values():
            yield from _strings(value)
    elif isinstance(node, list):
        for value in node:
            yield from _strings(value)


def _tokens(line: str) -> list[str]:
    lexer = shlex.shlex(line, posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    return list(lexer)


def _substitute(token: str, host: str) -> str:
    for variable in HOST_VARIABLES:
        token = token.replace(variable, host)
    for variable, value in OTHER_VARIABLES.items():
        token = token.replace(variable, value)
    return token


# ---------------------------------------------------------------- ray start command lines


def _start_args(command: str, host: str = "host-1") -> list[str] | None:
    """The arguments given to ``ray start`` (or to KubeRay's generated one) in a shell line, or None."""
    tokens = _tokens(command)
    for i, token in enumerate(tokens):
        if token == KUBERAY_CMD:
            rest = tokens[i + 1 :]
        elif token.rsplit("/", 1)[-1] == "ray" and tokens[i + 1 : i + 2] == ["start"]:
            rest = tokens[i + 2 :]
        else:
            continue
        args = []
        for arg in rest:
            if arg in OPERATORS:
                break
            args.append(_substitute(arg, host))
        return args
    return None


def _kuberay_args(params: dict[str, str], head: bool) -> list[str]:
    """``rayStartParams`` as KubeRay turns them into flags: ``--key=value``, ``--key`` for "true"."""
    flags = ["--head"] if head else []
    for key, value in sorted(params.items()):
        if value.lower() == "true":
            flags.append(f"--{key}")
        elif value.lower() != "false":
            flags.append(f"--{key}={value}")
    return flags


def _start_lines(host: str = "host-1") -> list[tuple[str, str, list[str]]]:
    """(file, where, full ray start argv) for every ``ray start`` in both files, ``host`` for the machine."""
    lines = []
    vms = _vms()
    for key in ("head_start_ray_commands", "worker_start_ray_commands"):
        for command in vms[key]:
            args = _start_args(command, host)
            if args is not None:
                lines.append((VMS.name, key, (["--head"] if key.startswith("head") else []) + args))
    for name, group in _groups().items():
        for arg in _ray_container(name).args or []:
            args = _start_args(arg, host)
            if args is not None:
                lines.append((KUBE.name, name, _kuberay_args(group.get("rayStartParams") or {}, name == "head") + args))
    return lines


def _parse_start(argv: list[str], where: str) -> dict[str, Any]:
    try:
        return ray_start.make_context("ray start", list(argv)).params
    except click.ClickException as exc:
        pytest.fail(f"{where}: `ray start {' '.join(argv)}` is refused by Ray's parser: {exc.format_message()}")


def _labels(argv: list[str], where: str) -> dict[str, str]:
    value = _parse_start(argv, where)["labels"]
    assert value, f"{where}: `ray start` has no --labels"
    try:
        labels = parse_node_labels_string(value)
        validate_node_labels(labels)
    except ValueError as exc:
        pytest.fail(f"{where}: --labels={value!r} is refused by Ray: {exc}")
    return labels


def test_every_ray_start_line_parses_with_rays_own_option_parser() -> None:
    lines = _start_lines()
    assert {where for _, where, _ in lines} == {
        "head_start_ray_commands",
        "worker_start_ray_commands",
        *ROLE_OF_GROUP,
    }
    for file, where, argv in lines:
        _parse_start(argv, f"{file} {where}")


def test_every_labels_string_parses_and_follows_the_label_contract() -> None:
    expected_role = {"head_start_ray_commands": "head", "worker_start_ray_commands": "generator", **ROLE_OF_GROUP}
    # Two sample hosts: a value that follows both is the machine's own name, not a literal.
    for host in ("db-1", "worker-3.example.internal"):
        for file, where, argv in _start_lines(host):
            labels = _labels(argv, f"{file} {where}")
            assert labels.get("harness.io/role") == expected_role[where], (file, where, labels)
            assert labels.get("harness.io/host") == host, (file, where, labels)


def test_no_labels_string_is_left_unchecked() -> None:
    """Any string holding ``--labels`` must be one of the ray start lines parsed above."""
    checked = 0
    for file, data in ((VMS.name, _vms()), (KUBE.name, _kube_docs())):
        for text in _strings(data):
            if "--labels" in text:
                args = _start_args(text)
                assert args is not None and any(a.startswith("--labels") for a in args), f"{file}: {text!r}"
                checked += 1
    assert checked == len(_start_lines()) == 2 + len(ROLE_OF_GROUP)


def test_a_label_ray_refuses_is_reported() -> None:
    with pytest.raises(pytest.fail.Exception, match="refused by Ray"):
        _labels(["--labels=harness.io/host=$(hostname)"], "example")
    with pytest.raises(pytest.fail.Exception, match="refused by Ray's parser"):
        _parse_start(["--num-cpu=0"], "example")


# ---------------------------------------------------------------- the launcher config


def test_the_launcher_config_validates_against_the_schema_ray_ships() -> None:
    schema = json.loads((Path(ray.autoscaler.__file__).parent / "ray-schema.json").read_text())
    jsonschema.validate(_vms(), schema)


def test_the_launcher_config_passes_rays_own_preparation_and_validation() -> None:
    """What ``ray up`` does with the file before it contacts a machine."""
    prepared = prepare_config(_vms())
    validate_config(prepared)
    assert prepared["provider"]["type"] == "local"
    [node_type] = prepared["available_node_types"].values()
    assert node_type["min_workers"] == node_type["max_workers"] == len(prepared["provider"]["worker_ips"])


def test_the_launcher_config_starts_ray_with_token_auth_and_a_loadless_loopback_head() -> None:
    vms = _vms()
    [head] = [_start_args(c) for c in vms["head_start_ray_commands"] if _start_args(c) is not None]
    assert head is not None
    params = _parse_start(["--head", *head], "head")
    assert params["num_cpus"] == 0
    assert params["dashboard_host"] == "127.0.0.1"
    for command in vms["head_start_ray_commands"] + vms["worker_start_ray_commands"]:
        if _start_args(command) is not None:
            assert "RAY_AUTH_MODE=token" in _tokens(command), command
    # The same token file on every node, and the same checkout at one absolute path.
    mounts = vms["file_mounts"]
    assert any(remote.endswith("/.ray/auth_token") and local == "~/.ray/auth_token" for remote, local in mounts.items())
    [checkout] = [remote for remote, local in mounts.items() if local == "."]
    assert any(f"pip install -q -e {checkout}" in c for c in vms["setup_commands"])
    assert vms["auth"]["ssh_user"] == "root"  # faults need CAP_NET_ADMIN and cgroup writes


# ---------------------------------------------------------------- the KubeRay manifest


def _unknown_keys(data: Any, model: str, path: str = "") -> list[str]:
    """Keys in ``data`` that the kubernetes client model ``model`` (recursively) does not have."""
    if model in PRIMITIVES or data is None:
        return []
    if listed := re.fullmatch(r"(?:List\[|list\[)(.*)\]", model):  # client 37 / older clients
        return [p for i, item in enumerate(data) for p in _unknown_keys(item, listed[1], f"{path}[{i}]")]
    if mapped := re.fullmatch(r"(?:Dict\[str, (.*)\]|dict\(str, (.*)\))", model):
        inner = mapped[1] or mapped[2]
        return [p for key, value in data.items() for p in _unknown_keys(value, inner, f"{path}.{key}")]
    klass = getattr(kubernetes.client.models, model)
    attribute_of = {json_key: attr for attr, json_key in klass.attribute_map.items()}
    problems = []
    for key, value in data.items():
        where = f"{path}.{key}" if path else key
        if key not in attribute_of:
            problems.append(where)
        else:
            problems += _unknown_keys(value, klass.openapi_types[attribute_of[key]], where)
    return problems


def test_the_unknown_key_walk_catches_a_typo_at_any_depth() -> None:
    template = {"spec": {"hostNetwrk": True, "containers": [{"name": "x", "securityContext": {"capabilites": {}}}]}}
    assert _unknown_keys(template, "V1PodTemplateSpec") == [
        "spec.hostNetwrk",
        "spec.containers[0].securityContext.capabilites",
    ]


def test_every_kubernetes_object_deserialises_with_no_unknown_key() -> None:
    docs = _kube_docs()
    assert {doc["kind"] for doc in docs} == {*MODEL_OF_KIND, "RayCluster"}
    for doc in docs:
        if doc["kind"] == "RayCluster":
            continue
        model = MODEL_OF_KIND[doc["kind"]]
        assert _unknown_keys(doc, model) == [], doc["kind"]
        assert _deserialize(doc, model).metadata.name


def test_every_pod_template_deserialises_with_no_unknown_key() -> None:
    cluster = _raycluster()
    assert cluster["apiVersion"] == "ray.io/v1"
    assert _unknown_keys(cluster["metadata"], "V1ObjectMeta") == []
    for name, group in _groups().items():
        assert _unknown_keys(group["template"], "V1PodTemplateSpec", name) == []
        template = _template(name)
        assert template.spec.containers, name


def test_the_raycluster_uses_only_fields_kuberay_has_had_since_v1_1() -> None:
    spec = _raycluster()["spec"]
    assert set(spec) <= KUBERAY_FIELDS["spec"]
    assert set(spec["headGroupSpec"]) <= KUBERAY_FIELDS["headGroupSpec"]
    for group in spec["workerGroupSpecs"]:
        assert set(group) <= KUBERAY_FIELDS["workerGroupSpecs"], group["groupName"]
        # Without the autoscaler KubeRay needs both bounds; a fixed size keeps a run's shape.
        assert group["replicas"] == group["minReplicas"] == group["maxReplicas"], group["groupName"]
    assert spec["enableInTreeAutoscaling"] is False
    for name, group in _groups().items():
        params = group["rayStartParams"]
        # KubeRay's CRD types rayStartParams as map[string]string: `num-cpus: 0` would be refused.
        assert all(isinstance(v, str) for v in params.values()), (name, params)
        assert "labels" not in params, f"{name}: KubeRay v1.5+ refuses rayStartParams['labels']"


def test_every_ray_container_runs_kuberays_command_with_token_auth_and_the_node_name() -> None:
    cluster = _raycluster()
    # Only with this annotation does KubeRay run the containers' args instead of its own command.
    assert cluster["metadata"]["annotations"]["ray.io/overwrite-container-cmd"] == "true"
    secrets = set()
    for name in _groups():
        container = _ray_container(name)
        assert container.command == ["/bin/bash", "-lc", "--"], name
        assert any(KUBERAY_CMD in arg for arg in container.args), name
        env = {var.name: var for var in container.env}
        assert env["RAY_AUTH_MODE"].value == "token", name
        ref = env["RAY_AUTH_TOKEN"].value_from.secret_key_ref
        secrets.add((ref.name, ref.key))
        assert env["NODE_NAME"].value_from.field_ref.field_path == "spec.nodeName", name
    assert len(secrets) == 1 and next(iter(secrets))[1] == TOKEN_SECRET_KEY, secrets  # one token everywhere


def test_the_head_runs_no_load_and_keeps_the_dashboard_on_loopback() -> None:
    params = _groups()["head"]["rayStartParams"]
    assert params["num-cpus"] == "0"
    assert params["dashboard-host"] == "127.0.0.1"


def _selects(selector: kubernetes.client.V1LabelSelector, labels: dict[str, str]) -> bool:
    """Whether a selector picks pods of this template: spreading over other pods spreads nothing."""
    wanted = selector.match_labels or {}
    return bool(wanted) and all(labels.get(k) == v for k, v in wanted.items())


def test_the_generators_ask_for_whole_cpus_and_spread_over_nodes() -> None:
    template = _template("generators")
    container = _ray_container("generators")
    requests, limits = container.resources.requests, container.resources.limits
    assert float(requests["cpu"]) >= 1 and limits["cpu"] == requests["cpu"], container.resources
    assert "memory" in requests
    spread = [
        c
        for c in template.spec.topology_spread_constraints or []
        if c.topology_key == "kubernetes.io/hostname" and _selects(c.label_selector, template.metadata.labels)
    ]
    anti = template.spec.affinity and template.spec.affinity.pod_anti_affinity
    assert spread or anti, "generators are neither spread nor anti-affine over kubernetes.io/hostname"
    assert not template.spec.host_network and not template.spec.host_pid
    assert container.security_context is None
    assert _groups()["generators"]["rayStartParams"].get("num-cpus") != "0"


def test_the_chaos_agents_run_once_per_node_with_the_host_privileges_faults_need() -> None:
    group = _groups()["chaos-agents"]
    template = _template("chaos-agents")
    spec = template.spec
    assert group["rayStartParams"]["num-cpus"] == "0"  # no load generator in a privileged pod
    assert spec.host_network is True and spec.host_pid is True
    assert spec.dns_policy == "ClusterFirstWithHostNet"  # or the head's Service does not resolve
    terms = spec.affinity.pod_anti_affinity.required_during_scheduling_ignored_during_execution
    assert any(
        t.topology_key == "kubernetes.io/hostname" and _selects(t.label_selector, template.metadata.labels)
        for t in terms
    ), "no required anti-affinity of the chaos pods to each other on kubernetes.io/hostname"
    container = _ray_container("chaos-agents")
    security = container.security_context
    assert not security.privileged
    added = set(security.capabilities.add)
    assert "NET_ADMIN" in added
    assert added <= {"NET_ADMIN", "KILL"}, f"{added}: SYS_ADMIN only for faults with target.netns (docs/security.md)"
    cgroup = [v.name for v in spec.volumes if v.host_path is not None and v.host_path.path == "/sys/fs/cgroup"]
    mounts = [m for m in container.volume_mounts if m.name in cgroup]
    assert mounts and mounts[0].mount_path == "/sys/fs/cgroup" and not mounts[0].read_only


def test_the_in_cluster_kubeconfig_loads_and_is_mounted_where_kubeconfig_points(tmp_path: Path) -> None:
    [config_map] = [doc for doc in _kube_docs() if doc["kind"] == "ConfigMap"]
    [(key, text)] = config_map["data"].items()
    path = tmp_path / key
    path.write_text(text)
    contexts, current = kubernetes.config.list_kube_config_contexts(config_file=str(path))
    assert current["name"] == "in-cluster" and [c["name"] for c in contexts] == ["in-cluster"]
    user = yaml.safe_load(text)["users"][0]["user"]
    assert user["tokenFile"] == "/var/run/secrets/kubernetes.io/serviceaccount/token"
    for name in ("head", "chaos-agents"):
        template = _template(name)
        assert template.spec.service_account_name == "harness", name
        map_name = config_map["metadata"]["name"]
        [volume] = [v for v in template.spec.volumes if v.config_map and v.config_map.name == map_name]
        [mount] = [m for m in _ray_container(name).volume_mounts if m.name == volume.name]
        env = {var.name: var.value for var in _ray_container(name).env}
        assert env["KUBECONFIG"] == os.path.join(mount.mount_path, key), name
    assert _template("generators").spec.automount_service_account_token is False


def test_the_role_is_the_least_privilege_role_of_docs_security() -> None:
    documented = [
        doc
        for lang, body in FENCE.findall(SECURITY.read_text())
        if lang == "yaml"
        for doc in yaml.safe_load_all(body)
        if isinstance(doc, dict) and doc.get("kind") == "Role"
    ]
    [role] = [doc for doc in _kube_docs() if doc["kind"] == "Role"]
    [binding] = [doc for doc in _kube_docs() if doc["kind"] == "RoleBinding"]
    [account] = [doc for doc in _kube_docs() if doc["kind"] == "ServiceAccount"]
    assert documented and role["rules"] == documented[0]["rules"]
    assert binding["roleRef"]["name"] == role["metadata"]["name"]
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": account["metadata"]["name"], "namespace": account["metadata"]["namespace"]}
    ]


# ---------------------------------------------------------------- README commands


def _harness_commands(script: str) -> list[list[str]]:
    """Arguments of every ``harness`` invocation in a shell block, also after ``kubectl exec ... --``."""
    commands = []
    for line in script.replace("\\\n", " ").splitlines():
        tokens = _tokens(line)
        for i, token in enumerate(tokens):
            if token.rsplit("/", 1)[-1] != "harness":
                continue
            before = tokens[:i]
            start = max((j for j, t in enumerate(before) if t in OPERATORS | KEYWORDS), default=-1) + 1
            if all(re.match(r"^\w+=", t) for t in before[start:]):
                args = []
                for arg in tokens[i + 1 :]:
                    if arg in OPERATORS - {"--"}:
                        break
                    args.append(arg)
                commands.append(args)
    return commands


def _readme_commands() -> list[list[str]]:
    found: dict[str, list[str]] = {}
    for lang, body in FENCE.findall(README.read_text()):
        if lang in ("sh", "bash"):
            for args in _harness_commands(body):
                found.setdefault(" ".join(args), args)
    return list(found.values())


def test_the_readme_shows_the_commands_it_describes() -> None:
    commands = _readme_commands()
    assert any(a[:1] == ["run"] and "--ray-address" in a for a in commands)
    assert any(a[:1] == ["plan"] and "--ray-address" in a for a in commands)
    assert any(a[:1] == ["recover"] for a in commands)


@pytest.mark.parametrize("args", _readme_commands(), ids=lambda args: " ".join(args)[:60])
def test_every_harness_command_in_the_readme_exists(args: list[str]) -> None:
    check_command(args, "ray_cluster/README.md")
