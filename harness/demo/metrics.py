"""The demo services' Prometheus metrics, on ``GET /metrics`` of each service's own port.

Every service (gateway, catalog, cart, payments) counts what it answers, per route (the route's
pattern, ``/api/cart/{session}/items``, never the raw path) with the standard client library
(``prometheus-client``), in a registry of its own:

- ``demo_http_requests_total{service, method, route, code}``: requests answered, by status code;
- ``demo_http_request_errors_total{service, method, route}``: of those, the ones answered 5xx;
- ``demo_http_request_duration_seconds{service, method, route}``: a histogram of the time from
  the request's arrival to its answer;
- ``demo_http_requests_in_flight{service, method, route}``: requests being answered now.

The gateway adds its circuit breakers (:mod:`harness.demo.breaker`), labelled ``breaker``
(the downstream it guards, ``payments``):

- ``demo_circuit_breaker_state{service, breaker}``: 0 closed, 1 open, 2 half-open;
- ``demo_circuit_breaker_transitions_total{service, breaker, from_state, to_state}``;
- ``demo_circuit_breaker_rejected_total{service, breaker}``: calls failed fast, never sent.

``/metrics`` itself is not counted (a scrape every second would drown the shop's own traffic).
The names and labels are documented in docs/faults.md ("The demo's metrics"); a Prometheus-
compatible scraper reads them as they are. This module is the one that imports
``prometheus_client``; it is imported after gevent is patched (by :mod:`.services`).
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4

from harness.demo.breaker import CircuitBreaker, State
from harness.demo.web import App, Request, Response

__all__ = ["BUCKETS", "METRICS_PATH", "ServiceMetrics", "instrument"]

METRICS_PATH = "/metrics"
#: Seconds. Prometheus' defaults start at 5 ms; the demo answers in about 1 ms and fails fast in
#: less, so finer buckets at the bottom; the top ones catch the gateway's 1 s deadline and retry.
BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class ServiceMetrics:
    """One service's metrics and their registry; an :class:`~harness.demo.web.RequestObserver`.

    Label children are looked up once per (method, route[, code]) and kept, so a request costs
    a few dictionary look-ups and the library's own increments.
    """

    def __init__(self, service: str, registry: CollectorRegistry | None = None) -> None:
        self.service = service
        self.registry = registry if registry is not None else CollectorRegistry(auto_describe=True)
        labels = ("service", "method", "route")
        self._requests = Counter(
            "demo_http_requests", "Requests answered, by status code.", (*labels, "code"), registry=self.registry
        )
        self._errors = Counter(
            "demo_http_request_errors", "Requests answered with a 5xx status.", labels, registry=self.registry
        )
        self._duration = Histogram(
            "demo_http_request_duration_seconds",
            "Time from a request's arrival to its answer.",
            labels,
            buckets=BUCKETS,
            registry=self.registry,
        )
        self._in_flight = Gauge(
            "demo_http_requests_in_flight", "Requests being answered now.", labels, registry=self.registry
        )
        self._breaker_state = Gauge(
            "demo_circuit_breaker_state",
            "A circuit breaker's state: 0 closed, 1 open, 2 half-open.",
            ("service", "breaker"),
            registry=self.registry,
        )
        self._transitions = Counter(
            "demo_circuit_breaker_transitions",
            "A circuit breaker's changes of state.",
            ("service", "breaker", "from_state", "to_state"),
            registry=self.registry,
        )
        self._rejected = Counter(
            "demo_circuit_breaker_rejected",
            "Calls a circuit breaker failed fast without sending them.",
            ("service", "breaker"),
            registry=self.registry,
        )
        self._routes: dict[tuple[str, str], tuple[Gauge, Histogram, Counter]] = {}
        self._codes: dict[tuple[str, str, int], Counter] = {}

    def started(self, method: str, route: str) -> None:
        if route != METRICS_PATH:
            self._children(method, route)[0].inc()

    def finished(self, method: str, route: str, status: int, seconds: float) -> None:
        if route == METRICS_PATH:
            return
        in_flight, duration, errors = self._children(method, route)
        in_flight.dec()
        duration.observe(seconds)
        if status >= 500:
            errors.inc()
        counter = self._codes.get((method, route, status))
        if counter is None:
            counter = self._codes[(method, route, status)] = self._requests.labels(
                self.service, method, route, str(status)
            )
        counter.inc()

    def _children(self, method: str, route: str) -> tuple[Gauge, Histogram, Counter]:
        children = self._routes.get((method, route))
        if children is None:
            labels = (self.service, method, route)
            children = (self._in_flight.labels(*labels), self._duration.labels(*labels), self._errors.labels(*labels))
            self._routes[(method, route)] = children
        return children

    def watch(self, breaker: CircuitBreaker) -> None:
        """Export ``breaker``'s state, transitions and fast failures from now on."""
        state = self._breaker_state.labels(self.service, breaker.name)
        state.set(int(breaker.state))
        rejected = self._rejected.labels(self.service, breaker.name)
        rejected.inc(0)  # the series exists (at 0) before the first rejection

        def changed(old: State, new: State) -> None:
            state.set(int(new))
            self._transitions.labels(self.service, breaker.name, old.label, new.label).inc()

        breaker.listen(changed, rejected.inc)

    def exposition(self, request: Request) -> Response:
        """The registry in Prometheus' text format 0.0.4: ``GET /metrics``. The content type the
        library's own WSGI app sends a scraper that asks for nothing newer; every name here is
        valid in the classic format, so no scraper needs 1.0.0's escaping."""
        return Response(200, generate_latest(self.registry), CONTENT_TYPE_PLAIN_0_0_4)


def instrument(app: App, breakers: tuple[CircuitBreaker, ...] = ()) -> ServiceMetrics:
    """Count ``app``'s requests, export ``breakers`` and serve them all on ``GET /metrics``."""
    metrics = ServiceMetrics(app.service)
    for breaker in breakers:
        metrics.watch(breaker)
    app.add("GET", METRICS_PATH, metrics.exposition)
    app.observer = metrics
    return metrics
