"""W3C ``traceparent`` and ``baggage`` on every request of a Locust process, and example trace ids.

Installed once per load process (:func:`install`), before any user starts, where each Locust
HTTP client builds a request:

* FastHttpUser: geventhttpclient's ``HTTPClient._build_request`` makes the request head as one
  string; the two header lines are added to its end, unless the request's headers (the
  locustfile's own, its session's ``default_headers`` included, in any case) name them
  already, so a locustfile's headers win. The head was built (and its header names and values
  checked) by geventhttpclient; the ids and the baggage are hex digits and percent-encoded
  text, which need no check. Going through geventhttpclient's header merges and checks
  instead costs about 3 us a request more (``benchmarks/per_request.py --trace``).
* ``HttpSession.prepare_request`` (HttpUser): added to the prepared request's headers unless
  the request or the session (``client.headers``) already has them.
* ``TaskSet.execute_next_task``, only with ``per: iteration``: each task run starts a new
  trace for its greenlet (the user's); its requests are spans of it (a new parent-id each).
  A request from a greenlet the task spawned itself is a trace of its own.

Per request that is a list pop, two membership tests and one string concatenation
(:mod:`harness.load.trace`), and the ``traceparent`` sent is noted by greenlet. The runner's
request listener keeps the examples (:meth:`Tracer.keep`,
:class:`harness.measure.examples.ExampleKeeper`): per request one lookup and a comparison, in
the listener itself; only a request that is among its endpoint's slowest or first failed has
its ``traceparent`` looked up, in the same greenlet, just after it was sent.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import Any

from gevent import getcurrent
from geventhttpclient.client import HTTPClient
from geventhttpclient.header import Headers
from locust import TaskSet
from locust.clients import HttpSession

from harness.load.protocol import Examples as ExamplesReport
from harness.load.trace import BAGGAGE, TRACEPARENT, IdPool, TracePer, TraceSettings, baggage, trace_id_of
from harness.measure.examples import Example, ExampleKeeper

__all__ = ["Tracer", "install", "traced"]


class Tracer:
    """The trace context of one load process: ids, the current baggage, the examples kept."""

    def __init__(self, settings: TraceSettings, run_id: str) -> None:
        self.settings = settings
        self.run_id = run_id
        self.flags = "-01" if settings.sampled else "-00"
        self.baggage = baggage(run_id, "", ())
        self.keeper = ExampleKeeper()
        #: The ``traceparent`` each greenlet (a user's, mostly) last sent: read back for an example.
        self.sent: dict[Any, str] = {}
        #: The ``traceparent`` prefix of each greenlet's current task run (``per: iteration``).
        self.iterations: dict[Any, str] = {}
        self._trace_ids = IdPool(32)
        self._span_ids = IdPool(16)
        self._headers: list[str] = []  # preformatted traceparents, one trace each
        #: A new span's ``traceparent`` for the current request: chosen once, not per request.
        self.traceparent: Callable[[], str] = (
            self._in_iteration if settings.per is TracePer.ITERATION else self._of_its_own
        )

    def set_context(self, phase: str, faults: Sequence[str]) -> None:
        """The run's phase or active faults changed: the baggage of the requests from now on."""
        self.baggage = baggage(self.run_id, phase, faults)

    def _of_its_own(self) -> str:
        """A new trace of one span (``per: request``)."""
        try:
            return self._headers.pop()
        except IndexError:
            t, s, f = self._trace_ids.take, self._span_ids.take, self.flags
            self._headers = [f"00-{t()}-{s()}{f}" for _ in range(1024)]
            return self._headers.pop()

    def _in_iteration(self) -> str:
        """A new span of the current greenlet's task run's trace (``per: iteration``); outside a
        task (``on_start``, say) a trace of its own."""
        prefix = self.iterations.get(getcurrent())
        return prefix + self._span_ids.take() + self.flags if prefix else self._of_its_own()

    def new_trace(self) -> str:
        """The ``traceparent`` prefix of a new trace (``00-<trace-id>-``)."""
        return "00-" + self._trace_ids.take() + "-"

    def keep(self, method: str, name: str, response_time: float, failure: str | None, second: int) -> None:
        """Keep the request just completed as an example if it is among its endpoint's slowest or
        first failed.

        The runner's request listener calls this only for a request slower than its endpoint's
        floor (:attr:`ExampleKeeper.floor`) or failed, with the failure kind it recorded, in the
        greenlet that sent it: the ``traceparent`` that greenlet sent last is the request's."""
        if not self.keeper.wanted((method, name), response_time, failure is not None):
            return
        trace_id = trace_id_of(self.sent.get(getcurrent()))
        if trace_id:
            self.keeper.offer(method, name, Example(trace_id, round(response_time, 3), second, failure or ""))

    def report(self, process: str) -> str | None:
        """The examples report line of what was kept since the last call, or None."""
        new = self.keeper.take_new()
        return ExamplesReport(process, new).encode() if new else None

    def head_lines(self, headers: Any) -> str:
        """The header lines to add to a request head with ``headers`` (the request's own, its
        session's defaults merged in): both, or those it does not name itself."""
        theirs = _named(headers)
        if theirs is None:
            traceparent = self.sent[getcurrent()] = self.traceparent()
            return "traceparent: " + traceparent + "\r\nbaggage: " + self.baggage + "\r\n"
        own_traceparent, own_baggage = theirs
        lines = ""
        if own_traceparent is None:
            traceparent = self.sent[getcurrent()] = self.traceparent()
            lines += "traceparent: " + traceparent + "\r\n"
        else:
            self.sent[getcurrent()] = own_traceparent
        return lines if own_baggage else lines + "baggage: " + self.baggage + "\r\n"


_has = dict.__contains__  # a Headers keeps its fields under their lower-case names: no lower() per request


def _named(headers: Any) -> tuple[str | None, bool] | None:
    """``(its traceparent or None, whether it has a baggage)`` when ``headers`` names either; None
    when it names neither (the common case: two dict lookups)."""
    if not isinstance(headers, dict) or (not _has(headers, TRACEPARENT) and not _has(headers, BAGGAGE)):
        return None
    try:
        own = headers.get(TRACEPARENT)
    except Exception:  # an odd mapping of a custom client: treat it as named, never fail a request
        own = None
    return (str(own) if own is not None else None), BAGGAGE in headers


def install(tracer: Tracer) -> None:
    """Put the trace headers on every request of this process from now on.

    Wraps Locust's and geventhttpclient's client classes in this process (a load process runs
    nothing else). Call once, before users start.
    """
    traceparent, sent, head_lines = tracer.traceparent, tracer.sent, tracer.head_lines
    build = HTTPClient._build_request

    def build_request(
        self: HTTPClient, method: str, request_uri: str, body: Any = b"", headers: Any = None, chunked: Any = None
    ) -> str:
        head = build(self, method, request_uri, body, headers, chunked)
        if type(headers) is not Headers or _has(headers, TRACEPARENT) or _has(headers, BAGGAGE):
            return head[:-2] + head_lines(headers) + "\r\n"  # it names one itself (or is a custom client's)
        # The common case, inline: per request a few C calls and one string (before the head's blank line).
        sent_now = sent[getcurrent()] = traceparent()
        return head[:-2] + "traceparent: " + sent_now + "\r\nbaggage: " + tracer.baggage + "\r\n\r\n"

    prepare = HttpSession.prepare_request

    def prepare_request(self: HttpSession, request: Any) -> Any:
        prepared = prepare(self, request)
        headers = prepared.headers  # case-insensitive: the request's and the session's own
        if TRACEPARENT not in headers:
            headers[TRACEPARENT] = traceparent()
        sent[getcurrent()] = str(headers[TRACEPARENT])
        if BAGGAGE not in headers:
            headers[BAGGAGE] = tracer.baggage
        return prepared

    HTTPClient._build_request = build_request  # type: ignore[method-assign]
    HttpSession.prepare_request = prepare_request  # type: ignore[method-assign]
    if tracer.settings.per is TracePer.ITERATION:
        execute = TaskSet.execute_next_task
        new_trace, iterations = tracer.new_trace, tracer.iterations

        def execute_next_task(self: TaskSet) -> None:
            iterations[getcurrent()] = new_trace()
            execute(self)

        TaskSet.execute_next_task = execute_next_task  # type: ignore[method-assign]


def traced(settings: TraceSettings | None) -> Tracer | None:
    """The process's installed tracer (its run id from ``HARNESS_RUN_ID``), or None when tracing is off."""
    if settings is None:
        return None
    tracer = Tracer(settings, os.environ.get("HARNESS_RUN_ID", ""))
    install(tracer)
    return tracer
