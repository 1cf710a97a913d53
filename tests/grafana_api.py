"""A test double of Grafana's HTTP API: the ``/api`` subset ``harness grafana push`` uses.

No Grafana server can run on these machines, so push is exercised over real HTTP on loopback
against this server. It answers with the status codes and JSON bodies of Grafana 10/11's
handlers (pkg/api/datasources.go, folder.go, dashboard.go, apierrors, web.Bind):

* every ``/api`` request needs ``Authorization: Bearer <token>``: none -> 401
  ``{"message": "Unauthorized"}``; another token -> 401 ``{"message": "Invalid API key", ...}``;
* ``GET /api/datasources/uid/{uid}``: the datasource (secrets never returned, only
  ``secureJsonFields``) or 404 ``{"message": "Data source not found"}``;
* ``POST /api/datasources``: 400 ``bad request data`` without name, type or access (their
  ``binding:"Required"``) or on broken JSON; 400 for an unparsable URL; 409 when the name or
  uid is taken; else 200 ``{"datasource", "id", "message": "Datasource added", "name"}``;
* ``PUT /api/datasources/uid/{uid}``: same validation, 404 when unknown, 403 for a
  provisioned (read-only) one, 409 for another datasource's name; secureJsonData is merged
  (a secret not sent is kept), the version goes up; 200 ``"Datasource updated"``;
* ``GET /api/folders/{uid}``: the folder or 404 ``{"status": "not-found", "message": "folder not found"}``;
* ``POST /api/folders``: 400 for an empty title or a bad uid, 409 for a taken uid;
* ``POST /api/dashboards/db``: 400 ``bad request data`` without a ``dashboard`` object; 400
  ``{"status": "empty-name", ...}`` without a title; 400 for a uid with illegal characters or
  over 40; 400 ``folder not found`` for an unknown folderUid; 404 for an unknown numeric id;
  without ``overwrite``: 412 ``version-mismatch`` for an existing uid at another version and 412
  ``name-exists`` for the same title in the folder (with ``overwrite``, the dashboard of that
  title is saved over and keeps its uid); else 200 ``{"id", "uid", "url", "status":
  "success", "version", "slug", "folderUid"}``. As Grafana does, a dashboard without a uid gets
  a generated one (so callers that need a stable URL must send their own).

Every request is recorded (method, path, query, headers, parsed body). ``stall_s`` delays
every answer (to test client timeouts). Anything else answers 404 ``{"message": "Not found"}``.
"""

from __future__ import annotations

import copy
import json
import re
import secrets
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

_UID_OK = re.compile(r"^[a-zA-Z0-9_-]*$")


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: Any  # parsed JSON, the raw text when it is not JSON, None when empty

    @property
    def raw(self) -> str:
        """Everything the client sent except the Authorization header, as text."""
        headers = {k: v for k, v in self.headers.items() if k.lower() != "authorization"}
        return json.dumps([self.method, self.path, self.query, headers, self.body])


@dataclass
class GrafanaState:
    """The objects the double holds. Tests may edit them to arrange a scene."""

    datasources: dict[str, dict[str, Any]] = field(default_factory=dict)  # uid -> stored datasource
    secure: dict[str, dict[str, str]] = field(default_factory=dict)  # uid -> secureJsonData (plain)
    folders: dict[str, dict[str, Any]] = field(default_factory=dict)  # uid -> folder
    dashboards: dict[str, dict[str, Any]] = field(default_factory=dict)  # uid -> {dashboard, folderUid, ...}
    next_id: int = 1

    def new_id(self) -> int:
        self.next_id += 1
        return self.next_id - 1


def slugify(title: str) -> str:
    """Grafana's slug of a title: lower case, runs of anything else than letters and digits -> '-'."""
    return re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-")


class GrafanaDouble:
    """The server: ``with GrafanaDouble(token="...") as grafana: ... grafana.url ...``."""

    def __init__(self, token: str = "glsa_test_token_0123456789", *, stall_s: float = 0.0) -> None:
        self.token = token
        self.stall_s = stall_s
        self.state = GrafanaState()
        self.requests: list[Request] = []
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, name="grafana-double", daemon=True
        )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def __enter__(self) -> GrafanaDouble:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def add_provisioned_datasource(self, uid: str, name: str) -> None:
        """A datasource from a provisioning file: Grafana marks it read-only."""
        self.state.datasources[uid] = _stored_datasource(
            self.state.new_id(), {"uid": uid, "name": name, "type": "influxdb", "access": "proxy"}, read_only=True
        )

    def calls(self) -> list[tuple[str, str]]:
        return [(r.method, r.path) for r in self.requests]

    # ------------------------------------------------------------------ routing

    def handle(self, method: str, path: str, headers: dict[str, str], body: Any) -> tuple[int, Any]:
        with self._lock:
            return self._route(method, path, headers, body)

    def _route(self, method: str, path: str, headers: dict[str, str], body: Any) -> tuple[int, Any]:
        if not path.startswith("/api/"):
            return 404, {"message": "Not found"}
        auth = headers.get("authorization", "")
        if not auth:
            return 401, {"message": "Unauthorized"}
        if auth != f"Bearer {self.token}":
            return 401, {"message": "Invalid API key", "messageId": "api-key.invalid", "statusCode": 401, "traceID": ""}
        if isinstance(body, str):  # not JSON: web.Bind fails to decode it
            return 400, {"message": "bad request data"}
        parts = [unquote(p) for p in path.split("/")[2:]]
        if parts[:2] == ["datasources", "uid"] and len(parts) == 3:
            if method == "GET":
                return self._get_datasource(parts[2])
            if method == "PUT":
                return self._update_datasource(parts[2], body)
        if parts == ["datasources"] and method == "POST":
            return self._add_datasource(body)
        if parts[:1] == ["folders"] and len(parts) == 2 and method == "GET":
            return self._get_folder(parts[1])
        if parts == ["folders"] and method == "POST":
            return self._add_folder(body)
        if parts == ["dashboards", "db"] and method == "POST":
            return self._save_dashboard(body)
        return 404, {"message": "Not found"}

    # ------------------------------------------------------------------ datasources

    def _get_datasource(self, uid: str) -> tuple[int, Any]:
        stored = self.state.datasources.get(uid)
        if stored is None:
            return 404, {"message": "Data source not found"}
        return 200, copy.deepcopy(stored)

    @staticmethod
    def _bind_datasource(body: Any) -> str | None:
        """web.Bind: a JSON object whose name, type and access are not empty."""
        if not isinstance(body, dict):
            return "bad request data"
        if any(not isinstance(body.get(key), str) or not body.get(key) for key in ("name", "type", "access")):
            return "bad request data"
        url = body.get("url") or ""
        if not isinstance(url, str):
            return "bad request data"
        try:
            urlsplit(url).port  # noqa: B018 - raises for a broken host:port, as Go's url.Parse does
        except ValueError:
            return "Validation error, invalid URL"
        return None

    def _add_datasource(self, body: Any) -> tuple[int, Any]:
        problem = self._bind_datasource(body)
        if problem:
            return 400, {"message": problem}
        uid = body.get("uid") or secrets.token_hex(7)
        if any(ds["name"] == body["name"] for ds in self.state.datasources.values()):
            return 409, {"message": "data source with the same name already exists"}
        if uid in self.state.datasources:
            return 409, {"message": "data source with the same uid already exists"}
        ds_id = self.state.new_id()
        self.state.secure[uid] = dict(body.get("secureJsonData") or {})
        stored = _stored_datasource(ds_id, {**body, "uid": uid}, secure=self.state.secure[uid])
        self.state.datasources[uid] = stored
        return 200, {
            "datasource": copy.deepcopy(stored),
            "id": ds_id,
            "message": "Datasource added",
            "name": body["name"],
        }

    def _update_datasource(self, uid: str, body: Any) -> tuple[int, Any]:
        problem = self._bind_datasource(body)
        if problem:
            return 400, {"message": problem}
        stored = self.state.datasources.get(uid)
        if stored is None:
            return 404, {"message": "Data source not found"}
        if stored["readOnly"]:
            return 403, {"message": "Cannot update read-only data source"}
        if any(other_uid != uid and ds["name"] == body["name"] for other_uid, ds in self.state.datasources.items()):
            return 409, {"message": "Failed to update datasource: data source with the same name already exists"}
        secure = self.state.secure.setdefault(uid, {})
        secure.update(body.get("secureJsonData") or {})
        updated = _stored_datasource(stored["id"], {**body, "uid": uid}, secure=secure, version=stored["version"] + 1)
        self.state.datasources[uid] = updated
        return 200, {
            "datasource": copy.deepcopy(updated),
            "id": stored["id"],
            "message": "Datasource updated",
            "name": body["name"],
        }

    # ------------------------------------------------------------------ folders

    def _get_folder(self, uid: str) -> tuple[int, Any]:
        folder = self.state.folders.get(uid)
        if folder is None:
            return 404, {"status": "not-found", "message": "folder not found"}
        return 200, copy.deepcopy(folder)

    def _add_folder(self, body: Any) -> tuple[int, Any]:
        if not isinstance(body, dict):
            return 400, {"message": "bad request data"}
        title = body.get("title")
        if not isinstance(title, str) or not title.strip():
            return 400, {"message": "folder title cannot be empty"}
        uid = body.get("uid") or secrets.token_hex(7)
        if not isinstance(uid, str) or not _UID_OK.match(uid):
            return 400, {"message": "uid contains illegal characters"}
        if len(uid) > 40:
            return 400, {"message": "uid too long, max 40 characters"}
        if uid in self.state.folders or uid in self.state.dashboards:
            return 409, {"message": "a folder or dashboard with the same uid already exists"}
        now = "2026-01-01T00:00:00Z"
        folder = {
            "id": self.state.new_id(),
            "uid": uid,
            "title": title,
            "url": f"/dashboards/f/{uid}/{slugify(title)}",
            "hasAcl": False,
            "canSave": True,
            "canEdit": True,
            "canAdmin": True,
            "canDelete": True,
            "createdBy": "sa-harness",
            "created": now,
            "updatedBy": "sa-harness",
            "updated": now,
            "version": 1,
        }
        self.state.folders[uid] = folder
        return 200, copy.deepcopy(folder)

    # ------------------------------------------------------------------ dashboards

    def _save_dashboard(self, body: Any) -> tuple[int, Any]:
        if not isinstance(body, dict) or not isinstance(body.get("dashboard"), dict):
            return 400, {"message": "bad request data"}
        dashboard = copy.deepcopy(body["dashboard"])
        title = dashboard.get("title")
        if not isinstance(title, str) or not title.strip():
            return 400, {"status": "empty-name", "message": "Dashboard title cannot be empty"}
        uid = dashboard.get("uid") or ""
        if not isinstance(uid, str) or not _UID_OK.match(uid):
            return 400, {"message": "uid contains illegal characters"}
        if len(uid) > 40:
            return 400, {"message": "uid too long, max 40 characters"}
        folder_uid = body.get("folderUid") or ""
        if folder_uid and folder_uid not in self.state.folders:
            return 400, {"message": "folder not found"}
        overwrite = bool(body.get("overwrite"))
        existing = self.state.dashboards.get(uid) if uid else None
        dash_id = dashboard.get("id")
        if dash_id not in (None, 0) and (existing is None or existing["id"] != dash_id):
            return 404, {"status": "not-found", "message": "Dashboard not found"}
        if existing is not None and not overwrite and dashboard.get("version") != existing["version"]:
            return 412, {"status": "version-mismatch", "message": "The dashboard has been changed by someone else"}
        for other_uid, other in self.state.dashboards.items():
            same_place = other["folderUid"] == folder_uid and other["dashboard"]["title"] == title
            if other_uid != uid and same_place:
                if not overwrite:
                    return 412, {
                        "status": "name-exists",
                        "message": "A dashboard with the same name in the folder already exists",
                    }
                # With overwrite, Grafana saves over the dashboard it collides with, keeping that
                # one's uid: the caller learns the uid from the answer.
                uid, existing = other_uid, other
                break
        if not uid:
            uid = secrets.token_hex(7)
        version = existing["version"] + 1 if existing else 1
        stored_id = existing["id"] if existing else self.state.new_id()
        dashboard.update({"id": stored_id, "uid": uid, "version": version})
        slug = slugify(title)
        self.state.dashboards[uid] = {
            "dashboard": dashboard,
            "folderUid": folder_uid,
            "id": stored_id,
            "version": version,
            "message": body.get("message", ""),
        }
        return 200, {
            "id": stored_id,
            "uid": uid,
            "url": f"/d/{uid}/{slug}",
            "status": "success",
            "version": version,
            "slug": slug,
            "folderUid": folder_uid,
        }


def _stored_datasource(
    ds_id: int,
    body: dict[str, Any],
    *,
    secure: dict[str, str] | None = None,
    version: int = 1,
    read_only: bool = False,
) -> dict[str, Any]:
    """The datasource as Grafana returns it: secrets only as secureJsonFields flags."""
    return {
        "id": ds_id,
        "uid": body["uid"],
        "orgId": 1,
        "name": body["name"],
        "type": body["type"],
        "typeLogoUrl": f"public/app/plugins/datasource/{body['type']}/img/logo.svg",
        "access": body["access"],
        "url": body.get("url", ""),
        "user": body.get("user", ""),
        "database": body.get("database", ""),
        "basicAuth": bool(body.get("basicAuth")),
        "basicAuthUser": body.get("basicAuthUser", ""),
        "withCredentials": bool(body.get("withCredentials")),
        "isDefault": bool(body.get("isDefault")),
        "jsonData": copy.deepcopy(body.get("jsonData") or {}),
        "secureJsonFields": {key: True for key in (secure or {})},
        "version": version,
        "readOnly": read_only,
    }


def _handler(double: GrafanaDouble) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:  # quiet
            pass

        def _serve(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length).decode("utf-8", "replace") if length else ""
            body: Any = None
            if raw:
                try:
                    body = json.loads(raw)
                except ValueError:
                    body = raw
            parts = urlsplit(self.path)
            headers = {k.lower(): v for k, v in self.headers.items()}
            double.requests.append(Request(self.command, parts.path, parse_qs(parts.query), headers, body))
            if double.stall_s:
                time.sleep(double.stall_s)
            status, answer = double.handle(self.command, parts.path, headers, body)
            data = json.dumps(answer).encode()
            try:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client gave up (a timeout test)

        do_GET = do_POST = do_PUT = do_DELETE = _serve

    return Handler
