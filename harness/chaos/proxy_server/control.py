"""The fault proxy's control API (JSON over HTTP, a WSGI app): health, and faults added and removed
by name while traffic flows (see the package docstring for the routes and answers)."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable
from dataclasses import asdict
from typing import Any

from harness.chaos.proxy_server.forward import Proxy
from harness.chaos.proxy_server.spec import validate
from harness.chaos.proxy_server.workers import Workers

__all__ = ["ControlApi"]

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,299}$")


class ControlApi:
    """The WSGI app of one :class:`Proxy`'s control address."""

    def __init__(self, proxy: Proxy, workers: Workers | None = None) -> None:
        self.proxy = proxy
        self.workers = workers or Workers()

    def health(self) -> dict[str, Any]:
        """Counters summed over every process of the proxy."""
        proxy = self.proxy
        total = dict(asdict(proxy.stats))
        others = self.workers.counters()
        for counters in others:
            for key, value in counters.items():
                total[key] = total.get(key, 0) + value
        return {
            "status": "ok",
            "listen": proxy.listen,
            "upstream": proxy.upstream,
            "faults": len(proxy.faults),
            "workers": 1 + len(self.workers.pids),
            "workers_answering": 1 + len(others),
            **{k: total[k] for k in ("requests", "aborted", "reset")},
            "bytes": total["bytes_up"] + total["bytes_down"],
            **{k: total[k] for k in ("bytes_up", "bytes_down", "connections", "active_connections")},
            "upstream_errors": total["upstream_errors"],
            "uptime": round(time.monotonic() - proxy.started, 3),
        }

    def _everywhere(self) -> str | None:
        """Hand the control process's faults to every worker; why not, when one did not confirm."""
        try:
            self.workers.broadcast(self.proxy.faults)
        except (OSError, TimeoutError) as exc:
            return f"not every proxy process took the change: {exc}"
        return None

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        method, path = environ.get("REQUEST_METHOD", "GET"), environ.get("PATH_INFO", "/")

        def answer(status: str, payload: Any = None) -> list[bytes]:
            body = b"" if payload is None else json.dumps(payload).encode() + b"\n"
            headers = [("Content-Length", str(len(body)))]
            if payload is not None:
                headers.append(("Content-Type", "application/json"))
            start_response(status, headers)
            return [body]

        if path == "/health" and method == "GET":
            return answer("200 OK", self.health())
        if path == "/faults":
            if method == "GET":
                return answer("200 OK", {"faults": self.proxy.faults})
            if method == "DELETE":
                self.proxy.delete_fault(None)
                failed = self._everywhere()
                return answer("500 Internal Server Error", {"error": failed}) if failed else answer("204 No Content")
            return answer("405 Method Not Allowed", {"error": "GET or DELETE"})
        if not path.startswith("/faults/"):
            return answer("404 Not Found", {"error": f"no such resource {path}"})
        name = path[len("/faults/") :]
        if not _NAME.match(name):
            return answer("400 Bad Request", {"error": f"bad fault name {name!r}"})
        if method == "GET":
            found = self.proxy.faults.get(name)
            return answer("200 OK", {name: found}) if found else answer("404 Not Found", {"error": "no such fault"})
        if method == "DELETE":
            deleted = self.proxy.delete_fault(name)
            failed = self._everywhere() if deleted else None
            if failed:
                return answer("500 Internal Server Error", {"error": failed})
            return answer("204 No Content") if deleted else answer("404 Not Found", {"error": "none"})
        if method != "PUT":
            return answer("405 Method Not Allowed", {"error": "GET, PUT or DELETE"})
        try:
            length = int(environ.get("CONTENT_LENGTH") or 0)
            if not 0 < length <= 65536:
                raise ValueError("a JSON body of at most 64 KiB is required")
            spec = validate(json.loads(environ["wsgi.input"].read(length)))
        except ValueError as exc:  # json.JSONDecodeError is a ValueError
            return answer("400 Bad Request", {"error": str(exc)})
        created = self.proxy.set_fault(name, spec)
        failed = self._everywhere()  # answered only once every process has the fault
        if failed:
            return answer("500 Internal Server Error", {"error": failed})
        return answer("201 Created" if created else "200 OK", {name: spec})
