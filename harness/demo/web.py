"""A tiny WSGI framework for the demo shop's services: requests, JSON responses, a route table.

Handlers take a :class:`Request` (and the route's named groups) and return a :class:`Response`;
:func:`abort` ends a request with an error status. Every answer is JSON with a Content-Length,
which keeps pywsgi's keep-alive connections alive. Nothing here patches or needs a patched gevent.
"""

from __future__ import annotations

import http
import json
import os
import re
import sys
import time
import urllib.parse
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, NoReturn, Protocol

__all__ = [
    "HOST",
    "JSON",
    "MAX_BODY",
    "MAX_HEADER",
    "SESSION",
    "UNMATCHED",
    "App",
    "Handler",
    "Request",
    "RequestObserver",
    "Response",
    "Route",
    "abort",
    "error_response",
    "health_handler",
    "int_field",
    "json_response",
    "log",
]

JSON = dict[str, Any]
HOST = "127.0.0.1"
MAX_BODY = 1 << 20  # nothing in the shop needs more; refuse rather than buffer unbounded input
MAX_HEADER = 64 * 1024

_STATUS_LINES = {s.value: f"{s.value} {s.phrase}" for s in http.HTTPStatus}


def log(service: str, message: str) -> None:
    """One line to stderr, which the supervisor sends to ``<name>.log``.

    Plain writes rather than :mod:`logging`: ``logging`` imports ``threading`` before gevent is
    patched, and a service only logs a handful of lifecycle lines (no access log: at thousands of
    requests per second it would only fill the disk).
    """
    stamp = time.strftime("%Y-%m-%d %H:%M:%S")
    sys.stderr.write(f"{stamp} {service}[{os.getpid()}] {message}\n")
    sys.stderr.flush()


class _HTTPError(Exception):
    """Raised by :func:`abort` and caught by :class:`App`: an error status with a JSON body."""

    def __init__(self, status: int, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.extra = extra


@dataclass(frozen=True, slots=True)
class Request:
    """What a handler needs from a WSGI environ, read once."""

    method: str
    path: str
    query: str
    body: bytes

    def arg(self, name: str, default: str = "") -> str:
        """One query-string argument (the first if repeated)."""
        values = urllib.parse.parse_qs(self.query, keep_blank_values=True).get(name)
        return values[0] if values else default

    def json(self) -> JSON:
        """The body as a JSON object, or a 400 that says what is wrong with it."""
        try:
            payload = json.loads(self.body or b"{}")
        except ValueError as exc:
            abort(400, f"body is not valid JSON: {exc}")
        if not isinstance(payload, dict):
            abort(400, "body must be a JSON object")
        return payload


@dataclass(frozen=True, slots=True)
class Response:
    """A status and an already-encoded body (JSON unless said: the gateway passes bodies through)."""

    status: int
    body: bytes
    content_type: str = "application/json"


def abort(status: int, message: str, **extra: Any) -> NoReturn:
    """End the request with ``status`` and a JSON ``{"error": message, **extra}`` body."""
    raise _HTTPError(status, message, **extra)


def json_response(payload: Any, status: int = 200) -> Response:
    return Response(status, json.dumps(payload, separators=(",", ":")).encode())


def error_response(status: int, message: str, **extra: Any) -> Response:
    return json_response({"error": message, **extra}, status)


Handler = Callable[..., Response]

#: The route label of a request that matched no route (so a scan of random paths adds one series).
UNMATCHED = "unmatched"
_GROUP = re.compile(r"\(\?P<(\w+)>[^)]*\)")


@dataclass(frozen=True, slots=True)
class Route:
    """One entry of the route table. ``name`` is the pattern with each named group written
    ``{group}`` (``/api/cart/{session}/items``): the low-cardinality label metrics use."""

    method: str
    pattern: re.Pattern[str]
    handler: Handler
    name: str


class RequestObserver(Protocol):
    """Told about every request an :class:`App` answers (the demo's Prometheus metrics)."""

    def started(self, method: str, route: str) -> None: ...

    def finished(self, method: str, route: str, status: int, seconds: float) -> None: ...


@dataclass
class App:
    """A WSGI application over a route table of ``(method, regex, handler)``.

    Path parameters are the regex's named groups, passed to the handler as keyword arguments.
    Every answer has a Content-Length, which is what keeps pywsgi connections alive. An
    ``observer`` (None: none) is told when each request starts and how it ended.
    """

    service: str
    routes: list[Route] = field(default_factory=list)
    observer: RequestObserver | None = None

    def add(self, method: str, pattern: str, handler: Handler) -> None:
        name = _GROUP.sub(lambda group: "{" + group.group(1) + "}", pattern)
        self.routes.append(Route(method, re.compile(pattern + r"\Z"), handler, name))

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        response = self.dispatch(environ)
        start_response(
            _STATUS_LINES.get(response.status, f"{response.status} Unknown"),
            [("Content-Type", response.content_type), ("Content-Length", str(len(response.body)))],
        )
        return [response.body]

    def dispatch(self, environ: dict[str, Any]) -> Response:
        method = environ["REQUEST_METHOD"]
        path = environ.get("PATH_INFO") or "/"
        route, params = self._route(method, path)
        observer = self.observer
        if observer is None:
            return self._answer(route, params, method, path, environ)
        name = route.name if route is not None else UNMATCHED
        observer.started(method, name)
        started = time.perf_counter()
        response = self._answer(route, params, method, path, environ)
        observer.finished(method, name, response.status, time.perf_counter() - started)
        return response

    def _answer(
        self, route: Route | None, params: dict[str, str], method: str, path: str, environ: dict[str, Any]
    ) -> Response:
        try:
            if route is None:
                self._refuse(method, path)
            request = Request(method, path, environ.get("QUERY_STRING", ""), _read_body(environ))
            return route.handler(request, **params)
        except _HTTPError as exc:
            return error_response(exc.status, exc.message, **exc.extra)
        except Exception as exc:  # a bug must answer 500, not drop the keep-alive connection
            log(self.service, f"internal error on {method} {path}: {exc!r}")
            return error_response(500, "internal error")

    def _route(self, method: str, path: str) -> tuple[Route | None, dict[str, str]]:
        for route in self.routes:
            if route.method == method and (found := route.pattern.match(path)) is not None:
                return route, found.groupdict()
        return None, {}

    def _refuse(self, method: str, path: str) -> NoReturn:
        """405 when the path exists under another method, else 404."""
        if any(route.pattern.match(path) for route in self.routes):
            abort(405, f"method {method} not allowed on {path}")
        abort(404, f"no such endpoint: {path}")


def _read_body(environ: dict[str, Any]) -> bytes:
    try:
        length = int(environ.get("CONTENT_LENGTH") or 0)
    except ValueError:
        abort(400, "invalid Content-Length")
    if length > MAX_BODY:
        abort(413, f"body larger than {MAX_BODY} bytes")
    return environ["wsgi.input"].read(length) if length > 0 else b""


def health_handler(service: str) -> Handler:
    started = time.monotonic()

    def health(request: Request) -> Response:
        uptime = round(time.monotonic() - started, 3)
        return json_response({"status": "ok", "service": service, "pid": os.getpid(), "uptime_s": uptime})

    return health


def int_field(payload: JSON, name: str, low: int, high: int) -> int:
    value = payload.get(name)
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        abort(400, f"{name} must be an integer in [{low}, {high}]")
    return value


SESSION = r"(?P<session>[A-Za-z0-9_.\-]{1,64})"
