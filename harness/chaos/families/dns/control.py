"""The DNS responder's control API, from the client side: put a fault, remove it, ask for health.

``control`` is ``host:port`` or ``unix:/path`` (the private socket of a responder started for a
fault). A responder that refuses the connection is not running, and its faults (in memory
only) went with it: :func:`delete` counts that as done; one that does not answer in time may
still hold the fault, which is a ``FaultError`` to retry.
"""

from __future__ import annotations

import http.client
import json
import socket
from typing import Any

from harness.errors import FaultError

__all__ = ["CONTROL_TIMEOUT", "delete", "health", "put", "split_address"]

#: Seconds any one control API call may take (a local, in-memory change).
CONTROL_TIMEOUT = 5.0


def split_address(address: str) -> tuple[str, int]:
    """``(host, port)`` of ``host:port`` or ``[v6]:port``."""
    host, _, port = address.rpartition(":")
    return (host[1:-1] if host.startswith("[") else host), int(port)


class _Unreachable(Exception):
    """Nothing listens at the control address: the responder is not running."""


class _UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self._path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect(self._path)
        except OSError:
            sock.close()
            raise
        self.sock = sock


def _call(control: str, method: str, path: str, body: Any = None, timeout: float = CONTROL_TIMEOUT) -> tuple[int, Any]:
    conn: http.client.HTTPConnection
    if control.startswith("unix:"):
        conn = _UnixHTTPConnection(control[len("unix:") :], timeout)
    else:
        conn = http.client.HTTPConnection(*split_address(control), timeout=timeout)
    try:
        conn.request(method, path, body=None if body is None else json.dumps(body))
        response = conn.getresponse()
        raw = response.read()
    except (ConnectionRefusedError, FileNotFoundError) as exc:
        raise _Unreachable(f"{control}: {exc.strerror or exc}") from None
    except (OSError, http.client.HTTPException) as exc:
        raise FaultError(f"DNS responder at {control}: {method} {path}: {exc}") from None
    finally:
        conn.close()
    try:
        return response.status, json.loads(raw) if raw else None
    except ValueError:
        return response.status, None


def put(control: str, name: str, spec: dict[str, Any]) -> None:
    try:
        status, answer = _call(control, "PUT", f"/faults/{name}", spec)
    except _Unreachable as exc:
        raise FaultError(f"no DNS responder answers at {exc}") from None
    if status not in (200, 201):
        why = answer.get("error") if isinstance(answer, dict) else answer
        raise FaultError(f"DNS responder at {control} refused the fault ({status}): {why}")


def delete(control: str, name: str) -> str:
    """Remove the fault; says what happened. ``FaultError`` when it may still be there."""
    try:
        status, _ = _call(control, "DELETE", f"/faults/{name}")
    except _Unreachable:
        return f"no DNS responder listens at {control} (its faults went with it)"
    if status == 204:
        return f"deleted {name} at {control}"
    if status == 404:
        return f"{name} was not in the DNS responder at {control}"
    raise FaultError(f"DNS responder at {control} answered DELETE with {status}")


def health(control: str, timeout: float = CONTROL_TIMEOUT) -> tuple[int, Any]:
    """(status, answer) of ``GET /health``; ``FaultError`` when nothing answers."""
    try:
        return _call(control, "GET", "/health", timeout=timeout)
    except _Unreachable as exc:
        raise FaultError(str(exc)) from None
