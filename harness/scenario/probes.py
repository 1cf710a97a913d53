"""The scenario's ``probes``: queries of the servers' own metrics, polled during a run.

A probe is a named number: a PromQL query against a Prometheus-compatible HTTP API
(``/api/v1/query``: Prometheus, VictoriaMetrics, Thanos, Mimir) or an InfluxQL query against
InfluxDB (``/query``), evaluated every ``every`` seconds while the load runs. SLOs and guards
name it as ``probe:<name>``. A query must give one number: a PromQL scalar or an instant vector
of exactly one series (aggregate it: ``sum(...)``, ``max(...)``), an InfluxQL result of one row
whose last column is the value. More than one series is an error, not a guess.

Templating: ``{{run_id}}``, ``{{scenario}}``, ``{{start}}`` (epoch seconds of the load start),
``{{start_rfc3339}}``, ``{{now}}``, ``{{now_rfc3339}}``, ``{{elapsed}}`` (whole seconds since the
start, at least 1: ``rate(x[{{elapsed}}s])`` covers the run so far) and every key of the block's
``labels`` are replaced in a query before it is sent. ``${VAR}`` is the scenario's own environment
substitution (docs/environments.md), done when the file is read.
"""

from __future__ import annotations

import re
from typing import Annotated, Any
from urllib.parse import urlsplit

from pydantic import AfterValidator, Field, model_validator

from harness.scenario.fields import Duration, Model

__all__ = ["TEMPLATE_NAMES", "InfluxSource", "Probe", "Probes", "render", "template_names"]

#: What a query may name in ``{{...}}`` besides the block's labels.
TEMPLATE_NAMES = ("run_id", "scenario", "start", "start_rfc3339", "now", "now_rfc3339", "elapsed")
_TEMPLATE = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}")

ProbeName = Annotated[str, Field(min_length=1, max_length=60, pattern=r"^[a-z_][a-z0-9_]*$")]
LabelName = Annotated[str, Field(min_length=1, max_length=60, pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")]


def template_names(query: str) -> list[str]:
    """The names a query's ``{{...}}`` placeholders use, in order."""
    return _TEMPLATE.findall(query)


def _http_url(value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"'{value}' is not an http(s) URL with a host")
    if parts.username is not None or parts.password is not None:
        raise ValueError("credentials must not be written in a scenario file: remove 'user:password@' from the URL")
    return value.rstrip("/")


HttpUrl = Annotated[str, AfterValidator(_http_url)]


class InfluxSource(Model):
    """An InfluxDB answering InfluxQL on ``/query`` (1.x, or 2.x/3.x through their v1 API)."""

    url: HttpUrl = Field(description="InfluxDB base URL, e.g. http://127.0.0.1:8086.")
    database: str = Field(min_length=1, max_length=200, description="The database the queries read.")


class Probe(Model):
    """One probe: a name and exactly one query, PromQL or InfluxQL."""

    name: ProbeName = Field(description="Lower-case name; SLOs and guards write probe:NAME.")
    promql: str | None = Field(
        default=None,
        min_length=1,
        max_length=4000,
        description="A PromQL instant query giving one number: a scalar or a single series (aggregate with sum, "
        "max...). Sent to probes.prometheus.",
    )
    influxql: str | None = Field(
        default=None,
        min_length=1,
        max_length=4000,
        description="An InfluxQL query giving one row; its last column is the value. Sent to probes.influxdb.",
    )

    @model_validator(mode="after")
    def _one_query(self) -> Probe:
        if (self.promql is None) == (self.influxql is None):
            raise ValueError("give exactly one of promql or influxql")
        return self

    @property
    def language(self) -> str:
        return "promql" if self.promql is not None else "influxql"

    @property
    def query(self) -> str:
        return self.promql if self.promql is not None else self.influxql or ""


class Probes(Model):
    """Server-side metrics polled during the run, stored beside the client's and judged by SLOs and guards."""

    prometheus: HttpUrl | None = Field(
        default=None,
        description="Base URL of a Prometheus-compatible query API (its /api/v1/query answers PromQL), e.g. "
        "http://127.0.0.1:8428 for the demo's VictoriaMetrics.",
    )
    influxdb: InfluxSource | None = Field(default=None, description="The InfluxDB that influxql probes ask.")
    every: Duration = Field(default=2.0, ge=1, le=300, description="How often every probe is polled (e.g. 2s).")
    timeout: Duration = Field(default=2.0, gt=0, le=30, description="How long one query may take before it fails.")
    labels: dict[LabelName, str] = Field(
        default_factory=dict, description="Values the queries can name as {{key}}, e.g. {service: gateway}."
    )
    queries: list[Probe] = Field(min_length=1, max_length=50, description="The probes, each a named query.")

    @model_validator(mode="after")
    def _sources_and_names(self) -> Probes:
        problems = []
        names: set[str] = set()
        known = set(TEMPLATE_NAMES) | set(self.labels)
        for probe in self.queries:
            if probe.name in names:
                problems.append(f"probe name '{probe.name}' is used twice")
            names.add(probe.name)
            if probe.promql is not None and self.prometheus is None:
                problems.append(f"probe '{probe.name}' is PromQL: give probes.prometheus, the query API's URL")
            if probe.influxql is not None and self.influxdb is None:
                problems.append(f"probe '{probe.name}' is InfluxQL: give probes.influxdb {{url, database}}")
            unknown = [n for n in template_names(probe.query) if n not in known]
            if unknown:
                problems.append(
                    f"probe '{probe.name}' names {{{{{unknown[0]}}}}}, which is neither one of "
                    f"{', '.join(TEMPLATE_NAMES)} nor a key of probes.labels"
                )
        if problems:
            raise ValueError("; ".join(problems))
        return self

    def names(self) -> list[str]:
        return [probe.name for probe in self.queries]

    def source_of(self, probe: Probe) -> str:
        """Where ``probe``'s query goes, for people: the query API's URL, or InfluxDB's and the database."""
        if probe.promql is not None:
            return self.prometheus or ""
        return f"{self.influxdb.url} ({self.influxdb.database})" if self.influxdb is not None else ""


def render(query: str, values: dict[str, Any]) -> str:
    """``query`` with every ``{{name}}`` replaced by ``values[name]`` (names checked at load time)."""
    return _TEMPLATE.sub(lambda m: str(values[m.group(1)]), query)
