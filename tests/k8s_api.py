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
  ``application/strategic-merge-patch+json`` (415 for anything else, e.g. JSON Patch).

Every request is recorded (method, path, query, content type, body) so a test can assert
that nothing changing anything was sent. Anything else answers 404 with a Status body.
"""

from __future__ import annotations

import json
import re
import threading
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


@dataclass
class Cluster:
    """The objects the double serves. Tests edit these directly to arrange a scene."""

    namespaces: dict[str, dict[str, str]] = field(default_factory=dict)  # name -> labels
    pods: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)  # ns -> name -> Pod
    replicas: dict[tuple[str, str], int] = field(default_factory=dict)  # (ns, deployment) -> spec.replicas

    def add_namespace(self, name: str, labels: dict[str, str] | None = None) -> None:
        self.namespaces[name] = {"kubernetes.io/metadata.name": name, **(labels or {})}

    def add_pod(
        self,
        namespace: str,
        name: str,
        labels: dict[str, str],
        *,
        terminating: bool = False,
        uid: str | None = None,
        node_name: str = "node-1",
        containers: dict[str, str] | None = None,
        pod_ip: str = "10.0.0.1",
    ) -> None:
        """A Running pod; ``containers`` (name -> containerd ID) are listed in status.containerStatuses."""
        meta: dict[str, Any] = {
            "name": name,
            "namespace": namespace,
            "uid": uid or str(uuid.uuid4()),
            "resourceVersion": "1",
            "creationTimestamp": "2026-01-01T00:00:00Z",
            "labels": labels,
        }
        if terminating:
            meta["deletionTimestamp"] = "2026-01-01T00:01:00Z"
            meta["deletionGracePeriodSeconds"] = 30
        self.pods.setdefault(namespace, {})[name] = {
            "kind": "Pod",
            "apiVersion": "v1",
            "metadata": meta,
            "spec": {
                "containers": [{"name": c, "image": "registry.example/app:1"} for c in (containers or {"app": ""})],
                "nodeName": node_name,
            },
            "status": {"phase": "Running", "podIP": pod_ip},
        }
        if containers:
            self.pods[namespace][name]["status"]["containerStatuses"] = [
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
        return 200, pod

    def _scale(self, ns: str, name: str) -> dict[str, Any]:
        replicas = self.cluster.replicas[(ns, name)]
        return {
            "kind": "Scale",
            "apiVersion": "autoscaling/v1",
            "metadata": {"name": name, "namespace": ns, "uid": f"deploy-{ns}-{name}", "resourceVersion": "3"},
            "spec": {"replicas": replicas},
            "status": {"replicas": replicas, "selector": f"app={name}"},
        }
