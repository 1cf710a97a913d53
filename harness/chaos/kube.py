"""The Kubernetes API server as every Kubernetes-aware part of chaos talks to it, through the official client.

Connecting (:func:`connect`, kubeconfig from the environment), the two locks on every change
(:func:`check_context`, :func:`check_namespace`), the deterministic choice of pods
(:func:`select_pods`) and the listing of the pods a fault's ``pods`` selector chooses
(:func:`choose_pods`, GET requests only). The kubernetes family (:mod:`harness.chaos.families.kubernetes.api`)
deletes and scales through these; the driver places pod faults with :func:`choose_pods`.

What callers may rely on:

* **Two locks on every change.** Before any request that changes anything, the kube context
  the :class:`KubeApi` was built for must be in the scenario's ``safety.allowed_contexts``
  (checked locally, before any request at all), and the target namespace must carry the
  opt-in label ``harness.io/chaos=enabled`` (read from the Namespace object). The label is
  fixed, not chosen by the scenario: a scenario that could name its own opt-in label could
  name one every namespace already has (``kubernetes.io/metadata.name``), which is no opt-in.
  A refusal is a :class:`~harness.errors.ConfigError` naming the context or the namespace and
  the missing label. Listing a fault's pods passes the same two locks.
* **Kubeconfig from the environment.** ``$KUBECONFIG`` (a path, or several joined by ``:``),
  else ``~/.kube/config``; never from the scenario file, so a scenario cannot point harness
  at credentials.
* **Deterministic choice of pods.** The candidates sorted by name, shuffled with
  ``random.Random(seed)`` (the fault name unless a seed is given, so ``harness plan`` and the
  run choose alike while the pods stay the same), the first ``k`` taken: ``k`` is 1 for
  ``one``, ``min(count, n)`` for ``fixed``, ``ceil(n * percent / 100)`` for ``percent`` and n
  for ``all``. A larger ``k`` over the same pods and seed holds a smaller one's choice.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Literal, Protocol, TypeVar

import urllib3
from kubernetes import client as k8s
from kubernetes import config as k8s_config
from kubernetes.client.exceptions import ApiException
from kubernetes.config.config_exception import ConfigException

from harness.chaos.capabilities import kubeconfig_path
from harness.chaos.kubelet import PodRef
from harness.errors import ConfigError, FaultError
from harness.scenario.faults import FaultBase

__all__ = [
    "OPT_IN_LABEL",
    "OPT_IN_VALUE",
    "Choice",
    "KubeApi",
    "PodChoice",
    "ResolvedPod",
    "api_error",
    "call",
    "check_context",
    "check_namespace",
    "choose",
    "choose_pods",
    "connect",
    "list_pods",
    "select_pods",
]

OPT_IN_LABEL = "harness.io/chaos"
OPT_IN_VALUE = "enabled"

# Connection problems should fail a fault in seconds, not after urllib3's default retries.
_TIMEOUT_S = 10.0

T = TypeVar("T")


class Choice(Protocol):
    """How many pods: a pod kill's params, or a fault's ``pods`` selector."""

    @property
    def mode(self) -> Literal["one", "all", "fixed", "percent"]: ...
    @property
    def count(self) -> int | None: ...
    @property
    def percent(self) -> float | None: ...


# ---------------------------------------------------------------- connecting


@dataclass(frozen=True)
class KubeApi:
    """A client for one cluster, with the context it was built for and the contexts allowed.

    Built by :func:`connect`; tests may build one around any ``ApiClient``. Carrying the
    allow-list here means no function of this module can be called without one.
    """

    context: str
    allowed_contexts: tuple[str, ...]
    client: k8s.ApiClient

    @property
    def core(self) -> k8s.CoreV1Api:
        return k8s.CoreV1Api(self.client)

    @property
    def apps(self) -> k8s.AppsV1Api:
        return k8s.AppsV1Api(self.client)


def connect(allowed_contexts: Iterable[str], *, context: str | None = None) -> KubeApi:
    """A :class:`KubeApi` for ``context`` (default: the kubeconfig's current context).

    Reads the kubeconfig at :func:`kubeconfig_path` and sends no request. Raises
    ``ConfigError`` when the kubeconfig is missing or invalid or names no such context; a
    context outside ``allowed_contexts`` is *not* refused here but before every request,
    so ``harness plan`` can say which context it would have used.
    """
    path = kubeconfig_path()
    try:
        contexts, current = k8s_config.list_kube_config_contexts(config_file=path)
        names = [c["name"] for c in contexts]
        name = context or (current or {}).get("name")
        if not name:
            raise ConfigError(f"kubeconfig {path} has no current-context; name one")
        if name not in names:
            raise ConfigError(f"kubeconfig {path} has no context '{name}' (it has: {', '.join(names) or 'none'})")
        api_client = k8s_config.new_client_from_config(config_file=path, context=name, persist_config=False)
    except ConfigException as exc:
        raise ConfigError(f"kubeconfig {path}: {exc}") from None
    except OSError as exc:
        raise ConfigError(f"cannot read kubeconfig {path}: {exc.strerror or exc}") from None
    return KubeApi(context=name, allowed_contexts=tuple(allowed_contexts), client=api_client)


@dataclass(frozen=True)
class ResolvedPod:
    """A pod a kill will delete: the UID pins it against a namesake created later."""

    name: str
    uid: str


def _how_many(params: Choice, n: int) -> int:
    if params.mode == "all":
        return n
    if params.mode == "one":
        return min(1, n)
    if params.mode == "fixed":
        return min(params.count or 0, n)
    # A small epsilon keeps 3 * 100 / 100 from rounding up past 3 through float error.
    return min(n, math.ceil(n * (params.percent or 0.0) / 100 - 1e-9))


def select_pods(pods: Iterable[ResolvedPod], params: Choice, seed: str) -> tuple[ResolvedPod, ...]:
    """The pods a kill with ``params`` deletes out of ``pods``, sorted by name (see the module docstring)."""
    candidates = sorted(pods, key=lambda p: p.name)
    k = _how_many(params, len(candidates))
    if k >= len(candidates):
        return tuple(candidates)
    order = list(candidates)
    random.Random(seed).shuffle(order)
    return tuple(sorted(order[:k], key=lambda p: p.name))


def check_context(api: KubeApi, fault_name: str) -> None:
    """Refuse, before any request, a context the scenario does not allow."""
    if api.context not in api.allowed_contexts:
        allowed = ", ".join(api.allowed_contexts) or "none"
        raise ConfigError(
            f"fault '{fault_name}': kube context '{api.context}' is not in safety.allowed_contexts "
            f"({allowed}); refusing to act"
        )


def call(what: str, fault_name: str, request: Callable[[], T]) -> T:
    """One API request; transport failures become ``FaultError`` (ApiException passes through)."""
    try:
        return request()
    except ApiException:
        raise
    except (urllib3.exceptions.HTTPError, OSError) as exc:
        raise FaultError(f"fault '{fault_name}': {what}: cannot reach the API server: {exc}") from None


def api_error(fault_name: str, what: str, exc: ApiException) -> FaultError:
    return FaultError(f"fault '{fault_name}': {what}: HTTP {exc.status} {exc.reason}")


def check_namespace(api: KubeApi, namespace: str, fault_name: str) -> None:
    """Read the Namespace and refuse unless it carries ``harness.io/chaos=enabled``."""
    try:
        ns = call(
            f"reading namespace {namespace}",
            fault_name,
            lambda: api.core.read_namespace(namespace, _request_timeout=_TIMEOUT_S),
        )
    except ApiException as exc:
        if exc.status == 404:
            raise FaultError(
                f"fault '{fault_name}': namespace '{namespace}' does not exist in context '{api.context}'"
            ) from None
        raise api_error(fault_name, f"reading namespace {namespace}", exc) from None
    labels = (ns.metadata.labels if ns.metadata else None) or {}
    if labels.get(OPT_IN_LABEL) != OPT_IN_VALUE:
        found = f" (it has {OPT_IN_LABEL}={labels[OPT_IN_LABEL]})" if OPT_IN_LABEL in labels else ""
        raise ConfigError(
            f"fault '{fault_name}': namespace '{namespace}' does not carry the opt-in label "
            f"{OPT_IN_LABEL}={OPT_IN_VALUE}{found}; refusing to act on it "
            f"(kubectl label namespace {namespace} {OPT_IN_LABEL}={OPT_IN_VALUE} to allow it)"
        )


# ---------------------------------------------------------------- the pods of a fault's selector


@dataclass(frozen=True)
class PodChoice:
    """The pods chosen for one fault, in the context they were listed in."""

    context: str
    pods: tuple[PodRef, ...]
    matching: int

    def describe(self) -> str:
        listed = ", ".join(f"{p.name} on {p.node}" for p in self.pods)
        return f"{len(self.pods)} of {self.matching} matching pods (context {self.context}): {listed}"


def _container_id(raw: str | None) -> str:
    """``containerd://<id>`` (or ``cri-o://``, ``docker://``) -> ``<id>``."""
    return (raw or "").partition("://")[2] or (raw or "")


def list_pods(
    kube: KubeApi, namespace: str, selector: str, fault_name: str, *, what: str = "", timeout: float = _TIMEOUT_S
) -> list[Any]:
    """The pods matching ``selector`` in ``namespace`` that are not terminating (the API's V1Pod
    objects), in one GET; ``FaultError`` (``ConfigError`` for a refusal) when the API says no.
    Every listing of pods in harness goes through here: choosing a fault's pods, a pod kill,
    a heal check."""
    what = what or f"listing pods '{selector}' in {namespace}"
    try:
        found = call(
            what,
            fault_name,
            lambda: kube.core.list_namespaced_pod(namespace, label_selector=selector, _request_timeout=timeout),
        )
    except ApiException as exc:
        raise api_error(fault_name, what, exc) from None
    return [
        pod
        for pod in found.items
        if pod.metadata is not None and pod.metadata.name and pod.metadata.deletion_timestamp is None
    ]


def _listed(kube: KubeApi, fault: FaultBase) -> list[PodRef]:
    """The scheduled, not terminating pods of ``fault``'s selector, as found on their nodes later."""
    assert fault.pods is not None
    selector = fault.pods
    out = []
    for pod in list_pods(kube, selector.namespace, selector.selector, fault.name):
        meta, spec, status = pod.metadata, pod.spec, pod.status
        if spec is None or not spec.node_name:
            continue  # not scheduled: nowhere to act
        statuses = (status.container_statuses if status else None) or []
        containers = tuple((c.name, _container_id(c.container_id)) for c in statuses if c.container_id)
        ip = (status.pod_ip if status else None) or ""
        out.append(PodRef(selector.namespace, meta.name, meta.uid or "", spec.node_name, ip, containers))
    return out


def choose(kube: KubeApi, fault: FaultBase) -> PodChoice:
    """The pods ``fault`` acts inside now; ``ConfigError`` for a refused context or namespace,
    ``FaultError`` when no scheduled pod matches."""
    assert fault.pods is not None
    selector = fault.pods
    check_context(kube, fault.name)
    check_namespace(kube, selector.namespace, fault.name)
    pods = _listed(kube, fault)
    if not pods:
        raise FaultError(
            f"fault '{fault.name}': no running, scheduled pod matches '{selector.selector}' "
            f"in namespace {selector.namespace}"
        )
    by_name = {p.name: p for p in pods}
    resolved = [ResolvedPod(p.name, p.uid) for p in pods]
    chosen = select_pods(resolved, selector, selector.seed or fault.name)
    return PodChoice(kube.context, tuple(by_name[p.name] for p in chosen), len(pods))


def choose_pods(faults: Iterable[FaultBase], allowed_contexts: Iterable[str]) -> dict[str, PodChoice]:
    """:func:`choose` for every fault with ``pods``, by fault name (one connection)."""
    wanted = [f for f in faults if f.pods is not None]
    if not wanted:
        return {}
    kube = connect(allowed_contexts)
    return {fault.name: choose(kube, fault) for fault in wanted}
