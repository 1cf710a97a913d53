"""A minimal client of the Prometheus HTTP query API (``/api/v1/query``), for scenario probes.

Prometheus, VictoriaMetrics, Thanos and Mimir answer the same API. A probe is one number, so
:meth:`PromQuery.number` accepts a scalar or an instant vector of at most one series (an empty
vector is no value: NaN) and refuses anything else with the reason, so a query that forgot to
aggregate says so instead of one series being picked at random.
"""

from __future__ import annotations

import json
import math
import urllib.parse
from typing import Any

from harness.errors import ProbeFailed
from harness.results._http import http_request

__all__ = ["PromQuery", "number_of"]


class PromQuery:
    """Instant queries against one Prometheus-compatible server (no credentials: loopback or trusted)."""

    def __init__(self, url: str, timeout: float = 2.0) -> None:
        self.url = url.rstrip("/")
        self.timeout = timeout

    def number(self, query: str, at: float | None = None) -> float:
        """The query's value at ``at`` (epoch s; None: now). Raises ProbeFailed with the reason."""
        params = {"query": query}
        if at is not None:
            params["time"] = f"{at:.3f}"
        body = urllib.parse.urlencode(params).encode()
        headers = {"Content-Type": "application/x-www-form-urlencoded"}
        try:
            status, payload = http_request(
                "POST", f"{self.url}/api/v1/query", body=body, headers=headers, timeout=self.timeout
            )
        except OSError as err:
            raise ProbeFailed(f"Prometheus API {self.url} unreachable: {err}") from None
        try:
            document = json.loads(payload.decode("utf-8", "replace"))
        except ValueError:
            document = None
        if not isinstance(document, dict):
            raise ProbeFailed(f"Prometheus API {self.url}: HTTP {status}, not a query answer: {payload[:200]!r}")
        if status >= 300 or document.get("status") != "success":
            raise ProbeFailed(f"Prometheus API {self.url}: HTTP {status}: {document.get('error') or document}")
        return number_of(document.get("data"))


def number_of(data: Any) -> float:
    """The one number in a query answer's ``data``: a scalar, or a vector of at most one series."""
    kind = data.get("resultType") if isinstance(data, dict) else None
    result = data.get("result") if isinstance(data, dict) else None
    if kind == "scalar" and isinstance(result, list) and len(result) == 2:
        return _float(result[1])
    if kind == "vector" and isinstance(result, list):
        if not result:
            return math.nan  # no series matched (yet): no value, not zero
        if len(result) > 1:
            shown = ", ".join(json.dumps(item.get("metric", {}), sort_keys=True) for item in result[:3])
            raise ProbeFailed(
                f"the query gave {len(result)} series ({shown}{', ...' if len(result) > 3 else ''}); "
                "a probe is one number: aggregate it, e.g. sum(...) or max(...)"
            )
        value = result[0].get("value") if isinstance(result[0], dict) else None
        if isinstance(value, list) and len(value) == 2:
            return _float(value[1])
    raise ProbeFailed(f"the query gave a {kind or 'malformed'} result; a probe needs a scalar or one series")


def _float(text: Any) -> float:
    try:
        return float(text)
    except (TypeError, ValueError):
        raise ProbeFailed(f"the query gave {text!r}, not a number") from None
