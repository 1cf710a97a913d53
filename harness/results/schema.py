"""The InfluxDB schema of a run: the one owner of every measurement, tag and field name.

Writers (:mod:`harness.results.points`), readers (the baseline's samples, the HTML report, the
Grafana link) and the Grafana dashboards import the names from here, so a name changes in one
place. ``tests/test_results_schema.py`` fails when a measurement name is written as a literal
anywhere else in ``harness/``, when a point carries a name not declared here, and when a
dashboard query reads one.

``run_id`` is a tag on every point. Times are the second (or instant) the point is about, in
nanoseconds.

==================  ==========================================  =========================================
measurement         tags                                        fields
==================  ==========================================  =========================================
harness_requests    run_id, scenario, method, name              count, failures, rps, bytes, p50 .. p999,
                                                                max, mean (ms); service_* the same for the
                                                                raw service time (open model only)
harness_load        run_id, scenario                            users, target_rate, achieved_rate,
                                                                generators, saturated, generator_cpu (%),
                                                                generator_lag_ms
harness_events      run_id, kind (run, phase, stage, fault,     text, state (start, end); planned_offset
                    abort, generator, heal, probe), name        (s), late_ms for steps of the plan; end_ms
                                                                on a fault's start event (see below)
harness_totals      run_id, scenario                            all endpoints, exact (merged histograms):
                                                                count, failures, rps, bytes, p50 .. p999,
                                                                max, mean (ms); histogram (the second's
                                                                merged HdrHistogram, encoded as in
                                                                HdrHistogram interval logs, us)
harness_failures    run_id, scenario, method, name,             count (failed requests of that kind in
                    failure_kind                                that second; no row when there were none)
harness_windows     run_id, window (run, steady, phase:x,       count, failures, error_rate, rps, seconds,
                    during:x, after:x)                          p50 .. p999, max, mean (ms): the exact
                                                                figures summary.json has for the window
harness_endpoints   run_id, method, name                        count, failures, error_rate, rps, seconds,
                                                                bytes, p50 .. p999, max, mean (ms): each
                                                                endpoint's exact figures over the run, as
                                                                summary.json's ``endpoints`` has them
harness_probes      run_id, scenario, probe                     value (the probe's query result, in its own
                                                                unit; no point when a poll failed or gave
                                                                nothing: the failure is a harness_events
                                                                row of kind probe)
harness_slo         run_id, slo                                 value, threshold, passed
harness_heals       run_id, fault                               check (text), since (end or kill), began,
                                                                healed (epoch s; absent: never healed),
                                                                heal_time (s), polls, last_error
harness_runs        run_id, scenario                            verdict, started, ended, planned_end
                                                                (epoch s), text
==================  ==========================================  =========================================

Exact figures. Percentiles of different endpoints or seconds cannot be merged once they are
numbers, so each second's all-endpoints row (``harness_totals``) is computed from the merged
histograms, and its ``histogram`` field keeps that histogram: any window can be recomputed
exactly from InfluxDB alone by decoding and adding them. ``harness_windows`` holds one point
per SLO window at the run's start time, rewritten with the window's figures so far every few
seconds while the run goes, as soon as a window closes (its last second closed: a fault
window's figures are final in InfluxDB within a second or two of the fault's planned end) and
with the final figures when the run ends (the same numbers as ``summary.json``'s
``windows``): Grafana's stat panels and tables read them. ``harness_endpoints`` is the same for
each endpoint over the whole run (``summary.json``'s ``endpoints``), written with the windows:
Grafana's endpoint tables and ``harness report``'s InfluxDB fallback read it, so no figure of
a run has to be estimated from per-second percentiles.

Live runs. Grafana must see a run while it runs, so two records are written twice, the second
time onto the first (same measurement, tags and timestamp: InfluxDB keeps one point and the
later fields win):

* ``harness_runs``: when the load clock starts, as ``verdict = "running"`` with ``started``,
  ``planned_end`` and, for now, ``ended = planned_end``; when the run ends, with its verdict,
  its real ``ended`` and the verdict's reason in ``text``. (``verdict`` is a field, not a tag,
  for exactly this reason: a tag that changes would make a second point.)
* a fault's start event carries ``end_ms`` (epoch ms), the fault's planned end while it is
  active; when the fault is reverted, the start event is written again with the real end. The
  fault's region in Grafana is that one row, from its time to ``end_ms``.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

__all__ = [
    "ACHIEVED_RATE",
    "BYTES",
    "COUNT",
    "ENDED",
    "ENDPOINTS",
    "END_MS",
    "ERROR_RATE",
    "EVENTS",
    "FAILURES",
    "FAILURE_KIND",
    "FAILURE_KINDS",
    "GENERATORS",
    "GENERATOR_CPU",
    "GENERATOR_LAG_MS",
    "HEALS",
    "HISTOGRAM",
    "KIND",
    "LATENCY_FIELDS",
    "LATE_MS",
    "LOAD",
    "MAX",
    "MEAN",
    "MEASUREMENTS",
    "METHOD",
    "NAME",
    "NS_PER_S",
    "P50",
    "P75",
    "P90",
    "P95",
    "P99",
    "P999",
    "PASSED",
    "PLANNED_END",
    "PLANNED_OFFSET",
    "PROBE",
    "PROBES",
    "REQUESTS",
    "RPS",
    "RUNNING",
    "RUNS",
    "RUN_ID",
    "SATURATED",
    "SCENARIO",
    "SECONDS",
    "SERVICE_FIELDS",
    "SLO",
    "SLO_NAME",
    "STARTED",
    "STATE",
    "TARGET_RATE",
    "TEXT",
    "THRESHOLD",
    "TOTALS",
    "USERS",
    "VALUE",
    "VERDICT",
    "WINDOW",
    "WINDOWS",
    "EventKind",
    "EventState",
    "Measurement",
    "service_field",
]

NS_PER_S = 1_000_000_000

# ---------------------------------------------------------------- tags

RUN_ID = "run_id"  # on every point
SCENARIO = "scenario"
METHOD = "method"  # harness_requests: the HTTP method
NAME = "name"  # harness_requests: the endpoint's name; harness_events: the phase, fault, stage... name
KIND = "kind"  # harness_events: an EventKind
SLO_NAME = "slo"  # harness_slo: the SLO's name
FAILURE_KIND = "failure_kind"  # harness_failures: the kind of failure (an HTTP status, an exception name)
PROBE = "probe"  # harness_probes: the probe's name (the scenario's probes.queries[].name)
WINDOW = "window"  # harness_windows: the SLO window (run, steady, phase:<name>, during:<fault>...)
FAULT = "fault"  # harness_heals: the fault whose heal it is

# ---------------------------------------------------------------- fields

COUNT = "count"
FAILURES = "failures"
RPS = "rps"
BYTES = "bytes"
P50 = "p50"
P75 = "p75"
P90 = "p90"
P95 = "p95"
P99 = "p99"
P999 = "p999"
MAX = "max"
MEAN = "mean"
#: The latency figures of a second of one endpoint (ms), as ``EndpointStats.latency_ms`` names them.
LATENCY_FIELDS = (P50, P75, P90, P95, P99, P999, MAX, MEAN)
_SERVICE_PREFIX = "service_"
#: The same figures of the raw service time (open model: latency counts from the intended start).
SERVICE_FIELDS = tuple(_SERVICE_PREFIX + name for name in LATENCY_FIELDS)

HISTOGRAM = "histogram"  # harness_totals: the second's merged HdrHistogram (us), base64 of the compressed form
ERROR_RATE = "error_rate"
SECONDS = "seconds"

USERS = "users"
TARGET_RATE = "target_rate"
ACHIEVED_RATE = "achieved_rate"
GENERATORS = "generators"
SATURATED = "saturated"
GENERATOR_CPU = "generator_cpu"  # the busiest process's CPU demand (%)
GENERATOR_LAG_MS = "generator_lag_ms"  # the busiest process's event-loop lag (ms)

TEXT = "text"
STATE = "state"
PLANNED_OFFSET = "planned_offset"
LATE_MS = "late_ms"

VALUE = "value"
THRESHOLD = "threshold"
PASSED = "passed"

VERDICT = "verdict"  # harness_runs: running, passed, failed, aborted, invalid, interrupted, error
RUNNING = "running"  # harness_runs' verdict while the run is going
STARTED = "started"
ENDED = "ended"
PLANNED_END = "planned_end"
END_MS = "end_ms"  # harness_events: a fault start's end (epoch ms): planned while active, then real

CHECK = "check"  # harness_heals: the heal condition in words
SINCE = "since"  # harness_heals: end (heal_time from the fault's end) or kill
BEGAN = "began"  # harness_heals: epoch s heal_time runs from
HEALED = "healed"  # harness_heals: epoch s the condition first held (absent: never, within the run)
HEAL_TIME = "heal_time"  # harness_heals: healed - began (s)
POLLS = "polls"
LAST_ERROR = "last_error"  # harness_heals: what the last poll found, when it never healed


def service_field(latency_field: str) -> str:
    """The service-time field beside a latency field (``p99`` -> ``service_p99``)."""
    return _SERVICE_PREFIX + latency_field


class EventKind(StrEnum):
    """The ``kind`` tag of harness_events: what Grafana draws as annotations."""

    RUN = "run"
    PHASE = "phase"
    STAGE = "stage"
    FAULT = "fault"
    ABORT = "abort"
    GENERATOR = "generator"
    PROBE = "probe"  # a probe's poll failed (state start) or answered again (end)
    HEAL = "heal"  # the instant a fault's heal condition was first seen holding (name: the fault)
    STEADY = "steady"  # a fault that waited: the instant its steady state held (name: the fault)


class EventState(StrEnum):
    """The ``state`` field of harness_events."""

    START = "start"
    END = "end"


# ---------------------------------------------------------------- measurements


@dataclass(frozen=True, slots=True)
class Measurement:
    """One measurement: its name and every tag and field it may carry."""

    name: str
    tags: tuple[str, ...]
    fields: tuple[str, ...]


REQUESTS = Measurement(
    "harness_requests",
    (RUN_ID, SCENARIO, METHOD, NAME),
    (COUNT, FAILURES, RPS, BYTES, *LATENCY_FIELDS, *SERVICE_FIELDS),
)
TOTALS = Measurement("harness_totals", (RUN_ID, SCENARIO), (COUNT, FAILURES, RPS, BYTES, *LATENCY_FIELDS, HISTOGRAM))
FAILURE_KINDS = Measurement("harness_failures", (RUN_ID, SCENARIO, METHOD, NAME, FAILURE_KIND), (COUNT,))
WINDOWS = Measurement("harness_windows", (RUN_ID, WINDOW), (COUNT, FAILURES, ERROR_RATE, RPS, SECONDS, *LATENCY_FIELDS))
ENDPOINTS = Measurement(
    "harness_endpoints",
    (RUN_ID, METHOD, NAME),
    (COUNT, FAILURES, ERROR_RATE, RPS, SECONDS, BYTES, *LATENCY_FIELDS),
)
LOAD = Measurement(
    "harness_load",
    (RUN_ID, SCENARIO),
    (USERS, TARGET_RATE, ACHIEVED_RATE, GENERATORS, SATURATED, GENERATOR_CPU, GENERATOR_LAG_MS),
)
EVENTS = Measurement("harness_events", (RUN_ID, KIND, NAME), (TEXT, STATE, PLANNED_OFFSET, LATE_MS, END_MS))
PROBES = Measurement("harness_probes", (RUN_ID, SCENARIO, PROBE), (VALUE,))
SLO = Measurement("harness_slo", (RUN_ID, SLO_NAME), (VALUE, THRESHOLD, PASSED))
RUNS = Measurement("harness_runs", (RUN_ID, SCENARIO), (VERDICT, STARTED, ENDED, PLANNED_END, TEXT))
HEALS = Measurement("harness_heals", (RUN_ID, FAULT), (CHECK, SINCE, BEGAN, HEALED, HEAL_TIME, POLLS, LAST_ERROR))

#: Every measurement harness writes, in the order a reader of a whole run asks for them.
MEASUREMENTS = (RUNS, EVENTS, REQUESTS, TOTALS, FAILURE_KINDS, LOAD, WINDOWS, ENDPOINTS, SLO, HEALS, PROBES)
