"""The scenario's top-level models: target, load, SLOs, guards, baseline, results, safety, ``Scenario``."""

from __future__ import annotations

import difflib
import math
import re
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import (
    AfterValidator,
    BeforeValidator,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    WithJsonSchema,
)

from harness.judge.objectives import lookup
from harness.scenario.expressions import (
    Condition,
    Objective,
    WindowKind,
    WindowRef,
    parse_condition,
    parse_duration,
    parse_objective,
    parse_window,
)
from harness.scenario.faults import Fault
from harness.scenario.fields import AbsoluteDir, AsText, Cidr, Duration, IfName, Model, Name, NodeSelector, Percent
from harness.scenario.probes import Probes


class Target(Model):
    """The system under test and the hosts load may be sent to."""

    base_url: str = Field(description="Base URL the Locust users send requests to, e.g. http://127.0.0.1:8700.")
    allowed_hosts: list[str] = Field(
        default_factory=list,
        description="Hosts load may go to; the base URL's host must be one of them. Empty means only that host.",
    )

    def host(self) -> str:
        return urlsplit(self.base_url).hostname or ""


class UserClass(Model):
    """A Locust User class from the locustfile and its share of the users."""

    class_name: str = Field(alias="class", description="Name of a User class defined in the locustfile.")
    weight: int = Field(default=1, ge=1, le=10_000, description="Relative share of users of this class.")


class UsersStage(Model):
    """Closed model: hold ``users`` concurrent users, ramping at ``spawn_rate`` users/s."""

    name: Name | None = Field(default=None, description="Phase name, usable in SLO windows as phase:NAME.")
    at: Duration | None = Field(
        default=None, description="Offset from the run start; defaults to the end of the previous stage."
    )
    duration: Duration = Field(description="How long the stage lasts (e.g. 30s, 1m).")
    users: int = Field(ge=0, le=1_000_000, description="Concurrent users to reach and hold.")
    spawn_rate: float = Field(default=10.0, gt=0, le=100_000, description="Users started or stopped per second.")


class RateStage(Model):
    """Open model: start ``arrival_rate`` task iterations per second, whatever the latency."""

    name: Name | None = Field(default=None, description="Phase name, usable in SLO windows as phase:NAME.")
    at: Duration | None = Field(
        default=None, description="Offset from the run start; defaults to the end of the previous stage."
    )
    duration: Duration = Field(description="How long the stage lasts.")
    arrival_rate: float = Field(ge=0, le=10_000_000, description="Task iterations started per second, all generators.")
    max_users: int = Field(
        default=1000, ge=1, le=1_000_000, description="Upper bound of concurrent users serving the arrivals."
    )


def stage_tag(value: Any) -> str:
    """Which load model a stage is written in: open when it has ``arrival_rate`` (or, without
    ``users``, a key that is a misspelling of it: one mistake is then one message, the key's)."""
    if isinstance(value, dict):
        if "arrival_rate" in value:
            return "rate_stage"
        keys = [k for k in value if isinstance(k, str)]
        if "users" not in value and difflib.get_close_matches("arrival_rate", keys, n=1, cutoff=0.8):
            return "rate_stage"
    return "users_stage"


Stage = Annotated[
    Annotated[UsersStage, Tag("users_stage")] | Annotated[RateStage, Tag("rate_stage")],
    Discriminator(stage_tag),
]


def _trace_switch(value: Any) -> Any:
    """``off``/``false``: no trace context (None); ``on``/``true``: the defaults."""
    if value is False or value == "off":
        return None
    return {} if value is True or value == "on" else value


_TRACE_SCHEMA: dict[str, Any] = {
    "anyOf": [
        {
            "type": "object",
            "properties": {"per": {"enum": ["request", "iteration"]}, "sampled": {"type": "boolean"}},
            "additionalProperties": False,
        },
        {"enum": ["off", "on", True, False]},
    ]
}


class Trace(Model):
    """W3C trace context on every request: a ``traceparent`` and a ``baggage`` header (docs/scenarios.md)."""

    per: Literal["request", "iteration"] = Field(
        default="request",
        description="request: every request starts a new trace; iteration: the requests of one Locust task run "
        "share a trace, one span each.",
    )
    sampled: bool = Field(default=True, description="The traceparent's sampled flag (01), asking backends to record.")


class Load(Model):
    """How load is generated: which locustfile, which users, which stages."""

    locustfile: str = Field(description="Path to the locustfile, relative to the scenario file.")
    user_classes: list[UserClass] = Field(
        default_factory=list,
        description="User classes to run, with weights. Omitted: every non-abstract User class in the "
        "locustfile, each with its own weight or fixed_count, as Locust does.",
    )
    stages: list[Stage] = Field(
        default_factory=list,
        description="Load stages in order; all closed or all open model. Give stages or shape, not both.",
    )
    shape: Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")] | None = Field(
        default=None,
        description="A LoadTestShape class in the locustfile that drives the users instead of stages: "
        "its tick() is read once per second of the run, as Locust does (see docs/locustfiles.md).",
    )
    arguments: dict[
        Annotated[str, Field(pattern=r"^-{0,2}[A-Za-z_][A-Za-z0-9_-]*$")],
        str | int | float | bool | list[str | int | float],
    ] = Field(
        default_factory=dict,
        description="Values of the locustfile's own command-line arguments (declared with "
        "@events.init_command_line_parser), by name: {my-arg: 5} is --my-arg=5; true/false for a flag.",
    )
    generators: int = Field(default=1, ge=1, le=1000, description="LoadGenerator actors (one per load node).")
    processes: int | Literal["auto"] = Field(
        default="auto", description="Locust subprocesses per generator; auto means one per core."
    )
    node: NodeSelector | None = Field(
        default=None,
        description="Ray nodes generators may run on (e.g. {labels: {harness.io/role: generator}}); "
        "default any node with a CPU.",
    )
    trace: Annotated[Trace | None, BeforeValidator(_trace_switch), WithJsonSchema(_TRACE_SCHEMA)] = Field(
        default_factory=Trace,
        description="W3C traceparent and baggage (run id, phase, active faults) on every request: "
        "{per: request|iteration, sampled: true|false}; off (or false) sends neither. On by default.",
    )


#: Where stress.io and stress.disk_fill may write when the scenario lists no safety.allowed_paths.
DEFAULT_ALLOWED_PATHS = ("/tmp", "/var/tmp")


class Safety(Model):
    """What faults may act on, beyond the target hosts. The kubeconfig itself comes from $KUBECONFIG.

    The load hosts (the base URL's host and ``target.allowed_hosts``, when written as IP
    addresses, or ``localhost``) count as allowed networks of one address each, so a fault that
    cuts or slows a service the load goes to needs none of these keys. What each list guards
    is in docs/security.md.
    """

    allowed_contexts: list[Annotated[str, Field(min_length=1, max_length=253)]] = Field(
        default_factory=list,
        description="Kube contexts (names in the kubeconfig) Kubernetes faults may act in; required for them.",
    )
    allowed_networks: list[Cidr] = Field(
        default_factory=list,
        max_length=256,
        description=(
            "Networks (CIDR) faults may act on besides the load hosts: every peer of network.partition and "
            "network.loss, a transparent proxy's service and a proxy's control address must lie inside one."
        ),
    )
    allowed_interfaces: list[IfName] = Field(
        default_factory=list,
        max_length=64,
        description=(
            "Interfaces of the host's own network namespace that network faults may name (lo too: Ray and "
            "harness talk over it); an interface inside a named target.netns needs no listing."
        ),
    )
    allowed_paths: list[AbsoluteDir] = Field(
        default=list(DEFAULT_ALLOWED_PATHS),  # a default, not a factory: the schema shows it
        max_length=64,
        description=(
            "Directories (absolute) under which stress.io and stress.disk_fill may write and io faults "
            "may mount; "
            "default /tmp and /var/tmp. Giving the key replaces the default."
        ),
    )


_ERROR_KIND = re.compile(r"^(?:[1-5]xx|[1-5][0-9][0-9]|http_[1-5][0-9][0-9]|[A-Za-z_][A-Za-z0-9_.]*)$")


def _error_kind(value: str) -> str:
    if not _ERROR_KIND.match(value):
        raise ValueError(
            f"'{value}' is not an error kind; use a status (503), a status class (5xx), "
            "a recorded kind (http_503) or an exception name (ConnectionError)"
        )
    return value


ErrorKind = Annotated[
    str,
    BeforeValidator(lambda v: str(v) if isinstance(v, int) and not isinstance(v, bool) else v),
    AfterValidator(_error_kind),
]


def _latency_ms(value: Any) -> float:
    return parse_objective(f"p99 < {value}" if not isinstance(value, str) else f"p99 < {value.strip()}").value


class RecoveryRule(Model):
    """When a second counts as recovered, for a recovery_time SLO (client side, per second)."""

    p99: Annotated[float, BeforeValidator(_latency_ms), AsText] | None = Field(
        default=None,
        description="A second is good when its p99 is at or under this (e.g. 500ms). "
        "Default: the threshold of the scenario's steady p99 SLO.",
    )
    error_rate: Percent | None = Field(
        default=None,
        description="...and its error rate at or under this (e.g. 1%). "
        "Default: the threshold of the scenario's steady error_rate SLO.",
    )
    stable_for: Annotated[int, BeforeValidator(lambda v: math.ceil(parse_duration(v)))] = Field(
        default=3,
        ge=1,
        le=600,
        description="Recovered once this many consecutive seconds are good (e.g. 5s); the recovery time "
        "runs from the fault's end to the start of the first such streak.",
    )


class ErrorBudget(Model):
    """The availability objective an error budget comes from, for burn_rate and budget_burn SLOs."""

    availability: Percent = Field(
        description="Share of requests that must succeed over the period, e.g. 99.9%; the budget is the rest."
    )
    period: Annotated[float, BeforeValidator(lambda v: parse_duration(v, limit=366 * 86400.0))] = Field(
        default=30 * 86400.0,
        gt=0,
        description="The budget period, e.g. 30d or 7d; budget_burn is the share of its budget the window used.",
    )


class Slo(Model):
    """An objective judged over a window of the run, for one endpoint or all."""

    name: Name = Field(description="SLO name, shown in the verdict and JUnit output.")
    objective: Annotated[Objective, BeforeValidator(parse_objective), AsText] = Field(
        description="e.g. 'p99 < 250ms', 'error_rate < 1%', 'max < 2s', 'rps >= 100'."
    )
    window: Annotated[WindowRef, BeforeValidator(parse_window), AsText] = Field(
        default=WindowRef(WindowKind.RUN),
        json_schema_extra={"default": "run"},
        description="run, steady, phase:NAME, during:FAULT, after:FAULT[:30s] or last:30s.",
    )
    endpoint: str | None = Field(
        default=None, description="Limit to one endpoint: its name, or 'METHOD name'. All endpoints if omitted."
    )
    errors: list[ErrorKind] = Field(
        default_factory=list,
        max_length=64,
        description="error_rate only: count just these failures: a status (503), a class (5xx), a recorded "
        "kind (http_503) or an exception name (ConnectionError). All failures if omitted.",
    )
    recovery: RecoveryRule | None = Field(
        default=None, description="recovery_time only: what a recovered second is; defaults from the steady SLOs."
    )
    budget: ErrorBudget | None = Field(
        default=None, description="burn_rate and budget_burn only (required there): the availability objective."
    )


class Baseline(Model):
    """How much worse than a baseline run (``--baseline``) this run may be, per phase and endpoint.

    A change fails only when it is both larger than its tolerance and statistically significant
    over the per-second samples (one-sided Mann-Whitney U at ``confidence``), so two runs of the
    same build do not fail each other on noise.
    """

    p99: Percent = Field(default=0.10, description="Relative rise allowed in median per-second p99, e.g. 10%.")
    error_rate: Percent = Field(
        default=0.01, description="Rise allowed in the error rate, in percentage points, e.g. 1% (0.5% -> 1.5%)."
    )
    p99_min_rise: Duration = Field(
        default=0.002,
        le=60,
        description="Smallest rise in median per-second p99 that can count, e.g. 5ms: on a fast endpoint a "
        "scheduler hiccup is +50% (2.7 ms -> 4.2 ms) without mattering to anyone.",
    )
    rps: Percent = Field(default=0.10, description="Relative drop allowed in median requests per second, e.g. 10%.")
    confidence: Percent = Field(
        default=0.99, ge=0.5, lt=1, description="Confidence a change must reach to count, e.g. 99%."
    )
    min_seconds: int = Field(
        default=5, ge=3, le=3600, description="Phases with fewer seconds of samples on either side are not compared."
    )


class Guard(Model):
    """An abort condition checked every second on the live aggregate of all endpoints.

    Its metric must be one a single second can give (the objectives table's ``per_second``);
    the extra keys it may give are those its metric takes, as for an SLO.
    """

    name: Name = Field(description="Guard name, shown when it trips.")
    condition: Annotated[Condition, BeforeValidator(parse_condition), AsText] = Field(
        description="e.g. 'error_rate > 50% for 5s', 'p99 > 5s for 10s' or 'burn_rate > 10 for 30s' "
        "(recovery_time and budget_burn are judged over whole windows, so they cannot be guards)."
    )
    errors: list[ErrorKind] = Field(
        default_factory=list,
        max_length=64,
        description="error_rate only: count just these failures: a status (503), a class (5xx), a recorded "
        "kind (http_503) or an exception name (ConnectionError). All failures if omitted.",
    )
    budget: ErrorBudget | None = Field(
        default=None,
        description="burn_rate only (required there): the availability objective whose error budget the "
        "burn rate is measured against; a guard judges each second's rate, so the period plays no part.",
    )


def _env_name(value: str) -> str:
    if not value.replace("_", "").isalnum() or value[0].isdigit():
        raise ValueError("must be the name of an environment variable, e.g. INFLUX_TOKEN")
    return value


def _no_credentials(value: str) -> str:
    """A results URL without ``user:password@``: secrets come from the environment, never from a scenario."""
    try:
        parts = urlsplit(value)
    except ValueError:
        raise ValueError("not a valid URL") from None
    if parts.username is not None or parts.password is not None:  # the message must not repeat them
        raise ValueError(
            "credentials must not be written in a scenario file: remove 'user:password@' from the URL and "
            "name the environment variable holding the token in results.token_env"
        )
    return value


class Results(Model):
    """Where per-second results go. The token is read from the environment, never from this file."""

    url: Annotated[str, AfterValidator(_no_credentials)] = Field(
        default="http://127.0.0.1:8086", description="InfluxDB base URL (no credentials: see token_env)."
    )
    api: Literal["v1", "v2"] | None = Field(
        default=None, description="Write API: v1 (/write) or v2 (influxdb-client). Default: v2 when bucket is set."
    )
    database: str = Field(default="harness", min_length=1, description="InfluxDB 1.x database.")
    bucket: str | None = Field(default=None, description="InfluxDB 2.x/3.x bucket (v2 API).")
    org: str | None = Field(default=None, description="InfluxDB 2.x organisation (v2 API).")
    token_env: Annotated[str, AfterValidator(_env_name)] | None = Field(
        default=None,
        description="Name of the environment variable holding the token.",
        json_schema_extra={"x-secret-env": True},  # that variable's value is never shown (scenario.redact)
    )

    def write_api(self) -> Literal["v1", "v2"]:
        return self.api or ("v2" if self.bucket else "v1")


class Scenario(Model):
    """A whole scenario: target, load, faults on a timeline, SLOs, guards and results."""

    # The schema is built on first use, not at import: ``faults`` is the union of every
    # registered fault kind, and a fault family's module imports this package.
    model_config = ConfigDict(**Model.model_config, defer_build=True)

    name: Name = Field(description="Scenario name; tags every result point.")
    description: str = Field(default="", description="What the scenario checks, for humans.")
    target: Target = Field(description="System under test.")
    load: Load = Field(description="Load model.")
    faults: list[Fault] = Field(default_factory=list, description="Faults overlaid on the load timeline.")
    slos: list[Slo] = Field(default_factory=list, description="Objectives that decide the verdict.")
    guards: list[Guard] = Field(default_factory=list, description="Abort conditions evaluated every second.")
    probes: Probes | None = Field(
        default=None, description="Server-side metrics (PromQL, InfluxQL) polled during the run: probe:NAME in SLOs."
    )
    baseline: Baseline = Field(
        default_factory=Baseline, description="Tolerances when the run is compared with a baseline run."
    )
    results: Results = Field(default_factory=Results, description="Results destination.")
    safety: Safety = Field(
        default_factory=Safety,
        description="Allow-lists for faults: kube contexts, networks, host interfaces, stress directories.",
    )

    # Filled in by load_scenario; excluded from the schema and from equality.
    source: str = Field(default="", exclude=True, description="Path of the file this came from.")

    @property
    def locustfile_path(self) -> Path:
        return (Path(self.source).parent / self.load.locustfile).resolve()

    @property
    def open_model(self) -> bool:
        return bool(self.load.stages) and isinstance(self.load.stages[0], RateStage)


def scenario_json_schema() -> dict[str, Any]:
    """JSON Schema for editors (``harness schema``)."""
    schema = Scenario.model_json_schema(by_alias=True, mode="validation")
    schema.setdefault("properties", {}).pop("source", None)
    schema["title"] = "harness scenario"
    return schema


def steady_thresholds(slos: list[Slo]) -> tuple[float | None, float | None]:
    """The p99 (ms) and error rate the scenario holds its steady window to, over all endpoints and
    every failure: what a recovery rule defaults to (the last such SLO of each metric counts)."""
    bounds: dict[str, float] = {}
    for slo in slos:
        metric = lookup(slo.objective.metric)
        some_failures = bool(slo.errors) and "errors" in metric.takes
        steady = slo.window.kind is WindowKind.STEADY and slo.endpoint is None
        if steady and slo.objective.op in ("<", "<=") and not some_failures:
            bounds[metric.name] = slo.objective.value
    return bounds.get("p99"), bounds.get("error_rate")


def scenario_total_seconds(scenario: Scenario) -> float:
    """End of the last stage, in seconds from the run start."""
    end = 0.0
    for stage in scenario.load.stages:
        start = end if stage.at is None else stage.at
        end = max(end, start) + stage.duration
    return end
