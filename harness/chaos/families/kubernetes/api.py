"""The kubernetes family's API calls: pod kill and scale through the official client.

With :mod:`harness.chaos.kube` (connecting, the two locks, the choice of pods), the modules
that import ``kubernetes`` (the family imports this one on first use). Pure of Ray and of the
journal: the family (:mod:`harness.chaos.families.kubernetes`) keeps the
:class:`KubeRecord` that :func:`inject` returns, in the journal as :meth:`KubeRecord.details`,
and hands it back to :func:`revert`.

What callers may rely on:

* **Two locks on every change** (:mod:`harness.chaos.kube`): the kube context must be in
  ``safety.allowed_contexts`` (checked before any request), and the target namespace must
  carry the opt-in label ``harness.io/chaos=enabled``; a refusal is a ``ConfigError``.
* **Kubeconfig from the environment** (``$KUBECONFIG``, else ``~/.kube/config``), never from
  the scenario file.
* **Deterministic choice of pods** (:func:`harness.chaos.kube.select_pods`): the pods matching
  the selector that are not already terminating, sorted by name, shuffled with the seed
  (``params.seed``, default the fault name), the first ``k`` taken (50% of 3 is 2, 10% of 3 is 1).
* **Idempotent.** :func:`inject` given the ``previous`` record of the same fault (the
  journal's) deletes nothing more for a pod kill, and for a scale re-asserts 0 replicas but
  keeps the replica count recorded the first time, so inject twice + revert once restores
  the original. :func:`revert` may be called any number of times: a pod kill has nothing to
  undo (the pods' controller recreates them), a scale is patched back to the recorded count.
* **Kills only what it resolved.** Each DELETE carries ``gracePeriodSeconds=0`` and a UID
  precondition, so a pod recreated under the same name (StatefulSets) since the selection is
  not deleted; a pod already gone counts as ``gone``, not as an error.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException

from harness.chaos.capabilities import kubeconfig_path
from harness.chaos.families.kubernetes.params import (
    KubeFault,
    KubernetesPodKillFault,
    KubernetesScaleFault,
)
from harness.chaos.kube import (
    OPT_IN_LABEL,
    OPT_IN_VALUE,
    KubeApi,
    ResolvedPod,
    api_error,
    call,
    check_context,
    check_namespace,
    connect,
    list_pods,
    select_pods,
)
from harness.errors import ConfigError, FaultError, KubeFaultError

__all__ = [
    "OPT_IN_LABEL",
    "OPT_IN_VALUE",
    "KubeApi",
    "KubeFault",
    "KubeRecord",
    "Resolution",
    "ResolvedPod",
    "api_error",
    "call",
    "check_context",
    "check_namespace",
    "connect",
    "describe",
    "inject",
    "kubeconfig_path",
    "resolve",
    "revert",
    "select_pods",
]

POD_KILL = KubernetesPodKillFault.KIND
SCALE = KubernetesScaleFault.KIND
KINDS = (POD_KILL, SCALE)

# Connection problems should fail a fault in seconds, not after urllib3's default retries.
_TIMEOUT_S = 10.0


# ---------------------------------------------------------------- what a fault acts on


@dataclass(frozen=True)
class Resolution:
    """What a fault would act on now, for ``harness plan``. Resolving changes nothing."""

    kind: str
    context: str
    namespace: str
    pods: tuple[ResolvedPod, ...] = ()  # pod kill: the chosen pods, sorted by name
    matching: int = 0  # pod kill: how many pods matched the selector (not terminating)
    deployment: str | None = None  # scale
    replicas: int | None = None  # scale: the current spec.replicas

    def describe(self) -> str:
        where = f"context {self.context}, namespace {self.namespace}"
        if self.kind == POD_KILL:
            names = ", ".join(p.name for p in self.pods)
            return f"{len(self.pods)} of {self.matching} matching pods ({where}): {names}"
        return f"deployment {self.deployment} ({where}) now at {self.replicas} replicas"


@dataclass(frozen=True)
class KubeRecord:
    """What :func:`inject` did, enough for :func:`revert` and for the journal.

    ``replicas`` is the scale's ``spec.replicas`` before the first injection: what revert
    restores. ``deleted``/``gone`` are pod names (a pod kill is not reverted).
    """

    fault_name: str
    kind: str
    context: str
    namespace: str
    deployment: str | None = None
    replicas: int | None = None
    deleted: tuple[str, ...] = ()
    gone: tuple[str, ...] = ()
    errors: dict[str, str] = field(default_factory=dict)

    def details(self) -> dict[str, str | int]:
        """Flat details for a journal record (strings and ints only)."""
        out: dict[str, str | int] = {"context": self.context, "namespace": self.namespace}
        if self.kind == SCALE:
            out["deployment"] = self.deployment or ""
            out["replicas"] = self.replicas if self.replicas is not None else -1
        else:
            out["deleted"] = ",".join(self.deleted)
            out["gone"] = ",".join(self.gone)
            out["errors"] = "; ".join(f"{k}: {v}" for k, v in self.errors.items())
        return out

    @classmethod
    def from_details(cls, fault_name: str, kind: str, details: dict[str, str | int]) -> KubeRecord:
        """The inverse of :meth:`details`, for ``harness recover`` and the watchdog."""
        if kind not in KINDS:
            raise FaultError(f"fault '{fault_name}': {kind} is not a kubernetes fault kind")

        def text(key: str) -> str:
            return str(details.get(key, ""))

        if kind == SCALE:
            replicas = int(details.get("replicas", -1))
            return cls(
                fault_name,
                kind,
                text("context"),
                text("namespace"),
                deployment=text("deployment") or None,
                replicas=replicas if replicas >= 0 else None,
            )

        def names(key: str) -> tuple[str, ...]:
            return tuple(n for n in text(key).split(",") if n)

        return cls(fault_name, kind, text("context"), text("namespace"), deleted=names("deleted"), gone=names("gone"))


# ---------------------------------------------------------------- describing and choosing


def describe(fault: KubeFault) -> str:
    """What the fault will do, in one line, for ``harness plan``. Sends no request."""
    if isinstance(fault, KubernetesPodKillFault):
        target, params = fault.target, fault.params
        if params.mode == "fixed":
            how = f"{params.count} pods"
        elif params.mode == "percent":
            how = f"{params.percent:g}% of the pods (rounded up)"
        else:
            how = {"one": "one pod", "all": "all pods"}[params.mode]
        return f"delete {how} matching '{target.selector}' in namespace {target.namespace} (gracePeriodSeconds=0)"
    return (
        f"scale deployment {fault.target.namespace}/{fault.target.deployment} to 0 replicas, "
        f"back to its recorded count after {fault.duration:g}s"
    )


# ---------------------------------------------------------------- safety checks


def _guard(fault: KubeFault, api: KubeApi) -> None:
    check_context(api, fault.name)
    check_namespace(api, fault.target.namespace, fault.name)


# ---------------------------------------------------------------- resolve, inject, revert


def _list_pods(fault: KubernetesPodKillFault, api: KubeApi) -> list[ResolvedPod]:
    """The selector's pods not already terminating (deleting one again would kill nothing)."""
    target = fault.target
    return [
        ResolvedPod(p.metadata.name, p.metadata.uid or "")
        for p in list_pods(api, target.namespace, target.selector, fault.name)
    ]


def _read_replicas(fault: KubernetesScaleFault, api: KubeApi) -> int:
    target = fault.target
    what = f"reading the scale of deployment {target.namespace}/{target.deployment}"
    try:
        scale = call(
            what,
            fault.name,
            lambda: api.apps.read_namespaced_deployment_scale(
                target.deployment, target.namespace, _request_timeout=_TIMEOUT_S
            ),
        )
    except ApiException as exc:
        if exc.status == 404:
            raise FaultError(
                f"fault '{fault.name}': deployment {target.deployment} not found in namespace {target.namespace}"
            ) from None
        raise api_error(fault.name, what, exc) from None
    return int((scale.spec.replicas if scale.spec else None) or 0)


def resolve(fault: KubeFault, api: KubeApi) -> Resolution:
    """Which pods / which deployment ``fault`` would act on now. Sends only GET requests.

    Applies the same context and opt-in checks as :func:`inject` (so a plan shows a refusal
    before a run meets it). Raises ``FaultError`` when no pod matches or the deployment
    does not exist.
    """
    _guard(fault, api)
    namespace = fault.target.namespace
    if isinstance(fault, KubernetesPodKillFault):
        pods = _list_pods(fault, api)
        if not pods:
            raise FaultError(
                f"fault '{fault.name}': no running pod matches '{fault.target.selector}' in namespace {namespace}"
            )
        chosen = select_pods(pods, fault.params, fault.params.seed or fault.name)
        return Resolution(POD_KILL, api.context, namespace, pods=chosen, matching=len(pods))
    replicas = _read_replicas(fault, api)
    return Resolution(SCALE, api.context, namespace, deployment=fault.target.deployment, replicas=replicas)


def inject(fault: KubeFault, api: KubeApi, *, previous: KubeRecord | None = None) -> KubeRecord:
    """Apply ``fault`` now and return what was done.

    Pod kill: resolve (context and opt-in checks first), then DELETE each chosen pod with
    ``gracePeriodSeconds=0`` and its UID as precondition. Pods already gone (404) or
    replaced (409) are listed as ``gone``; any other failure raises :class:`~harness.errors.KubeFaultError`
    carrying the details of what was deleted. Scale: read the scale subresource, record
    ``spec.replicas``, patch it to 0.

    ``previous``, the record of this fault from the journal, makes inject idempotent: a pod
    kill returns it unchanged; a scale patches to 0 again and keeps its recorded replicas.
    """
    if previous is not None and (previous.fault_name != fault.name or previous.kind != fault.kind):
        raise FaultError(f"fault '{fault.name}': previous record is of {previous.kind} '{previous.fault_name}'")
    if isinstance(fault, KubernetesPodKillFault):
        if previous is not None:
            return previous
        return _kill_pods(fault, api)
    return _scale_to_zero(fault, api, previous)


def _deleter(api: KubeApi, namespace: str, pod: ResolvedPod) -> Callable[[], object]:
    """A DELETE of ``pod`` with gracePeriodSeconds=0 (query and DeleteOptions body) and its UID as precondition."""
    options = k8s.V1DeleteOptions(
        grace_period_seconds=0, preconditions=k8s.V1Preconditions(uid=pod.uid) if pod.uid else None
    )
    return lambda: api.core.delete_namespaced_pod(
        pod.name, namespace, grace_period_seconds=0, body=options, _request_timeout=_TIMEOUT_S
    )


def _kill_pods(fault: KubernetesPodKillFault, api: KubeApi) -> KubeRecord:
    chosen = resolve(fault, api).pods
    namespace = fault.target.namespace
    deleted: list[str] = []
    gone: list[str] = []
    errors: dict[str, str] = {}
    for pod in chosen:
        try:
            call(f"deleting pod {namespace}/{pod.name}", fault.name, _deleter(api, namespace, pod))
            deleted.append(pod.name)
        except ApiException as exc:
            if exc.status in (404, 409):  # gone, or a namesake with another UID: not ours to kill
                gone.append(pod.name)
            else:
                errors[pod.name] = f"HTTP {exc.status} {exc.reason}"
        except FaultError as exc:
            errors[pod.name] = str(exc)
    record = KubeRecord(
        fault.name, POD_KILL, api.context, namespace, deleted=tuple(deleted), gone=tuple(gone), errors=errors
    )
    if errors:
        failed = "; ".join(f"{name}: {why}" for name, why in errors.items())
        raise KubeFaultError(f"fault '{fault.name}': could not delete {failed}", **record.details())
    return record


def _patch_replicas(api: KubeApi, fault_name: str, namespace: str, deployment: str, replicas: int) -> None:
    what = f"scaling deployment {namespace}/{deployment} to {replicas}"
    body: dict[str, Any] = {"spec": {"replicas": replicas}}
    try:
        call(
            what,
            fault_name,
            lambda: api.apps.patch_namespaced_deployment_scale(
                deployment, namespace, body, _request_timeout=_TIMEOUT_S
            ),
        )
    except ApiException as exc:
        raise api_error(fault_name, what, exc) from None


def _scale_to_zero(fault: KubernetesScaleFault, api: KubeApi, previous: KubeRecord | None) -> KubeRecord:
    current = resolve(fault, api).replicas
    namespace, deployment = fault.target.namespace, fault.target.deployment
    recorded = previous.replicas if previous is not None and previous.replicas is not None else current
    record = KubeRecord(fault.name, SCALE, api.context, namespace, deployment=deployment, replicas=recorded)
    _patch_replicas(api, fault.name, namespace, deployment, 0)
    return record


def revert(record: KubeRecord, api: KubeApi) -> None:
    """Undo what ``record`` says was done. Safe to call any number of times.

    A pod kill sends nothing: the pods' controller has recreated them. A scale is patched
    back to ``record.replicas``. The context must be allowed *and* be the one the fault was
    injected in (a revert must not land on another cluster). The opt-in label is not checked
    again: it gates new chaos, and a label removed mid-run must not leave a deployment at 0.
    """
    check_context(api, record.fault_name)
    if api.context != record.context:
        raise ConfigError(
            f"fault '{record.fault_name}': injected in kube context '{record.context}', "
            f"not '{api.context}'; refusing to revert it there"
        )
    if record.kind == POD_KILL:
        return
    if record.kind != SCALE or record.deployment is None or record.replicas is None:
        raise FaultError(f"fault '{record.fault_name}': record of {record.kind} has nothing to revert with")
    _patch_replicas(api, record.fault_name, record.namespace, record.deployment, record.replicas)
