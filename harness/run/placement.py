"""Where load generators run: one placement-group bundle per generator, spread across nodes.

A LoadGenerator actor supervises Locust processes that use whole cores of the node it lands
on, so two generators on one node compete for the same cores while another node idles. A
placement group with strategy ``SPREAD`` puts each generator's bundle on a different node
whenever the cluster has enough nodes (and packs them onto fewer nodes when it has not, so
a one-node development machine still runs any number of generators).

Each bundle asks for :data:`GENERATOR_BUNDLE` (a hundredth of a CPU), not for the cores the
Locust processes will really use: Ray does not manage those subprocesses, and asking for
whole CPUs would make ``generators: 4`` unschedulable on a 2-core machine. The token CPU
still matters: a node started with ``--num-cpus=0`` (the usual way to keep work off a head
node) gets no generator. A custom resource would let operators mark load nodes explicitly,
but every node would then need it declared, and a forgotten declaration hangs the run; the
CPU bundle works on any cluster as it comes.

The group belongs to the driver's job: Ray removes it when the driver exits, even after a
crash; :meth:`Placement.remove` releases it as soon as the generators are stopped.
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass, field
from typing import Any

import ray
from ray.util.placement_group import PlacementGroup, placement_group, remove_placement_group
from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

from harness.errors import LoadError
from harness.scenario import NodeSelector

__all__ = ["GENERATOR_BUNDLE", "PLACEMENT_TIMEOUT", "Placement", "place_generators"]

log = logging.getLogger(__name__)

GENERATOR_BUNDLE: dict[str, float] = {"CPU": 0.01}
PLACEMENT_TIMEOUT = 60.0  # seconds; long enough for an autoscaler to add a node, short of a hang
RESOURCE_TOKEN = 0.001  # of a node's custom resource per generator: any node declaring it has room


@dataclass
class Placement:
    """A ready placement group with one bundle per generator; hand out actor options per bundle."""

    group: PlacementGroup
    bundle: dict[str, float]
    count: int
    removed: bool = field(default=False)

    def actor_options(self, index: int) -> dict[str, Any]:
        """Ray actor options that pin generator ``index`` into its own bundle.

        The actor asks for exactly the bundle's resources so it is scheduled inside the bundle
        (and so on the bundle's node); the Locust processes it starts are not Ray tasks and are
        not captured by the group.
        """
        if not 0 <= index < self.count:
            raise IndexError(f"generator {index} has no bundle (group of {self.count})")
        options: dict[str, Any] = {
            "scheduling_strategy": PlacementGroupSchedulingStrategy(
                placement_group=self.group,
                placement_group_bundle_index=index,
                placement_group_capture_child_tasks=False,
            ),
            "num_cpus": self.bundle.get("CPU", 0.0),
        }
        custom = {k: v for k, v in self.bundle.items() if k not in ("CPU", "GPU", "memory")}
        if custom:
            options["resources"] = custom
        return options

    def remove(self) -> None:
        """Release the group's reservation. Idempotent; never raises (it runs in teardown)."""
        if self.removed:
            return
        self.removed = True
        try:
            remove_placement_group(self.group)
        except Exception:  # Ray already shut down or the GCS is gone: nothing left to release
            log.debug("placement group removal failed", exc_info=True)


def place_generators(
    count: int,
    name: str = "",
    timeout: float = PLACEMENT_TIMEOUT,
    bundle: dict[str, float] | None = None,
    node: NodeSelector | None = None,
) -> Placement:
    """Reserve one bundle per generator, spread across nodes, and wait until Ray has placed it.

    With a ``node`` selector every bundle is confined to matching nodes: by Ray's bundle label
    selector for labels, by a token amount of the custom resource otherwise.
    Raises :class:`LoadError` naming what was asked and what the cluster has, instead of
    waiting forever, when the group is not ready within ``timeout`` seconds; the half-made
    group is removed first.
    """
    if count < 1:
        raise ValueError("at least one generator is needed")
    wanted = dict(bundle or GENERATOR_BUNDLE)
    selector: list[dict[str, str]] | None = None
    if node is not None and node.resource is not None:
        wanted[node.resource] = RESOURCE_TOKEN
    elif node is not None:
        selector = [dict(node.labels) for _ in range(count)]
    group = placement_group(
        [dict(wanted) for _ in range(count)], strategy="SPREAD", name=name, bundle_label_selector=selector
    )
    ready = False
    try:
        ready = group.wait(timeout_seconds=timeout)
    finally:
        if not ready:
            with contextlib.suppress(Exception):
                remove_placement_group(group)
    if not ready:
        raise LoadError(
            f"placement group not ready after {timeout:g}s: {count} generator(s) need {count} bundle(s) of "
            f"{_resources(wanted)} spread across nodes, but the cluster has {_cluster()}"
        )
    return Placement(group, wanted, count)


def _resources(resources: dict[str, float]) -> str:
    return "{" + ", ".join(f"{k}: {v:g}" for k, v in sorted(resources.items())) + "}"


def _cluster() -> str:
    """What the cluster offers right now, in a form that fits one error line."""
    try:
        alive = [n for n in ray.nodes() if n.get("Alive")]
        available = ray.available_resources()
    except Exception as exc:  # the error message must not hide the original problem
        return f"an unknown capacity ({type(exc).__name__})"
    per_node = ", ".join(f"{n['NodeManagerAddress']} CPU {n['Resources'].get('CPU', 0):g}" for n in alive)
    return f"{len(alive)} alive node(s) ({per_node or 'none'}) with CPU {available.get('CPU', 0):g} available"
