"""The gateway's circuit breaker (harness/demo/breaker.py) and the demo's metrics (metrics.py),
in-process: the breaker on a clock the test moves, the metrics through a real WSGI app's
dispatch and prometheus_client's own parser of what ``GET /metrics`` answers."""

from __future__ import annotations

import io
from collections.abc import Callable
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from harness.demo.breaker import BreakerSettings, CircuitBreaker, State
from harness.demo.metrics import instrument
from harness.demo.web import App, Request, Response, json_response


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class Down(Exception):
    pass


REJECTED = object()  # what the fallback answers: the call was failed fast, never made


def call(breaker: CircuitBreaker, func: Callable[[], Any], failed: Callable[[Any], bool] = lambda _: False) -> Any:
    return breaker.call(func, fallback=lambda: REJECTED, failed=failed)


def _fail() -> None:
    raise Down()


def _breaker(failures: int = 3, reset: float = 2.0) -> tuple[CircuitBreaker, Clock, list[tuple[str, str]], list[int]]:
    clock = Clock()
    breaker = CircuitBreaker("payments", BreakerSettings(failures, reset), clock=clock)
    changes: list[tuple[str, str]] = []
    rejected: list[int] = []
    breaker.listen(lambda old, new: changes.append((old.label, new.label)), lambda: rejected.append(1))
    return breaker, clock, changes, rejected


def test_opens_after_consecutive_failures_only() -> None:
    breaker, _, changes, _ = _breaker(failures=3)
    for _ in range(2):
        with pytest.raises(Down):
            call(breaker, _fail)
    assert call(breaker, lambda: "ok") == "ok"  # a success resets the count
    for _ in range(2):
        with pytest.raises(Down):
            call(breaker, _fail)
    assert breaker.state is State.CLOSED and changes == []
    with pytest.raises(Down):
        call(breaker, _fail)
    assert breaker.state is State.OPEN and changes == [("closed", "open")]


def test_a_failed_result_counts_as_a_failure() -> None:
    breaker, _, _, _ = _breaker(failures=2)
    for _ in range(2):
        assert call(breaker, lambda: 503, failed=lambda status: status >= 500) == 503
    assert breaker.state is State.OPEN


def test_open_fails_fast_without_calling_then_lets_one_trial_through() -> None:
    breaker, clock, changes, rejected = _breaker(failures=1, reset=2.0)
    with pytest.raises(Down):
        call(breaker, _fail)
    called: list[int] = []
    assert call(breaker, lambda: called.append(1)) is REJECTED
    clock.now += 1.9
    assert call(breaker, lambda: called.append(1)) is REJECTED
    assert called == [] and len(rejected) == 2

    clock.now += 0.2  # reset elapsed: half-open, one trial; a call while it is in flight fails fast

    def trial() -> str:
        assert breaker.state is State.HALF_OPEN
        assert call(breaker, lambda: called.append(1)) is REJECTED
        return "charged"

    assert call(breaker, trial) == "charged"
    assert breaker.state is State.CLOSED and called == [] and len(rejected) == 3
    assert changes == [("closed", "open"), ("open", "half-open"), ("half-open", "closed")]


def test_a_failed_trial_opens_it_for_another_reset() -> None:
    breaker, clock, changes, _ = _breaker(failures=1, reset=2.0)
    with pytest.raises(Down):
        call(breaker, _fail)
    clock.now += 2.0
    with pytest.raises(Down):
        call(breaker, _fail)
    assert breaker.state is State.OPEN
    clock.now += 1.0
    assert call(breaker, lambda: None) is REJECTED
    clock.now += 1.0
    assert call(breaker, lambda: "ok") == "ok"
    cycle = [("open", "half-open"), ("half-open", "open"), ("open", "half-open"), ("half-open", "closed")]
    assert changes == [("closed", "open"), *cycle]


def test_zero_failures_is_no_breaker() -> None:
    breaker, _, changes, _ = _breaker(failures=0)
    for _ in range(20):
        with pytest.raises(Down):
            call(breaker, _fail)
    assert breaker.state is State.CLOSED and changes == []


# ---------------------------------------------------------------- metrics


def _get(app: App, method: str, path: str, body: bytes = b"") -> tuple[str, bytes, str]:
    seen: dict[str, Any] = {}

    def start_response(status: str, headers: list[tuple[str, str]]) -> None:
        seen.update(status=status, headers=dict(headers))

    environ = {
        "REQUEST_METHOD": method,
        "PATH_INFO": path,
        "QUERY_STRING": "",
        "CONTENT_LENGTH": str(len(body)),
        "wsgi.input": io.BytesIO(body),
    }
    chunks = app(environ, start_response)
    return seen["status"], b"".join(chunks), seen["headers"]["Content-Type"]


def _samples(app: App) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    status, body, content_type = _get(app, "GET", "/metrics")
    assert status.startswith("200") and content_type.startswith("text/plain")
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(body.decode())
        for sample in family.samples
    }


def test_metrics_count_requests_errors_and_latency_per_route() -> None:
    app = App("catalog")

    def product(request: Request, product_id: str) -> Response:
        return json_response({"id": int(product_id)}, 200 if product_id != "13" else 503)

    app.add("GET", r"/products/(?P<product_id>\d{1,9})", product)
    instrument(app)
    for path in ("/products/1", "/products/2", "/products/13", "/nowhere/7", "/nowhere/8"):
        _get(app, "GET", path)
    samples = _samples(app)
    route = (("method", "GET"), ("route", "/products/{product_id}"), ("service", "catalog"))
    assert samples[("demo_http_requests_total", (("code", "200"), *route))] == 2
    assert samples[("demo_http_requests_total", (("code", "503"), *route))] == 1
    assert samples[("demo_http_request_errors_total", route)] == 1
    assert samples[("demo_http_request_duration_seconds_count", route)] == 3
    assert samples[("demo_http_requests_in_flight", route)] == 0
    unmatched = (("code", "404"), ("method", "GET"), ("route", "unmatched"), ("service", "catalog"))
    assert samples[("demo_http_requests_total", unmatched)] == 2  # one series, whatever the paths
    assert not any(dict(labels).get("route") == "/metrics" for _, labels in samples)


def test_metrics_export_the_breaker_state_and_transitions() -> None:
    app = App("gateway")
    breaker, clock, _, _ = _breaker(failures=1, reset=2.0)
    instrument(app, (breaker,))
    labels = (("breaker", "payments"), ("service", "gateway"))
    assert _samples(app)[("demo_circuit_breaker_state", labels)] == 0
    with pytest.raises(Down):
        call(breaker, _fail)
    assert call(breaker, lambda: None) is REJECTED
    samples = _samples(app)
    assert samples[("demo_circuit_breaker_state", labels)] == 1
    assert samples[("demo_circuit_breaker_rejected_total", labels)] == 1
    clock.now += 2.0
    call(breaker, lambda: None)
    samples = _samples(app)
    assert samples[("demo_circuit_breaker_state", labels)] == 0
    for old, new in (("closed", "open"), ("open", "half-open"), ("half-open", "closed")):
        key = (
            "demo_circuit_breaker_transitions_total",
            (*labels[:1], ("from_state", old), *labels[1:], ("to_state", new)),
        )
        assert samples[key] == 1, key
