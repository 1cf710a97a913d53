"""Heal conditions read through the Kubernetes API: Ready pods of a selector, available replicas.

The run's heal watch (:mod:`harness.run.heal`) polls these from the driver, every 150 ms or
so, after a fault until the system is whole again. Reads only (one GET each), and only in a
kube context the scenario's ``safety.allowed_contexts`` allows, like every request of the
family (:mod:`.api`, whose :class:`~.api.KubeApi` they take).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import urllib3
from kubernetes.client.exceptions import ApiException

from harness.chaos.families.kubernetes.api import KubeApi
from harness.errors import ConfigError, FaultError

__all__ = ["pods_ready", "replicas_available"]

# A poll that cannot be answered quickly is a failed poll; the next one comes soon.
_TIMEOUT_S = 2.0

T = TypeVar("T")


def _read(api: KubeApi, what: str, request: Callable[[], T]) -> T:
    if api.context not in api.allowed_contexts:
        allowed = ", ".join(api.allowed_contexts) or "none"
        raise ConfigError(f"heal check: kube context '{api.context}' is not in safety.allowed_contexts ({allowed})")
    try:
        return request()
    except ApiException as exc:
        raise FaultError(f"{what}: HTTP {exc.status} {exc.reason}") from None
    except (urllib3.exceptions.HTTPError, OSError) as exc:
        raise FaultError(f"{what}: cannot reach the API server: {exc}") from None


def pods_ready(api: KubeApi, namespace: str, selector: str) -> tuple[int, int]:
    """``(Ready, all)`` of the pods matching ``selector`` in ``namespace`` that are not terminating;
    a pod is Ready when its ``Ready`` condition is ``True`` (as ``kubectl get pods`` counts it)."""
    pods = _read(
        api,
        f"listing pods '{selector}' in {namespace}",
        lambda: api.core.list_namespaced_pod(namespace, label_selector=selector, _request_timeout=_TIMEOUT_S),
    )
    live = [p for p in pods.items if p.metadata is not None and p.metadata.deletion_timestamp is None]
    ready = 0
    for pod in live:
        conditions = (pod.status.conditions if pod.status else None) or []
        ready += any(c.type == "Ready" and c.status == "True" for c in conditions)
    return ready, len(live)


def replicas_available(api: KubeApi, namespace: str, deployment: str) -> tuple[int, int]:
    """``(spec.replicas, status.availableReplicas)`` of a Deployment."""
    found = _read(
        api,
        f"reading deployment {namespace}/{deployment}",
        lambda: api.apps.read_namespaced_deployment(deployment, namespace, _request_timeout=_TIMEOUT_S),
    )
    desired = int((found.spec.replicas if found.spec else None) or 0)
    return desired, int((found.status.available_replicas if found.status else None) or 0)
