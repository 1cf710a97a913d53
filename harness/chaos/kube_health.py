"""Heal conditions read through the Kubernetes API: Ready pods of a selector, available replicas.

The run's heal watch (:mod:`harness.run.heal`) polls these from the driver, every 150 ms or
so, after a fault until the system is whole again. Reads only (one GET each), through the
same connection and context lock as every Kubernetes request of harness (:mod:`.kube`): the
context must be in the scenario's ``safety.allowed_contexts``. A heal condition is not a
fault, so this is a host helper of the chaos room, not part of the kubernetes family.
"""

from __future__ import annotations

from kubernetes.client.exceptions import ApiException

from harness.chaos.kube import KubeApi, api_error, call, check_context, list_pods

__all__ = ["pods_ready", "replicas_available"]

# A poll that cannot be answered quickly is a failed poll; the next one comes soon.
_TIMEOUT_S = 2.0


def pods_ready(api: KubeApi, namespace: str, selector: str, fault_name: str) -> tuple[int, int]:
    """``(Ready, all)`` of the pods matching ``selector`` in ``namespace`` that are not terminating;
    a pod is Ready when its ``Ready`` condition is ``True`` (as ``kubectl get pods`` counts it).
    Raises ``ConfigError`` for a context not allowed, ``FaultError`` when the API does not answer."""
    check_context(api, fault_name)
    what = f"heal check: listing pods '{selector}' in {namespace}"
    live = list_pods(api, namespace, selector, fault_name, what=what, timeout=_TIMEOUT_S)
    ready = 0
    for pod in live:
        conditions = (pod.status.conditions if pod.status else None) or []
        ready += any(c.type == "Ready" and c.status == "True" for c in conditions)
    return ready, len(live)


def replicas_available(api: KubeApi, namespace: str, deployment: str, fault_name: str) -> tuple[int, int]:
    """``(spec.replicas, status.availableReplicas)`` of a Deployment (errors as :func:`pods_ready`)."""
    check_context(api, fault_name)
    what = f"heal check: reading deployment {namespace}/{deployment}"
    try:
        found = call(
            what,
            fault_name,
            lambda: api.apps.read_namespaced_deployment(deployment, namespace, _request_timeout=_TIMEOUT_S),
        )
    except ApiException as exc:
        raise api_error(fault_name, what, exc) from None
    desired = int((found.spec.replicas if found.spec else None) or 0)
    return desired, int((found.status.available_replicas if found.status else None) or 0)
