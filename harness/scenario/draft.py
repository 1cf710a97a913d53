"""A scenario as far as its file validated: each section, and each list item, on its own.

Validation of a whole file stops at nothing (pydantic lists every structural error), but a
``Scenario`` exists only when all of it is right, and the checks that span keys (:mod:`.checks`)
used to wait for one. A ``Draft`` holds what did validate, section by section and item by item,
so one broken fault does not hide a window naming a missing fault or a fault beyond the run:
a file's problems of both kinds come out in one pass.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, TypeAdapter, ValidationError

from harness.scenario.faults import Fault
from harness.scenario.fields import NodeSelector
from harness.scenario.model import Guard, Load, Safety, Scenario, Slo, Stage, Target, UserClass

T = TypeVar("T")
M = TypeVar("M", bound=BaseModel)

#: The names the items of a list wrote, valid or not; ``None`` for an item whose name cannot be
#: read (not a string), and the whole tuple ``None`` when the list itself is not a list.
Names = tuple[str | None, ...] | None


@dataclass(frozen=True)
class Draft:
    """The validated parts of a scenario file; what did not validate is ``None`` (or absent).

    A list section is a tuple with ``None`` for each item that did not validate, so an item keeps
    its index (and its location in the file). The ``*_names`` tuples hold the name each item wrote
    even when the item did not validate: a window ``during:db`` is not "no fault is named 'db'"
    because the fault ``db`` has a mistake of its own.
    """

    source: str
    target: Target | None = None
    locustfile: str | None = None
    user_classes: tuple[UserClass | None, ...] = ()
    stages: tuple[Stage | None, ...] | None = None
    shape: str | None = None
    arguments: tuple[str, ...] = ()  # the argument names load.arguments gives
    processes: int | Literal["auto"] = "auto"
    load_node: NodeSelector | None = None
    faults: tuple[Fault | None, ...] = ()
    slos: tuple[Slo | None, ...] = ()
    guards: tuple[Guard | None, ...] = ()
    safety: Safety | None = None
    phase_names: Names = None
    fault_names: Names = None
    slo_names: Names = None
    guard_names: Names = None
    probe_names: Names = None  # None: no readable probes block (every probe:NAME may be meant)

    @classmethod
    def of(cls, scenario: Scenario) -> Draft:
        """The draft of a scenario that validated whole: every part present."""
        load = scenario.load
        return cls(
            source=scenario.source,
            target=scenario.target,
            locustfile=load.locustfile,
            user_classes=tuple(load.user_classes),
            stages=tuple(load.stages),
            shape=load.shape,
            arguments=tuple(load.arguments),
            processes=load.processes,
            load_node=load.node,
            faults=tuple(scenario.faults),
            slos=tuple(scenario.slos),
            guards=tuple(scenario.guards),
            safety=scenario.safety,
            phase_names=tuple(s.name or f"stage-{i + 1}" for i, s in enumerate(load.stages)),
            fault_names=tuple(f.name for f in scenario.faults),
            slo_names=tuple(s.name for s in scenario.slos),
            guard_names=tuple(g.name for g in scenario.guards),
            probe_names=tuple(scenario.probes.names()) if scenario.probes else (),
        )

    def total_seconds(self) -> float | None:
        """End of the last stage, or ``None`` when a stage did not validate (the end is unknown)."""
        if not self.stages or None in self.stages:
            return None
        end = 0.0
        for stage in self.stages:
            assert stage is not None  # for mypy: checked above
            start = end if stage.at is None else stage.at
            end = max(end, start) + stage.duration
        return end


def salvage(data: Mapping[str, Any], source: str) -> Draft:
    """Validate ``data`` (a scenario document that failed as a whole) part by part."""
    load = data.get("load")
    load = load if isinstance(load, Mapping) else {}
    stages = _items(_STAGE, load.get("stages"), required="shape" not in load)
    faults = _items(_fault(), data.get("faults")) or ()
    slos = _items(_SLO, data.get("slos")) or ()
    guards = _items(_GUARD, data.get("guards")) or ()
    user_classes = _items(_USER_CLASS, load.get("user_classes"), required=True) or ()
    return Draft(
        source=source,
        target=_model(Target, data.get("target")),
        locustfile=_field(Load, "locustfile", load),
        user_classes=user_classes,
        stages=stages,
        shape=_field(Load, "shape", load),
        arguments=tuple(str(k) for k in load["arguments"]) if isinstance(load.get("arguments"), Mapping) else (),
        processes=_field(Load, "processes", load),
        load_node=_field(Load, "node", load),
        faults=faults,
        slos=slos,
        guards=guards,
        safety=_model(Safety, data.get("safety", {})),
        phase_names=_names(load.get("stages"), stages, unnamed="stage-{}"),
        fault_names=_names(data.get("faults", []), faults),
        slo_names=_names(data.get("slos", []), slos),
        guard_names=_names(data.get("guards", []), guards),
        probe_names=_probe_names(data.get("probes")),
    )


def _probe_names(block: Any) -> Names:
    """The names the probes block gives (empty without one; None when it cannot be read)."""
    if block is None:
        return ()
    queries = block.get("queries") if isinstance(block, Mapping) else None
    if not isinstance(queries, list):
        return None
    return tuple(q.get("name") if isinstance(q, Mapping) and isinstance(q.get("name"), str) else None for q in queries)


_STAGE: TypeAdapter[Stage] = TypeAdapter(Stage)


@functools.cache
def _fault() -> TypeAdapter[Fault]:
    """Built on first use: the union of every registered fault kind reads the registry, whose
    families import this package (building it at import would meet a half-loaded family)."""
    return TypeAdapter(Fault)


_SLO = TypeAdapter(Slo)
_GUARD = TypeAdapter(Guard)
_USER_CLASS = TypeAdapter(UserClass)


def _model(model: type[M], value: Any) -> M | None:
    try:
        return model.model_validate(value)
    except ValidationError:
        return None


def _valid(adapter: TypeAdapter[T], value: Any) -> T | None:
    try:
        return adapter.validate_python(value)
    except ValidationError:
        return None


def _items(adapter: TypeAdapter[T], value: Any, required: bool = False) -> tuple[T | None, ...] | None:
    """Each item validated on its own; ``None`` when the value is no list (or absent and required)."""
    if value is None and not required:
        return ()
    if not isinstance(value, list):
        return None
    return tuple(_valid(adapter, item) for item in value)


@functools.cache
def _adapter(model: type[BaseModel], name: str) -> TypeAdapter[Any]:
    return TypeAdapter(model.model_fields[name].rebuild_annotation())


def _field(model: type[BaseModel], name: str, data: Mapping[str, Any]) -> Any:
    """``data[name]`` validated as ``model`` validates that field; its default when absent or invalid."""
    field = model.model_fields[name]
    default = None if field.is_required() else field.get_default(call_default_factory=True)
    if name not in data:
        return default
    value = _valid(_adapter(model, name), data[name])
    return default if value is None else value


def _names(written: Any, items: Sequence[BaseModel | None] | None, unnamed: str = "") -> Names:
    """The name each item wrote: the validated one, else what the file says if it is a string."""
    if items is None or not isinstance(written, list):
        return None
    names: list[str | None] = []
    for i, (raw, item) in enumerate(zip(written, items, strict=True)):
        name = getattr(item, "name", None) if item is not None else (raw.get("name") if isinstance(raw, dict) else None)
        if name is None and unnamed and (item is not None or (isinstance(raw, dict) and "name" not in raw)):
            name = unnamed.format(i + 1)  # as timeline.phase_name names an unnamed stage
        names.append(name if isinstance(name, str) else None)
    return tuple(names)
