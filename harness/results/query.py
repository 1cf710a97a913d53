"""A minimal InfluxQL client over the 1.x ``/query`` endpoint (stdlib urllib).

InfluxQL is what the dashboards use and what InfluxDB 1.x, 2.x (through DBRP mappings) and 3.x
all answer, so reports and tests read results through this one small client instead of a
version-specific library.
"""

from __future__ import annotations

import base64
import json
import re
import urllib.parse
from dataclasses import dataclass, field
from typing import Any

from harness.errors import ResultsError
from harness.results._http import REDACTED, http_request, redact, split_userinfo

__all__ = ["InfluxQuery", "Series"]

# Statements InfluxDB accepts on GET; everything else (CREATE, DROP, DELETE...) must be POSTed.
_READ_ONLY = re.compile(r"^\s*(SELECT|SHOW)\b", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class Series:
    """One series of a result: its measurement name, GROUP BY tags, columns and rows."""

    name: str
    tags: dict[str, str] = field(default_factory=dict)
    columns: list[str] = field(default_factory=list)
    values: list[list[Any]] = field(default_factory=list)

    def rows(self) -> list[dict[str, Any]]:
        """Rows as dicts: GROUP BY tags first, then the columns (a column wins on a clash)."""
        return [{**self.tags, **dict(zip(self.columns, row, strict=False))} for row in self.values]


class InfluxQuery:
    """Run InfluxQL against one database.  ``token`` is sent as ``Authorization: Token``."""

    def __init__(
        self,
        url: str,
        database: str,
        token: str | None = None,
        timeout: float = 10.0,
        username: str | None = None,
        password: str | None = None,
    ) -> None:
        base, url_user, url_password = split_userinfo(url)
        self.url = base
        self.database = database
        self.timeout = timeout
        self._token = token
        user = username if username is not None else url_user
        secret = password if password is not None else url_password
        self._secrets = tuple(s for s in (token, secret) if s)
        self._headers: dict[str, str] = {}
        if token:
            self._headers["Authorization"] = f"Token {token}"
        elif user is not None:
            raw = f"{user}:{secret or ''}".encode()
            self._headers["Authorization"] = "Basic " + base64.b64encode(raw).decode("ascii")

    def __repr__(self) -> str:
        token = REDACTED if self._token else None
        return f"InfluxQuery(url={self.url!r}, database={self.database!r}, token={token!r})"

    def query_series(self, q: str, epoch: str | None = "ns") -> list[Series]:
        """Run one or more statements; every series of every statement, in order.

        Raises ResultsError for an unreachable server, an HTTP error or a statement error, with
        the server's message (and no credentials).
        """
        params = {"q": q}
        if self.database:
            params["db"] = self.database
        if epoch:
            params["epoch"] = epoch
        encoded = urllib.parse.urlencode(params)
        try:
            if _READ_ONLY.match(q):
                status, payload = http_request(
                    "GET", f"{self.url}/query?{encoded}", headers=self._headers, timeout=self.timeout
                )
            else:
                headers = {**self._headers, "Content-Type": "application/x-www-form-urlencoded"}
                status, payload = http_request(
                    "POST", f"{self.url}/query", body=encoded.encode(), headers=headers, timeout=self.timeout
                )
        except OSError as err:
            raise ResultsError(self._redact(f"InfluxDB {self.url} unreachable: {err}")) from None
        text = payload.decode("utf-8", "replace")
        try:
            document = json.loads(text) if text.strip() else {}
        except ValueError:
            document = {}
        if status >= 300:
            detail = document.get("error") if isinstance(document, dict) else None
            raise ResultsError(self._redact(f"InfluxDB {self.url}: HTTP {status}: {detail or text[:500]}"))
        if isinstance(document, dict) and document.get("error"):
            raise ResultsError(self._redact(f"InfluxDB {self.url}: {document['error']}"))
        series: list[Series] = []
        for result in document.get("results", []) if isinstance(document, dict) else []:
            if result.get("error"):
                raise ResultsError(self._redact(f"InfluxDB {self.url}: {q!r}: {result['error']}"))
            for item in result.get("series", []):
                series.append(
                    Series(
                        name=str(item.get("name", "")),
                        tags=dict(item.get("tags") or {}),
                        columns=list(item.get("columns") or []),
                        values=[list(v) for v in item.get("values") or []],
                    )
                )
        return series

    def query(self, q: str, epoch: str = "ns") -> list[dict[str, Any]]:
        """Rows as dicts keyed by column (plus GROUP BY tags), all series flattened in order.

        With ``epoch="ns"`` (the default) the ``time`` column is an int of nanoseconds; pass
        ``epoch=""`` for RFC 3339 strings.
        """
        rows: list[dict[str, Any]] = []
        for series in self.query_series(q, epoch=epoch or None):
            rows.extend(series.rows())
        return rows

    def _redact(self, text: str) -> str:
        return redact(text, self._secrets)
