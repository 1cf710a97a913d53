"""The client side of a fault server's control API (the fault proxy's, the DNS responder's): put a
fault, remove it, ask for health.

Both servers speak the same small JSON API (``GET /health``, ``PUT|DELETE /faults/<name>``).
``control`` is ``host:port`` or ``unix:/path`` (the private socket of a server started for a
fault). A server that refuses the connection is not running, and its faults (held in memory
only) went with it: :meth:`ControlClient.delete` counts that as done; one that does not answer
in time may still hold the fault, which is a ``FaultError`` to retry.
"""

from __future__ import annotations

import http.client
import json
import socket
from dataclasses import dataclass
from typing import Any

from harness.errors import FaultError

__all__ = ["CONTROL_TIMEOUT", "ControlClient", "split_address"]

#: Seconds any one control API call may take (it is a local, in-memory change).
CONTROL_TIMEOUT = 5.0


def split_address(address: str) -> tuple[str, int]:
    """``(host, port)`` of ``host:port`` or ``[v6]:port``."""
    host, _, port = address.rpartition(":")
    return (host[1:-1] if host.startswith("[") else host), int(port)


class _Unreachable(Exception):
    """Nothing listens at the control address: the server is not running."""


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


@dataclass(frozen=True)
class ControlClient:
    """The control API of one kind of fault server; ``noun`` names it in messages ("fault proxy")
    and ``short`` where the sentence already says what it is ("proxy")."""

    noun: str
    short: str

    def _call(
        self, control: str, method: str, path: str, body: Any = None, timeout: float = CONTROL_TIMEOUT
    ) -> tuple[int, Any]:
        """(status, JSON answer or None) of one call.

        Raises :class:`_Unreachable` when the connection is refused (or the unix socket is gone),
        ``FaultError`` on any other failure (a timeout included: the server may still hold the fault).
        """
        conn: http.client.HTTPConnection
        if control.startswith("unix:"):
            conn = _UnixHTTPConnection(control[len("unix:") :], timeout)
        else:
            conn = http.client.HTTPConnection(*split_address(control), timeout=timeout)
        payload = None if body is None else json.dumps(body)
        try:
            conn.request(method, path, body=payload, headers={"Content-Type": "application/json"})
            response = conn.getresponse()
            raw = response.read()
        except (ConnectionRefusedError, FileNotFoundError) as exc:
            raise _Unreachable(f"{control}: {exc.strerror or exc}") from None
        except (OSError, http.client.HTTPException) as exc:
            raise FaultError(f"{self.noun} at {control}: {method} {path}: {exc}") from None
        finally:
            conn.close()
        try:
            return response.status, json.loads(raw) if raw else None
        except ValueError:
            return response.status, None

    def put(self, control: str, name: str, spec: dict[str, Any]) -> None:
        """Add or replace the fault ``name``; ``FaultError`` when the server is not there or refuses it."""
        try:
            status, answer = self._call(control, "PUT", f"/faults/{name}", spec)
        except _Unreachable as exc:
            raise FaultError(f"no {self.noun} answers at {exc}") from None
        if status not in (200, 201):
            why = answer.get("error") if isinstance(answer, dict) else answer
            raise FaultError(f"{self.noun} at {control} refused the fault ({status}): {why}")

    def delete(self, control: str, name: str) -> str:
        """Remove the fault; says what happened. ``FaultError`` when it may still be there."""
        try:
            status, _ = self._call(control, "DELETE", f"/faults/{name}")
        except _Unreachable:
            return f"no {self.short} listens at {control} (its faults went with it)"
        if status == 204:
            return f"deleted {name} at {control}"
        if status == 404:
            return f"{name} was not in the {self.short} at {control}"
        raise FaultError(f"{self.noun} at {control} answered DELETE with {status}")

    def health(self, control: str, timeout: float = CONTROL_TIMEOUT) -> tuple[int, Any]:
        """(status, answer) of ``GET /health``; ``FaultError`` when nothing answers."""
        try:
            return self._call(control, "GET", "/health", timeout=timeout)
        except _Unreachable as exc:
            raise FaultError(str(exc)) from None
