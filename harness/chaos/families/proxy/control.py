"""The fault proxy's control API, from the client side: add a fault, remove it, ask for health.

``control`` is ``host:port`` or ``unix:/path`` (a transparent proxy's private socket). A proxy
that refuses the connection is not running, and its faults (held in memory only) went with it:
:func:`delete` counts that as done; a proxy that does not answer in time may still hold the
fault, so that is a ``FaultError`` to retry.
"""

from __future__ import annotations

import http.client
import json
import socket
from typing import Any

from harness.errors import FaultError

__all__ = ["CONTROL_TIMEOUT", "delete", "health", "put", "split_address"]

#: Seconds any one control API call may take (it is a local, in-memory change).
CONTROL_TIMEOUT = 5.0


def split_address(address: str) -> tuple[str, int]:
    """``(host, port)`` of ``host:port`` or ``[v6]:port``."""
    host, _, port = address.rpartition(":")
    return (host[1:-1] if host.startswith("[") else host), int(port)


class _Unreachable(Exception):
    """Nothing listens at the control address: the proxy is not running."""


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
    """(status, JSON answer or None) of one control API call.

    Raises :class:`_Unreachable` when the connection is refused (or the unix socket is gone),
    ``FaultError`` on any other failure (a timeout included: the proxy may still hold the fault).
    """
    conn: http.client.HTTPConnection
    if control.startswith("unix:"):
        conn = _UnixHTTPConnection(control[len("unix:") :], timeout)
    else:
        host, port = split_address(control)
        conn = http.client.HTTPConnection(host, port, timeout=timeout)
    payload = None if body is None else json.dumps(body)
    try:
        conn.request(method, path, body=payload, headers={"Content-Type": "application/json"})
        response = conn.getresponse()
        raw = response.read()
    except (ConnectionRefusedError, FileNotFoundError) as exc:
        raise _Unreachable(f"{control}: {exc.strerror or exc}") from None
    except (OSError, http.client.HTTPException) as exc:
        raise FaultError(f"fault proxy at {control}: {method} {path}: {exc}") from None
    finally:
        conn.close()
    try:
        answer = json.loads(raw) if raw else None
    except ValueError:
        answer = None
    return response.status, answer


def put(control: str, name: str, spec: dict[str, Any]) -> None:
    try:
        status, answer = _call(control, "PUT", f"/faults/{name}", spec)
    except _Unreachable as exc:
        raise FaultError(f"no fault proxy answers at {exc}") from None
    if status not in (200, 201):
        why = answer.get("error") if isinstance(answer, dict) else answer
        raise FaultError(f"fault proxy at {control} refused the fault ({status}): {why}")


def delete(control: str, name: str) -> str:
    """Remove the fault from the proxy; says what happened. ``FaultError`` when it may still be there."""
    try:
        status, _ = _call(control, "DELETE", f"/faults/{name}")
    except _Unreachable:
        return f"no proxy listens at {control} (its faults went with it)"
    if status == 204:
        return f"deleted {name} at {control}"
    if status == 404:
        return f"{name} was not in the proxy at {control}"
    raise FaultError(f"fault proxy at {control} answered DELETE with {status}")


def health(control: str, timeout: float = CONTROL_TIMEOUT) -> tuple[int, Any]:
    """(status, answer) of ``GET /health``; ``FaultError`` when nothing answers."""
    try:
        return _call(control, "GET", "/health", timeout=timeout)
    except _Unreachable as exc:
        raise FaultError(str(exc)) from None
