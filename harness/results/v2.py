"""The InfluxDB v2 write API transport: the only module that imports ``influxdb_client``.

Kept apart from transports.py so that importing harness.results (for the v1 writer, the query
client or the embedded server) does not pay for the client library, and so the library's
defaults that would hurt a run are overridden in one visible place: no retries inside the
client (the writer's spool does that, in order, without blocking), a socket timeout of
seconds rather than the library's 10 s default, synchronous writes (batching is ours).
"""

from __future__ import annotations

from typing import Any

from influxdb_client import InfluxDBClient, WritePrecision
from influxdb_client.client.write_api import SYNCHRONOUS
from influxdb_client.rest import ApiException

from harness.errors import TransportError
from harness.results._http import REDACTED, redact, split_userinfo
from harness.results.transports import DEFAULT_TIMEOUT, classify_status, error_text

__all__ = ["V2Transport"]


def _api_error_text(err: ApiException) -> str:
    """The server's message from an ApiException, without the headers its str() would dump."""
    body = err.body
    if isinstance(body, str):
        body = body.encode("utf-8", "replace")
    if not body:
        body = str(err.reason or "").encode("utf-8", "replace")
    return error_text(int(err.status or 0), body)


class V2Transport:
    """``POST /api/v2/write?org=...&bucket=...&precision=ns`` through ``influxdb-client``."""

    def __init__(
        self,
        url: str,
        org: str,
        bucket: str,
        token: str,
        timeout: float = DEFAULT_TIMEOUT,
    ) -> None:
        base, _user, _password = split_userinfo(url)
        self.url = base
        self.org = org
        self.bucket = bucket
        self.timeout = float(timeout)
        self._token = token
        self._secrets = tuple(s for s in (token, _password) if s)
        self._client: Any = InfluxDBClient(
            url=base,
            token=token,
            org=org,
            timeout=int(self.timeout * 1000),
            retries=False,
            enable_gzip=False,
        )
        self._write_api: Any = self._client.write_api(write_options=SYNCHRONOUS)

    def __repr__(self) -> str:
        token = REDACTED if self._token else None
        return (
            f"V2Transport(url={self.url!r}, org={self.org!r}, bucket={self.bucket!r}, "
            f"token={token!r}, timeout={self.timeout!r})"
        )

    def describe(self) -> str:
        return f"InfluxDB v2 {self.url} org={self.org} bucket={self.bucket}"

    def send(self, lines: str, timeout: float | None = None) -> None:
        # influxdb-client reads the timeout from its configuration on every request, and this
        # transport is used by one thread only, so setting it per call is safe.
        self._client.conf.timeout = int((timeout or self.timeout) * 1000)
        try:
            self._write_api.write(bucket=self.bucket, org=self.org, record=lines, write_precision=WritePrecision.NS)
        except ApiException as err:
            message = redact(f"{self.describe()}: {_api_error_text(err)}", self._secrets)
            raise classify_status(int(err.status or 0), message) from None
        except Exception as err:  # urllib3 connection errors and timeouts: unreachable
            message = redact(f"{self.describe()}: unreachable: {type(err).__name__}: {err}", self._secrets)
            raise TransportError(message) from None

    def close(self) -> None:
        try:
            self._write_api.close()
        finally:
            self._client.close()
