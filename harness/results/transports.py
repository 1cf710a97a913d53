"""Where a batch of line protocol goes: the :class:`Transport` interface and its stdlib transports.

* :class:`V1Transport`: InfluxDB 1.x ``POST /write`` with stdlib urllib (what Debian ships);
  credentials travel in headers, never in the query string.
* :class:`NullTransport`: no server at all; the run's points only go to results.lp.
* The v2 write API (InfluxDB 2.x/3.x, 1.8+, VictoriaMetrics) is :mod:`harness.results.v2`,
  kept apart because it imports ``influxdb-client``.

A transport raises :class:`harness.errors.TransportError` saying whether resending can help
(:func:`classify_status`); secrets never appear in its repr or its messages.
"""

from __future__ import annotations

import base64
import json
import logging
import re
import urllib.parse
from typing import Protocol, runtime_checkable

from harness.errors import ConfigError, TransportError
from harness.results._http import REDACTED, http_request, redact, split_userinfo
from harness.results.influxql import quote_identifier

__all__ = [
    "DEFAULT_TIMEOUT",
    "NullTransport",
    "Transport",
    "V1Transport",
    "classify_status",
    "error_text",
    "secrets_of",
]

log = logging.getLogger(__name__)

DEFAULT_TIMEOUT = 5.0

# 4xx answers that say "try again later" rather than "this data is wrong".
_RETRYABLE_4XX = frozenset({404, 408, 425, 429})
_DROPPED_RE = re.compile(r"dropped=(\d+)")


@runtime_checkable
class Transport(Protocol):
    """Sends one batch of line protocol (lines separated by newlines) to a server."""

    timeout: float

    def send(self, lines: str, timeout: float | None = None) -> None:
        """Send or raise :class:`TransportError`.  ``timeout`` (seconds) overrides the default."""
        ...

    def describe(self) -> str:
        """Where the points go, for logs and the run summary, without secrets."""
        ...

    def close(self) -> None:
        """Release connections."""
        ...


class NullTransport:
    """No server: the run's points only go to results.lp (load it into InfluxDB later)."""

    timeout: float = 0.0

    def send(self, lines: str, timeout: float | None = None) -> None:
        return None

    def describe(self) -> str:
        return "none (results.lp only)"

    def close(self) -> None:
        return None

    def __repr__(self) -> str:
        return "NullTransport()"


def error_text(status: int, body: bytes) -> str:
    """The server's own explanation from an error body (InfluxDB answers {"error": "..."})."""
    text = body.decode("utf-8", "replace").strip()
    try:
        decoded = json.loads(text)
    except ValueError:
        decoded = None
    if isinstance(decoded, dict):
        for key in ("error", "message"):
            if isinstance(decoded.get(key), str):
                text = decoded[key]
                break
    if len(text) > 500:
        text = text[:500] + "..."
    return f"HTTP {status}: {text}" if text else f"HTTP {status}"


def classify_status(status: int, message: str) -> TransportError:
    """Turn a non-2xx status into a TransportError that says whether retrying can help."""
    permanent = 400 <= status < 500 and status not in _RETRYABLE_4XX
    match = _DROPPED_RE.search(message)
    rejected = int(match.group(1)) if match else None
    return TransportError(message, permanent=permanent, status=status, rejected=rejected)


class V1Transport:
    """InfluxDB 1.x ``POST /write?db=...&precision=ns`` with stdlib urllib.

    Credentials go in headers (Basic for username/password, ``Token`` for a token as InfluxDB
    1.8+ and the 2.x v1-compatibility API expect), never in the query string, so they cannot
    leak through a logged URL.
    """

    def __init__(
        self,
        url: str,
        database: str,
        username: str | None = None,
        password: str | None = None,
        token: str | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        retention_policy: str | None = None,
    ) -> None:
        if not database:
            raise ConfigError("the InfluxDB v1 writer needs a database name")
        base, url_user, url_password = split_userinfo(url)
        self.url = base
        self.database = database
        self.retention_policy = retention_policy
        self.username = username if username is not None else url_user
        self._password = password if password is not None else url_password
        self._token = token
        self.timeout = float(timeout)
        self._secrets = tuple(s for s in (self._password, self._token) if s)
        self._headers: dict[str, str] = {}
        if self._token:
            self._headers["Authorization"] = f"Token {self._token}"
        elif self.username is not None:
            raw = f"{self.username}:{self._password or ''}".encode()
            self._headers["Authorization"] = "Basic " + base64.b64encode(raw).decode("ascii")
        params = {"db": database, "precision": "ns"}
        if retention_policy:
            params["rp"] = retention_policy
        self._write_url = f"{self.url}/write?{urllib.parse.urlencode(params)}"
        self._database_checked = False

    def __repr__(self) -> str:
        password = REDACTED if self._password else None
        token = REDACTED if self._token else None
        return (
            f"V1Transport(url={self.url!r}, database={self.database!r}, username={self.username!r}, "
            f"password={password!r}, token={token!r}, timeout={self.timeout!r})"
        )

    def describe(self) -> str:
        return f"InfluxDB v1 {self.url} db={self.database}"

    def _redact(self, text: str) -> str:
        return redact(text, self._secrets)

    def _post(self, url: str, body: bytes, timeout: float | None, content_type: str) -> tuple[int, bytes]:
        headers = dict(self._headers)
        headers["Content-Type"] = content_type
        try:
            return http_request("POST", url, body=body, headers=headers, timeout=timeout or self.timeout)
        except OSError as err:
            raise TransportError(self._redact(f"{self.describe()}: unreachable: {err}")) from None

    def ensure_database(self, timeout: float | None = None) -> None:
        """``CREATE DATABASE`` (a no-op when it exists), so a fresh server needs no setup."""
        statement = f"CREATE DATABASE {quote_identifier(self.database)}"
        body = urllib.parse.urlencode({"q": statement}).encode()
        status, payload = self._post(f"{self.url}/query", body, timeout, "application/x-www-form-urlencoded")
        if status >= 300:
            raise classify_status(status, self._redact(f"{self.describe()}: {error_text(status, payload)}"))
        try:
            results = json.loads(payload or b"{}").get("results", [])
        except ValueError:
            results = []
        for result in results:
            if isinstance(result, dict) and result.get("error"):
                message = self._redact(f"{self.describe()}: create database: {result['error']}")
                raise TransportError(message, permanent=True, status=status)

    def _ensure_database_once(self, timeout: float | None) -> None:
        """Create the database before the first write.

        influxd answers a write to a missing database with 404 before reading the body and
        closes the connection, so a large first batch fails with a broken pipe instead of a
        clean 404; creating the database first avoids that.  A permanent refusal (a user
        without admin rights, a server without CREATE DATABASE) is not fatal: the database
        may exist already, and the write itself will say if it does not.
        """
        if self._database_checked:
            return
        try:
            self.ensure_database(timeout)
        except TransportError as err:
            if not err.permanent:
                raise
            log.debug("could not create database %s: %s", self.database, err)
        self._database_checked = True

    def send(self, lines: str, timeout: float | None = None) -> None:
        self._ensure_database_once(timeout)
        body = lines.encode("utf-8")
        status, payload = self._post(self._write_url, body, timeout, "text/plain; charset=utf-8")
        if status == 404:
            # The database was dropped since: create it again and resend once; a later 404 is
            # retried with backoff.
            self.ensure_database(timeout)
            status, payload = self._post(self._write_url, body, timeout, "text/plain; charset=utf-8")
        if 200 <= status < 300:
            return
        raise classify_status(status, self._redact(f"{self.describe()}: {error_text(status, payload)}"))

    def close(self) -> None:
        return None


def secrets_of(transport: Transport) -> tuple[str, ...]:
    """The secrets a transport holds (to redact from a message about it)."""
    secrets = getattr(transport, "_secrets", ())
    return tuple(s for s in secrets if isinstance(s, str) and s)
