"""A test double of the Kubernetes API server: the REST subset harness.chaos.families.kubernetes.api uses.

No kube-apiserver can run on these machines (TESTBED.md), so the Kubernetes fault code is
exercised through the real ``kubernetes`` client, over real HTTP on loopback, against this
server. It answers as the real server does for:

* ``GET /api/v1/namespaces/{ns}``: the Namespace with its labels (404 Status if unknown);
* ``GET /api/v1/namespaces/{ns}/pods?labelSelector=...``: a PodList, with equality
  (``k=v``, ``k==v``, ``k!=v``), set-based (``k in (a,b)``, ``k notin (a,b)``) and existence
  (``k``, ``!k``) requirements, all of which must hold;
* ``DELETE /api/v1/namespaces/{ns}/pods/{name}``: records the DeleteOptions body, honours a
  UID precondition (409 on mismatch), removes the pod and returns it (200);
* ``GET``/``PATCH /apis/apps/v1/namespaces/{ns}/deployments/{name}/scale``: an
  ``autoscaling/v1`` Scale; PATCH takes ``application/merge-patch+json`` or
  ``application/strategic-merge-patch+json`` (415 for anything else, e.g. JSON Patch);
* ``GET /apis/apps/v1/namespaces/{ns}/deployments/{name}``: the Deployment, its status
  (``replicas``, ``readyReplicas``, ``availableReplicas``) following its pods.

It also behaves like the controllers users rely on, for deployments made with
:meth:`Cluster.add_deployment`: the Deployment owns a ReplicaSet that owns its pods
(``ownerReferences``). A deleted pod is replaced at once by a new one (new UID, name
``<replicaset>-<5 chars>``, ``Pending``, its ``Ready`` condition ``False``) that becomes
``Running`` and Ready ``ready_delay`` seconds later; a scale down deletes the newest pods, a
scale up creates pods the same way. The controllers are reconciled on every request (nothing
can observe the cluster between requests), so a replacement is Ready from the first request
at or after its creation plus the delay.

Every request is recorded (method, path, query, content type, body) so a test can assert
that nothing changing anything was sent. Anything else answers 404 with a Status body.
"""

from __future__ import annotations

import json
import random
import re
import threading
import time
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import yaml

MUTATING = {"POST", "PUT", "PATCH", "DELETE"}
PATCH_TYPES = {"application/merge-patch+json", "application/strategic-merge-patch+json"}


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    query: dict[str, list[str]]
    content_type: str
    body: Any


# Characters of generated name suffixes, as the API server's (no vowels, no 0/1/3).
_SUFFIX = "bcdfghjklmnpqrstvwxz2456789"


@dataclass
class ReplicaSet:
    """A Deployment's ReplicaSet: its pods carry ``labels`` and become Ready ``ready_delay`` s after creation."""

    namespace: str
    deployment: str
    name: str
    uid: str
    labels: dict[str, str]
    ready_delay: float
    node_name: str = "node-1"  # where its pods are scheduled
    ready_at: dict[str, float] = field(default_factory=dict)  # pod name -> when it turns Ready (monotonic)


@dataclass
class Cluster:
    """The objects the double serves. Tests edit these directly to arrange a scene."""

    namespaces: dict[str, dict[str, str]] = field(default_factory=dict)  # name -> labels
    pods: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)  # ns -> name -> Pod
    replicas: dict[tuple[str, str], int] = field(default_factory=dict)  # (ns, deployment) -> spec.replicas
    replica_sets: dict[tuple[str, str], ReplicaSet] = field(default_factory=dict)  # (ns, deployment) -> its RS

    def add_namespace(self, name: str, labels: dict[str, str] | None = None) -> None:
        self.namespaces[name] = {"kubernetes.io/metadata.name": name, **(labels or {})}

    def add_pod(
        self,
        namespace: str,
        name: str,
        labels: dict[str, str],
        *,
        terminating: bool = False,
        owner: ReplicaSet | None = None,
        ready: bool = True,
        uid: str | None = None,
        node_name: str = "node-1",
        containers: dict[str, str] | None = None,
        pod_ip: str = "10.0.0.1",
    ) -> dict[str, Any]:
        """A pod, Running and Ready (``ready``) or Pending; ``containers`` (name -> containerd ID) are listed
        in status.containerStatuses; ``owner``: the ReplicaSet that controls it (ownerReferences)."""
        meta: dict[str, Any] = {
            "name": name,
            "namespace": namespace,
            "uid": uid or str(uuid.uuid4()),
            "resourceVersion": "1",
            "creationTimestamp": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "labels": labels,
        }
        if terminating:
            meta["deletionTimestamp"] = "2026-01-01T00:01:00Z"
            meta["deletionGracePeriodSeconds"] = 30
        if owner is not None:
            meta["ownerReferences"] = [
                {
                    "apiVersion": "apps/v1",
                    "kind": "ReplicaSet",
                    "name": owner.name,
                    "uid": owner.uid,
                    "controller": True,
                    "blockOwnerDeletion": True,
                }
            ]
        pod: dict[str, Any] = {
            "kind": "Pod",
            "apiVersion": "v1",
            "metadata": meta,
            "spec": {
                "containers": [{"name": c, "image": "registry.example/app:1"} for c in (containers or {"app": ""})],
                "nodeName": node_name,
            },
            "status": {"podIP": pod_ip},
        }
        if containers:
            pod["status"]["containerStatuses"] = [
                {
                    "name": c,
                    "containerID": f"containerd://{cid}",
                    "image": "registry.example/app:1",
                    "imageID": "",
                    "ready": True,
                    "restartCount": 0,
                    "started": True,
                    "state": {"running": {"startedAt": "2026-01-01T00:00:00Z"}},
                }
                for c, cid in containers.items()
            ]
        _set_ready(pod, ready)
        self.pods.setdefault(namespace, {})[name] = pod
        return pod

    def add_deployment(
        self,
        namespace: str,
        name: str,
        replicas: int,
        *,
        labels: dict[str, str] | None = None,
        ready_delay: float = 0.0,
        node_name: str = "node-1",
    ) -> ReplicaSet:
        """A Deployment of ``replicas`` Ready pods (labels default ``app=<name>``) behind a ReplicaSet whose
        replacement pods become Ready ``ready_delay`` seconds after they are created."""
        template = f"{random.Random(name).randrange(16**9):09x}"
        owned = ReplicaSet(
            namespace, name, f"{name}-{template}", str(uuid.uuid4()), labels or {"app": name}, ready_delay, node_name
        )
        self.replica_sets[(namespace, name)] = owned
        self.replicas[(namespace, name)] = replicas
        for _ in range(replicas):
            self.add_pod(namespace, self._pod_name(owned), dict(owned.labels), owner=owned, node_name=node_name)
        return owned

    def _pod_name(self, owner: ReplicaSet) -> str:
        taken = self.pods.get(owner.namespace, {})
        while True:
            name = f"{owner.name}-{''.join(random.choice(_SUFFIX) for _ in range(5))}"
            if name not in taken:
                return name

    def owned_pods(self, owner: ReplicaSet) -> list[dict[str, Any]]:
        """The pods ``owner`` controls, oldest first (the order they were added in)."""
        pods = self.pods.get(owner.namespace, {}).values()
        return [p for p in pods if any(r.get("uid") == owner.uid for r in p["metadata"].get("ownerReferences", []))]

    def reconcile(self, now: float | None = None) -> None:
        """What the ReplicaSet controller and the kubelet would have done by ``now`` (monotonic):
        as many pods as ``spec.replicas`` (new ones Pending, scale-down takes the newest), and
        each Pending pod Ready once its delay passed."""
        now = time.monotonic() if now is None else now
        for key, owner in self.replica_sets.items():
            pods = self.owned_pods(owner)
            want = self.replicas.get(key, 0)
            for extra in pods[want:][::-1]:
                del self.pods[owner.namespace][extra["metadata"]["name"]]
                owner.ready_at.pop(extra["metadata"]["name"], None)
            for _ in range(want - len(pods)):
                name = self._pod_name(owner)
                new = self.add_pod(
                    owner.namespace, name, dict(owner.labels), owner=owner, ready=False, node_name=owner.node_name
                )
                owner.ready_at[new["metadata"]["name"]] = now + owner.ready_delay
            for name, at in list(owner.ready_at.items()):
                pending = self.pods.get(owner.namespace, {}).get(name)
                if pending is None:
                    del owner.ready_at[name]
                elif at <= now:
                    _set_ready(pending, True)
                    del owner.ready_at[name]

    def deployment_status(self, namespace: str, name: str) -> dict[str, int]:
        """``status`` of a Deployment: its pods (a deployment without a ReplicaSet: all replicas ready)."""
        owner = self.replica_sets.get((namespace, name))
        if owner is None:
            n = self.replicas[(namespace, name)]
            return {"replicas": n, "readyReplicas": n, "availableReplicas": n, "updatedReplicas": n}
        pods = self.owned_pods(owner)
        ready = sum(1 for p in pods if _is_ready(p))
        return {"replicas": len(pods), "readyReplicas": ready, "availableReplicas": ready, "updatedReplicas": len(pods)}


def _set_ready(pod: dict[str, Any], ready: bool) -> None:
    """Pending and not Ready, or Running and Ready (conditions as the kubelet reports them)."""
    flag = "True" if ready else "False"
    for container in pod["status"].get("containerStatuses", []):
        container["ready"] = container["started"] = ready
        container["state"] = {"running": {"startedAt": "2026-01-01T00:00:00Z"}} if ready else {"waiting": {}}
    pod["status"] = {
        **pod["status"],
        "phase": "Running" if ready else "Pending",
        "conditions": [
            {"type": "PodScheduled", "status": "True"},
            {"type": "Initialized", "status": "True"},
            {"type": "ContainersReady", "status": flag},
            {"type": "Ready", "status": flag},
        ],
    }


def _is_ready(pod: dict[str, Any]) -> bool:
    return any(c["type"] == "Ready" and c["status"] == "True" for c in pod["status"].get("conditions", []))


# ---------------------------------------------------------------- label selectors (server side)


def _split(selector: str) -> list[str]:
    parts, depth, start = [], 0, 0
    for i, char in enumerate(selector):
        depth += {"(": 1, ")": -1}.get(char, 0)
        if char == "," and depth == 0:
            parts.append(selector[start:i].strip())
            start = i + 1
    parts.append(selector[start:].strip())
    return [p for p in parts if p]


_SET = re.compile(r"^(?P<key>\S+)\s+(?P<op>in|notin)\s*\((?P<values>[^()]*)\)$")


def selector_matches(selector: str, labels: dict[str, str]) -> bool:
    """Does ``labels`` satisfy every requirement of ``selector``? (as labels.Parse does)"""
    for req in _split(selector):
        match = _SET.match(req)
        if match is not None:
            key, op = match["key"], match["op"]
            inside = key in labels and labels[key] in {v.strip() for v in match["values"].split(",")}
            if (op == "in" and not inside) or (op == "notin" and inside):
                return False
        elif "!=" in req:
            key, value = (s.strip() for s in req.split("!=", 1))
            if labels.get(key) == value:
                return False
        elif "=" in req:
            key, value = (s.strip() for s in req.replace("==", "=").split("=", 1))
            if labels.get(key) != value:
                return False
        elif req.startswith("!"):
            if req[1:].strip() in labels:
                return False
        elif req not in labels:
            return False
    return True


# ---------------------------------------------------------------- the server


def _status(code: int, reason: str, message: str, details: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "details": details or {},
        "code": code,
    }


class FakeApiServer:
    """Serves a :class:`Cluster` on 127.0.0.1:<free port> until :meth:`close`."""

    def __init__(self, cluster: Cluster | None = None) -> None:
        self.cluster = cluster or Cluster()
        self.requests: list[Request] = []
        self._lock = threading.Lock()
        double = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:  # keep pytest output clean
                pass

            def _serve(self) -> None:
                parts = urlsplit(self.path)
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                body = json.loads(raw) if raw else None
                content_type = (self.headers.get("Content-Type") or "").split(";")[0].strip()
                request = Request(self.command, parts.path, parse_qs(parts.query), content_type, body)
                with double._lock:
                    double.requests.append(request)
                    double.cluster.reconcile()
                    code, payload = double._route(request)
                data = json.dumps(payload).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_DELETE = do_PATCH = do_POST = do_PUT = _serve

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, name="k8s-api-double", daemon=True
        )
        self._thread.start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    # ------------------------------------------------------------ what tests look at

    def mutating(self) -> list[Request]:
        """Every request that could have changed something."""
        with self._lock:
            return [r for r in self.requests if r.method in MUTATING]

    def deletes(self) -> list[Request]:
        with self._lock:
            return [r for r in self.requests if r.method == "DELETE"]

    def write_kubeconfig(self, path: Path, contexts: list[str], current: str) -> Path:
        """A kubeconfig whose every context points at this server (token auth, plain HTTP)."""
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "double", "cluster": {"server": self.url}}],
            "users": [{"name": "tester", "user": {"token": "test-token"}}],
            "contexts": [{"name": c, "context": {"cluster": "double", "user": "tester"}} for c in contexts],
            "current-context": current,
        }
        path.write_text(yaml.safe_dump(config))
        return path

    # ------------------------------------------------------------ routes

    def _route(self, r: Request) -> tuple[int, dict[str, Any]]:
        seg = [s for s in r.path.split("/") if s]
        c = self.cluster
        if seg[:3] == ["api", "v1", "namespaces"] and len(seg) >= 4:
            ns = seg[3]
            if ns not in c.namespaces:
                return 404, _status(404, "NotFound", f'namespaces "{ns}" not found', {"name": ns, "kind": "namespaces"})
            if len(seg) == 4 and r.method == "GET":
                return 200, self._namespace(ns)
            if len(seg) == 5 and seg[4] == "pods" and r.method == "GET":
                selector = (r.query.get("labelSelector") or [""])[0]
                items = [p for p in c.pods.get(ns, {}).values() if selector_matches(selector, p["metadata"]["labels"])]
                return 200, {
                    "kind": "PodList",
                    "apiVersion": "v1",
                    "metadata": {"resourceVersion": "7"},
                    "items": items,
                }
            if len(seg) == 6 and seg[4] == "pods" and r.method == "DELETE":
                return self._delete_pod(ns, seg[5], r.body or {})
        if seg[:4] == ["apis", "apps", "v1", "namespaces"] and len(seg) == 7 and seg[5] == "deployments":
            ns, name = seg[4], seg[6]
            if (ns, name) not in c.replicas or r.method != "GET":
                return 404, _status(
                    404, "NotFound", f'deployments.apps "{name}" not found', {"name": name, "kind": "deployments"}
                )
            return 200, self._deployment(ns, name)
        if seg[:4] == ["apis", "apps", "v1", "namespaces"] and len(seg) == 8 and seg[5:8:2] == ["deployments", "scale"]:
            ns, name = seg[4], seg[6]
            if (ns, name) not in c.replicas:
                return 404, _status(
                    404, "NotFound", f'deployments.apps "{name}" not found', {"name": name, "kind": "deployments"}
                )
            if r.method == "GET":
                return 200, self._scale(ns, name)
            if r.method == "PATCH":
                if r.content_type not in PATCH_TYPES:
                    return 415, _status(415, "UnsupportedMediaType", "the body of the request was in an unknown format")
                replicas = ((r.body or {}).get("spec") or {}).get("replicas")
                if not isinstance(replicas, int) or replicas < 0:
                    return 422, _status(422, "Invalid", "spec.replicas: Invalid value")
                c.replicas[(ns, name)] = replicas
                c.reconcile()
                return 200, self._scale(ns, name)
        return 404, _status(404, "NotFound", "the server could not find the requested resource")

    def _namespace(self, ns: str) -> dict[str, Any]:
        return {
            "kind": "Namespace",
            "apiVersion": "v1",
            "metadata": {"name": ns, "uid": f"ns-{ns}", "resourceVersion": "1", "labels": self.cluster.namespaces[ns]},
            "spec": {"finalizers": ["kubernetes"]},
            "status": {"phase": "Active"},
        }

    def _delete_pod(self, ns: str, name: str, options: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        pods = self.cluster.pods.get(ns, {})
        if name not in pods:
            return 404, _status(404, "NotFound", f'pods "{name}" not found', {"name": name, "kind": "pods"})
        pod = pods[name]
        uid = ((options.get("preconditions") or {}).get("uid")) or None
        if uid is not None and uid != pod["metadata"]["uid"]:
            return 409, _status(
                409,
                "Conflict",
                f"Precondition failed: UID in precondition: {uid}, UID in object meta: {pod['metadata']['uid']}",
                {"name": name, "kind": "pods"},
            )
        del pods[name]
        self.cluster.reconcile()  # its ReplicaSet, if it has one, replaces it at once
        return 200, pod

    def _deployment(self, ns: str, name: str) -> dict[str, Any]:
        owner = self.cluster.replica_sets.get((ns, name))
        labels = owner.labels if owner is not None else {"app": name}
        return {
            "kind": "Deployment",
            "apiVersion": "apps/v1",
            "metadata": {"name": name, "namespace": ns, "uid": f"deploy-{ns}-{name}", "generation": 1},
            "spec": {
                "replicas": self.cluster.replicas[(ns, name)],
                "selector": {"matchLabels": labels},
                "template": {
                    "metadata": {"labels": labels},
                    "spec": {"containers": [{"name": "app", "image": "registry.example/app:1"}]},
                },
            },
            "status": {"observedGeneration": 1, **self.cluster.deployment_status(ns, name)},
        }

    def _scale(self, ns: str, name: str) -> dict[str, Any]:
        replicas = self.cluster.replicas[(ns, name)]
        return {
            "kind": "Scale",
            "apiVersion": "autoscaling/v1",
            "metadata": {"name": name, "namespace": ns, "uid": f"deploy-{ns}-{name}", "resourceVersion": "3"},
            "spec": {"replicas": replicas},
            "status": {"replicas": replicas, "selector": f"app={name}"},
        }
