"""Scenario files: YAML in, frozen pydantic models out, every problem located.

The one room that sees raw scenario data. :func:`load_scenario` reads a file with a bounded safe
loader that remembers where each key was written (:mod:`.source`), validates it against the
models (:mod:`.fields`, :mod:`.model`, and every registered fault family's kinds, read by
:mod:`.faults`; ``extra="forbid"`` everywhere), runs the
checks that span several keys (:mod:`.checks`) and raises one :class:`~harness.errors.ScenarioError`
carrying every problem as ``file:line:col: key.path: message``.
"""

from __future__ import annotations

from harness.scenario.faults import (
    ENTRY_POINT_GROUP,
    Fault,
    FaultBase,
    FaultContext,
    ProcessTarget,
    fault_kinds,
)
from harness.scenario.fields import (
    AbsoluteDir,
    AsText,
    Bytes,
    Cidr,
    Duration,
    HostPort,
    IfName,
    KeyPath,
    KubeNamespace,
    KubeObjectName,
    LabelKey,
    LabelValue,
    Model,
    Name,
    NetnsName,
    NodeSelector,
    Percent,
    Port,
    absolute_dir,
    cidr,
    label_selector,
    regex,
    split_label_selector,
)
from harness.scenario.loader import (
    MAX_SCENARIO_BYTES,
    load_scenario,
    read_scenario,
)
from harness.scenario.locustfile import describe_load, locustfile_notes
from harness.scenario.model import (
    DEFAULT_ALLOWED_PATHS,
    Baseline,
    ErrorBudget,
    ErrorKind,
    Guard,
    Load,
    RateStage,
    RecoveryRule,
    Results,
    Safety,
    Scenario,
    Slo,
    Stage,
    Target,
    UserClass,
    UsersStage,
    scenario_json_schema,
    scenario_total_seconds,
    steady_thresholds,
)
from harness.scenario.overrides import Overrides
from harness.scenario.redact import Loaded

__all__ = [
    "DEFAULT_ALLOWED_PATHS",
    "ENTRY_POINT_GROUP",
    "MAX_SCENARIO_BYTES",
    "AbsoluteDir",
    "AsText",
    "Baseline",
    "Bytes",
    "Cidr",
    "Duration",
    "ErrorBudget",
    "ErrorKind",
    "Fault",
    "FaultBase",
    "FaultContext",
    "Guard",
    "HostPort",
    "IfName",
    "KeyPath",
    "KubeNamespace",
    "KubeObjectName",
    "LabelKey",
    "LabelValue",
    "Load",
    "Loaded",
    "Model",
    "Name",
    "NetnsName",
    "NodeSelector",
    "Overrides",
    "Percent",
    "Port",
    "ProcessTarget",
    "RateStage",
    "RecoveryRule",
    "Results",
    "Safety",
    "Scenario",
    "Slo",
    "Stage",
    "Target",
    "UserClass",
    "UsersStage",
    "absolute_dir",
    "cidr",
    "describe_load",
    "fault_kinds",
    "label_selector",
    "load_scenario",
    "locustfile_notes",
    "read_scenario",
    "regex",
    "scenario_json_schema",
    "scenario_total_seconds",
    "split_label_selector",
    "steady_thresholds",
]
