"""Heal conditions read through the Kubernetes API: Ready pods of a selector, available replicas.

The run's heal watch (:mod:`harness.run.heal`) polls these from the driver, every 150 ms or
so, after a fault until the system is whole again. Reads only (one GET each), only in a kube
context the scenario's ``safety.allowed_contexts`` allows, with the kubeconfig from the
environment as every Kubernetes request of harness (:func:`~harness.chaos.capabilities.kubeconfig_path`).
A heal condition is not a fault, so this is a host helper of the chaos room, not part of the
kubernetes family.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, TypeVar

import urllib3
from kubernetes import client as k8s
from kubernetes import config as k8s_config
from kubernetes.client.exceptions import ApiException
from kubernetes.config.config_exception import ConfigException

from harness.chaos.capabilities import kubeconfig_path
from harness.errors import ConfigError, FaultError

__all__ = ["KubeReader"]

# A poll that cannot be answered quickly is a failed poll; the next one comes soon.
_TIMEOUT_S = 2.0

T = TypeVar("T")


class KubeReader:
    """Reads heal conditions in the kubeconfig's current context, which must be allowed.

    Raises ``ConfigError`` (exit 2) when the kubeconfig cannot be read or its current context is
    not in ``allowed_contexts``; each read raises ``FaultError`` when the API does not answer.
    """

    def __init__(self, allowed_contexts: Iterable[str]) -> None:
        path = kubeconfig_path()
        try:
            _, current = k8s_config.list_kube_config_contexts(config_file=path)
            self.context = str((current or {}).get("name") or "")
            allowed = tuple(allowed_contexts)
            if self.context not in allowed:
                raise ConfigError(
                    f"heal checks read the Kubernetes API in kube context '{self.context}' (the current context "
                    f"of {path}), which is not in safety.allowed_contexts ({', '.join(allowed) or 'none'})"
                )
            api_client = k8s_config.new_client_from_config(config_file=path, context=self.context, persist_config=False)
        except ConfigException as exc:
            raise ConfigError(f"kubeconfig {path}: {exc}") from None
        except OSError as exc:
            raise ConfigError(f"cannot read kubeconfig {path}: {exc.strerror or exc}") from None
        self._core = k8s.CoreV1Api(api_client)
        self._apps = k8s.AppsV1Api(api_client)

    @staticmethod
    def _read(what: str, request: Callable[[], T]) -> T:
        try:
            return request()
        except ApiException as exc:
            raise FaultError(f"{what}: HTTP {exc.status} {exc.reason}") from None
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise FaultError(f"{what}: cannot reach the API server: {exc}") from None

    def pods_ready(self, namespace: str, selector: str) -> tuple[int, int]:
        """``(Ready, all)`` of the pods matching ``selector`` in ``namespace`` that are not terminating;
        a pod is Ready when its ``Ready`` condition is ``True`` (as ``kubectl get pods`` counts it)."""
        pods = self._read(
            f"listing pods '{selector}' in {namespace}",
            lambda: self._core.list_namespaced_pod(namespace, label_selector=selector, _request_timeout=_TIMEOUT_S),
        )
        live: list[Any] = [p for p in pods.items if p.metadata is not None and p.metadata.deletion_timestamp is None]
        ready = 0
        for pod in live:
            conditions = (pod.status.conditions if pod.status else None) or []
            ready += any(c.type == "Ready" and c.status == "True" for c in conditions)
        return ready, len(live)

    def replicas_available(self, namespace: str, deployment: str) -> tuple[int, int]:
        """``(spec.replicas, status.availableReplicas)`` of a Deployment."""
        found = self._read(
            f"reading deployment {namespace}/{deployment}",
            lambda: self._apps.read_namespaced_deployment(deployment, namespace, _request_timeout=_TIMEOUT_S),
        )
        desired = int((found.spec.replicas if found.spec else None) or 0)
        return desired, int((found.status.available_replicas if found.status else None) or 0)
