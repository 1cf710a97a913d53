"""W3C ``traceparent`` and ``baggage`` on every request of a Locust process, and example trace ids.

Installed once per load process (:func:`install`), before any user starts, where each Locust
HTTP client builds a request's headers:

* FastHttpUser: each session's default headers (``client.default_headers``) become a
  ``Headers`` whose per-request copy, which geventhttpclient makes for every request before
  it applies the request's own headers, holds a new ``traceparent`` and the baggage; so a
  ``Traceparent`` or ``baggage`` the locustfile passes (in any case) wins, and one in its
  ``default_headers`` is kept (looked at once per session). No wrapper runs per request.
* ``HttpSession.prepare_request`` (HttpUser): added to the prepared request's headers unless
  the request or the session (``client.headers``) already has them.
* ``TaskSet.execute_next_task``, only with ``per: iteration``: each task run starts a new
  trace; its requests are spans of it (a new parent-id each).

Per request that is a list pop, two more header entries and, with ``per: iteration``, one
string concatenation (:mod:`harness.load.trace`). The runner's request listener keeps the examples
(:meth:`Tracer.keep`, :class:`harness.measure.examples.ExampleKeeper`): per request one lookup
and a comparison, in the listener itself;
only a request that is among its endpoint's slowest or first failed has its trace id read
back from the request it sent.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import Any

from geventhttpclient.header import Headers
from locust import TaskSet, User
from locust.clients import HttpSession
from locust.contrib.fasthttp import FastHttpSession

from harness.load.protocol import Examples as ExamplesReport
from harness.load.trace import BAGGAGE, TRACEPARENT, IdPool, TracePer, TraceSettings, baggage, trace_id_of
from harness.measure.examples import Example, ExampleKeeper

__all__ = ["Tracer", "install", "traced"]

_BOTH = (True, True)  # add traceparent, add baggage


class Tracer:
    """The trace context of one load process: ids, the current baggage, the examples kept."""

    def __init__(self, settings: TraceSettings, run_id: str) -> None:
        self.settings = settings
        self.run_id = run_id
        self.flags = "-01" if settings.sampled else "-00"
        self.baggage = baggage(run_id, "", ())
        self.keeper = ExampleKeeper()
        self._trace_ids = IdPool(32)
        self._span_ids = IdPool(16)
        self._headers: list[str] = []  # preformatted traceparents, one trace each
        #: A new span's ``traceparent`` for a request of ``user``: chosen once, not per request.
        self.traceparent: Callable[[Any], str] = (
            self._in_iteration if settings.per is TracePer.ITERATION else self._of_its_own
        )

    def set_context(self, phase: str, faults: Sequence[str]) -> None:
        """The run's phase or active faults changed: the baggage of the requests from now on."""
        self.baggage = baggage(self.run_id, phase, faults)

    def _of_its_own(self, user: Any) -> str:
        """A new trace of one span (``per: request``)."""
        try:
            return self._headers.pop()
        except IndexError:
            t, s, f = self._trace_ids.take, self._span_ids.take, self.flags
            self._headers = [f"00-{t()}-{s()}{f}" for _ in range(1024)]
            return self._headers.pop()

    def _in_iteration(self, user: Any) -> str:
        """A new span of the user's current task run's trace (``per: iteration``); outside a task
        (``on_start``, say) a trace of its own."""
        prefix = getattr(user, "_harness_trace", "")
        return prefix + self._span_ids.take() + self.flags if prefix else self._of_its_own(user)

    def new_trace(self) -> str:
        """The ``traceparent`` prefix of a new trace (``00-<trace-id>-``)."""
        return "00-" + self._trace_ids.take() + "-"

    def keep(
        self,
        method: str,
        name: str,
        response_time: float,
        failure: str | None,
        exception: BaseException | None,
        response: Any,
        second: int,
    ) -> None:
        """Keep a request as an example if it is among its endpoint's slowest or first failed.

        The runner's request listener calls this only for a request slower than its endpoint's
        floor (:attr:`ExampleKeeper.floor`) or failed, with the failure kind it recorded."""
        if not self.keeper.wanted((method, name), response_time, failure is not None):
            return
        trace_id = trace_id_of(_sent_traceparent(response, exception))
        if trace_id:
            self.keeper.offer(method, name, Example(trace_id, round(response_time, 3), second, failure or ""))

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


class _TracedHeaders(Headers):
    """A FastHttpSession's default headers that add a new ``traceparent`` (and the baggage) to
    each request's copy of them. geventhttpclient copies the default headers for every request
    and updates the copy with the request's own, so a locustfile's headers win, in any case."""

    tracer: Tracer
    user: Any
    adds: tuple[bool, bool] = _BOTH

    def copy(self) -> Headers:
        clone = Headers()
        clone._copy_from(self)
        add_traceparent, add_baggage = self.adds
        if add_traceparent:  # the raw storage: lower-case field -> (field, value)
            _set(clone, TRACEPARENT, (TRACEPARENT, self.tracer.traceparent(self.user)))
        if add_baggage:
            _set(clone, BAGGAGE, (BAGGAGE, self.tracer.baggage))
        return clone


_set = dict.__setitem__


def _traced_defaults(defaults: Headers, tracer: Tracer, user: Any) -> Headers:
    """``defaults`` as :class:`_TracedHeaders`, unless they name both headers themselves."""
    adds = (TRACEPARENT not in defaults, BAGGAGE not in defaults)
    if not any(adds):
        return defaults
    traced = _TracedHeaders()
    traced._copy_from(defaults)
    traced.tracer, traced.user, traced.adds = tracer, user, adds
    return traced


def install(tracer: Tracer) -> None:
    """Put the trace headers on every request of this process from now on.

    Wraps Locust's client classes in this process (a load process runs nothing else). Call
    once, before users start.
    """
    traceparent = tracer.traceparent
    init_fast = FastHttpSession.__init__

    def fast_init(self: FastHttpSession, *args: Any, **kwargs: Any) -> None:
        init_fast(self, *args, **kwargs)
        self.client.default_headers = _traced_defaults(self.client.default_headers, tracer, self.user)

    prepare = HttpSession.prepare_request

    def prepare_request(self: HttpSession, request: Any) -> Any:
        prepared = prepare(self, request)
        headers = prepared.headers  # case-insensitive: the request's and the session's own
        if TRACEPARENT not in headers:
            headers[TRACEPARENT] = traceparent(self.user)
        if BAGGAGE not in headers:
            headers[BAGGAGE] = tracer.baggage
        return prepared

    FastHttpSession.__init__ = fast_init  # type: ignore[method-assign]
    HttpSession.prepare_request = prepare_request  # type: ignore[method-assign]
    if tracer.settings.per is TracePer.ITERATION:
        execute = TaskSet.execute_next_task
        new_trace = tracer.new_trace

        def execute_next_task(self: TaskSet) -> None:
            self.user._harness_trace = new_trace()  # type: ignore[attr-defined]
            execute(self)

        TaskSet.execute_next_task = execute_next_task  # type: ignore[method-assign]
        User._harness_trace = ""  # type: ignore[attr-defined]  # outside a task: a trace per request


def traced(settings: TraceSettings | None) -> Tracer | None:
    """The process's installed tracer (its run id from ``HARNESS_RUN_ID``), or None when tracing is off."""
    if settings is None:
        return None
    tracer = Tracer(settings, os.environ.get("HARNESS_RUN_ID", ""))
    install(tracer)
    return tracer
