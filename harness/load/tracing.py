"""W3C ``traceparent`` and ``baggage`` on every request of a Locust process, and example trace ids.

Installed once per load process (:func:`install`), before any user starts, by wrapping the
one place each Locust HTTP client hands a request's headers on:

* ``FastHttpSession._send_request_safe_mode`` (FastHttpUser): the request's headers become
  ``{traceparent, baggage, **the request's own}``; geventhttpclient merges them into its
  case-insensitive headers in that order, so a ``Traceparent`` or ``baggage`` the locustfile
  passes wins. A session whose ``default_headers`` name either header keeps its own (looked
  at once per session).
* ``HttpSession.prepare_request`` (HttpUser): added to the prepared request's headers unless
  the request or the session (``client.headers``) already has them.
* ``TaskSet.execute_next_task``, only with ``per: iteration``: each task run starts a new
  trace; its requests are spans of it (a new parent-id each).

Per request that is a list pop, a dict of two more items and, with ``per: iteration``, one
string concatenation (:mod:`harness.load.trace`). A request listener keeps the examples
(:class:`harness.measure.examples.ExampleKeeper`): per request one lookup and a comparison;
only a request that is among its endpoint's slowest or first failed has its trace id read
back from the request it sent.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import Any

from locust import TaskSet, User
from locust.clients import HttpSession
from locust.contrib.fasthttp import FastHttpSession

from harness.load.failures import FailureKinds
from harness.load.protocol import Examples as ExamplesReport
from harness.load.trace import BAGGAGE, TRACEPARENT, IdPool, TracePer, TraceSettings, baggage, trace_id_of
from harness.measure.examples import Example, ExampleKeeper

__all__ = ["Tracer", "install", "traced"]

_BOTH = (True, True)


class Tracer:
    """The trace context of one load process: ids, the current baggage, the examples kept."""

    def __init__(self, settings: TraceSettings, run_id: str, now: Callable[[], float]) -> None:
        self.settings = settings
        self.run_id = run_id
        self.flags = "-01" if settings.sampled else "-00"
        self.baggage = baggage(run_id, "", ())
        self.keeper = ExampleKeeper()
        self._now = now
        self._trace_ids = IdPool(32)
        self._span_ids = IdPool(16)
        self._headers: list[str] = []  # preformatted traceparents, one trace each
        self._failure_kind = FailureKinds()

    def set_context(self, phase: str, faults: Sequence[str]) -> None:
        """The run's phase or active faults changed: the baggage of the requests from now on."""
        self.baggage = baggage(self.run_id, phase, faults)

    def traceparent(self, user: Any) -> str:
        """A new span's ``traceparent``: of the user's current iteration's trace, or a new trace."""
        prefix = getattr(user, "_harness_trace", "")
        if prefix:
            return prefix + self._span_ids.take() + self.flags
        try:
            return self._headers.pop()
        except IndexError:
            t, s, f = self._trace_ids.take, self._span_ids.take, self.flags
            self._headers = [f"00-{t()}-{s()}{f}" for _ in range(1024)]
            return self._headers.pop()

    def new_trace(self) -> str:
        """The ``traceparent`` prefix of a new trace (``00-<trace-id>-``)."""
        return "00-" + self._trace_ids.take() + "-"

    def on_request(
        self,
        request_type: str,
        name: str,
        response_time: float,
        exception: BaseException | None = None,
        response: Any = None,
        **_: Any,
    ) -> None:
        """Request listener: keep the request as an example if it is among the slowest or first failed."""
        if not self.keeper.wanted((request_type, name), response_time, exception is not None):
            return
        trace_id = trace_id_of(_sent_traceparent(response, exception))
        if trace_id:
            failure = "" if exception is None else self._failure_kind(exception, response)
            example = Example(trace_id, round(response_time, 3), int(self._now()), failure)
            self.keeper.offer(request_type, name, example)

    def report(self, process: str) -> str | None:
        """The examples report line of what was kept since the last call, or None."""
        new = self.keeper.take_new()
        return ExamplesReport(process, new).encode() if new else None


def _sent_traceparent(response: Any, exception: BaseException | None) -> Any:
    """The ``traceparent`` a request was sent with, from its response (or its exception)."""
    request = getattr(response, "request", None) or getattr(exception, "request", None)
    headers = getattr(request, "headers", None)
    try:
        return headers.get(TRACEPARENT) if headers is not None else None
    except Exception:  # an odd response object of a custom client: no example, never a failure
        return None


def _own_headers(headers: Any) -> tuple[bool, bool]:
    """Which of traceparent and baggage harness adds, given a session's default headers."""
    try:
        adds = (TRACEPARENT not in headers, BAGGAGE not in headers)
    except TypeError:
        return _BOTH
    return _BOTH if adds == _BOTH else adds


def install(tracer: Tracer, events: Any) -> None:
    """Put the trace headers on every request of this process from now on, and keep examples.

    Wraps Locust's client classes in this process (a load process runs nothing else) and
    adds ``tracer.on_request`` to ``events.request``. Call once, before users start.
    """
    traceparent = tracer.traceparent
    send_fast = FastHttpSession._send_request_safe_mode

    def send_request_safe_mode(self: FastHttpSession, method: str, url: str, **kwargs: Any) -> Any:
        adds = self._harness_adds  # type: ignore[attr-defined]
        if adds is None:
            adds = self._harness_adds = _own_headers(self.client.default_headers)  # type: ignore[attr-defined]
        if adds is _BOTH:
            kwargs["headers"] = {TRACEPARENT: traceparent(self.user), BAGGAGE: tracer.baggage, **kwargs["headers"]}
        else:
            ours = {TRACEPARENT: traceparent(self.user)} if adds[0] else {}
            if adds[1]:
                ours[BAGGAGE] = tracer.baggage
            kwargs["headers"] = {**ours, **kwargs["headers"]}
        return send_fast(self, method, url, **kwargs)

    prepare = HttpSession.prepare_request

    def prepare_request(self: HttpSession, request: Any) -> Any:
        prepared = prepare(self, request)
        headers = prepared.headers  # case-insensitive: the request's and the session's own
        if TRACEPARENT not in headers:
            headers[TRACEPARENT] = traceparent(self.user)
        if BAGGAGE not in headers:
            headers[BAGGAGE] = tracer.baggage
        return prepared

    FastHttpSession._harness_adds = None  # type: ignore[attr-defined]  # per session, on its first request
    FastHttpSession._send_request_safe_mode = send_request_safe_mode  # type: ignore[method-assign]
    HttpSession.prepare_request = prepare_request  # type: ignore[method-assign]
    if tracer.settings.per is TracePer.ITERATION:
        execute = TaskSet.execute_next_task
        new_trace = tracer.new_trace

        def execute_next_task(self: TaskSet) -> None:
            self.user._harness_trace = new_trace()  # type: ignore[attr-defined]
            execute(self)

        TaskSet.execute_next_task = execute_next_task  # type: ignore[method-assign]
        User._harness_trace = ""  # type: ignore[attr-defined]  # outside a task: a trace per request
    events.request.add_listener(tracer.on_request)


def traced(settings: TraceSettings | None, events: Any, now: Callable[[], float]) -> Tracer | None:
    """The process's installed tracer (its run id from ``HARNESS_RUN_ID``), or None when tracing is off."""
    if settings is None:
        return None
    tracer = Tracer(settings, os.environ.get("HARNESS_RUN_ID", ""), now)
    install(tracer, events)
    return tracer
