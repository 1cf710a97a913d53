"""The Ray cluster a run uses: a private local one, or a cluster joined with its token.

:func:`start_ray` starts Ray for a run (or joins ``--ray-address``); :func:`stop_ray` stops
what it started. :func:`read_cluster` joins briefly to read the nodes (``harness plan``);
:func:`live_nodes` and :func:`driver_node_id` read them during a run.

:func:`check_ray_address` refuses to join a Ray cluster (``--ray-address``) without Ray's
token authentication: no token anywhere Ray would look for one, or ``RAY_AUTH_MODE`` set to
anything but ``token``. It reads only the environment and the token file's size; it never
connects, and no message carries the token (docs/security.md).
"""

from __future__ import annotations

import logging
import os
import socket
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import ray

from harness.errors import ConfigError
from harness.run.nodes import HOST_LABEL, Node

__all__ = [
    "RayStart",
    "check_ray_address",
    "driver_node_id",
    "live_nodes",
    "ray_token_source",
    "read_cluster",
    "start_ray",
    "stop_ray",
]

_RAY_TOKEN_HELP = (
    "give it the cluster's token (on the head node: `ray get-auth-token`) in ~/.ray/auth_token, "
    "in a file named by RAY_AUTH_TOKEN_PATH, or in the environment variable RAY_AUTH_TOKEN, and set "
    "RAY_AUTH_MODE=token here as on every node (Ray sends no token to an explicit address without it); "
    "see docs/security.md"
)


def ray_token_source() -> str | None:
    """Where Ray would read its auth token from, in Ray's order, or None: never the token itself.

    ``RAY_AUTH_TOKEN`` (non-empty), then the file ``RAY_AUTH_TOKEN_PATH`` names (Ray treats a
    set path it cannot read as fatal, so it is reported, not skipped), then ``~/.ray/auth_token``.
    """
    if os.environ.get("RAY_AUTH_TOKEN", "").strip():
        return "RAY_AUTH_TOKEN"
    named = os.environ.get("RAY_AUTH_TOKEN_PATH")
    if named:
        path = Path(named).expanduser()
        return f"RAY_AUTH_TOKEN_PATH ({path})" if _non_empty_file(path) else None
    default = Path.home() / ".ray" / "auth_token"
    return str(default) if _non_empty_file(default) else None


def _non_empty_file(path: Path) -> bool:
    try:
        return path.is_file() and path.stat().st_size > 0 and os.access(path, os.R_OK)
    except OSError:
        return False


def check_ray_address(address: str | None) -> None:
    """Raise ``ConfigError`` (exit 2) unless joining ``address`` would use token authentication.

    ``None`` and ``"local"`` start a private local cluster (token authentication on, every
    port on 127.0.0.1): nothing to check. Any other address, loopback ones included, is a
    cluster someone else started: harness joins it only with a token, so that a cluster
    without authentication, or a driver without the token, is refused here with the way to
    fix it rather than by a connection error (or, worse, accepted) after the run started.
    """
    if address is None or address == "local":
        return
    mode = os.environ.get("RAY_AUTH_MODE")
    if mode is not None and mode.strip().lower() != "token":
        raise ConfigError(
            f"--ray-address {address}: RAY_AUTH_MODE is '{mode}'; harness joins a Ray cluster only with "
            f"token authentication: unset RAY_AUTH_MODE (or set it to token) and {_RAY_TOKEN_HELP}. "
            "Nothing was started."
        )
    if ray_token_source() is None:
        problem = (
            "RAY_AUTH_TOKEN_PATH names no readable, non-empty file"
            if os.environ.get("RAY_AUTH_TOKEN_PATH")
            else ("no Ray auth token is configured")
        )
        raise ConfigError(
            f"--ray-address {address}: {problem}; joining a cluster needs its token: {_RAY_TOKEN_HELP}. "
            "Nothing was started."
        )


@dataclass(frozen=True)
class RayStart:
    """What :func:`start_ray` did."""

    owned: bool  # a private cluster started here: stop it with :func:`stop_ray` at the end
    init_s: float | None  # how long ``ray.init`` took (s); None when Ray was already up


def start_ray(address: str | None) -> RayStart:
    """Join ``address`` (token required), or start a private local cluster.

    Does nothing when Ray is already initialised in this process. A private cluster binds
    every port to 127.0.0.1 and keeps token authentication on (docs/security.md).
    """
    if ray.is_initialized():
        return RayStart(owned=False, init_s=None)
    began = time.monotonic()
    kwargs: dict[str, Any] = {
        "log_to_driver": False,
        "logging_level": logging.WARNING,
        "include_dashboard": True,
        "dashboard_host": "127.0.0.1",
        "configure_logging": False,
    }
    if address:
        check_ray_address(address)  # never connect without a token (docs/security.md)
        ray.init(address=address, **kwargs)
        return RayStart(owned=False, init_s=round(time.monotonic() - began, 3))
    _start_local(kwargs)
    return RayStart(owned=True, init_s=round(time.monotonic() - began, 3))


def _start_local(kwargs: dict[str, Any]) -> None:
    """``ray.init`` of a private cluster on loopback.

    "local": never join a cluster that `ray start` left recorded in /tmp/ray. Token
    authentication stays on (Ray's default for a new local cluster unless RAY_AUTH_MODE says
    otherwise), and every port binds to 127.0.0.1: Ray binds its servers to the node IP, and
    turns 127.0.0.1 into this host's LAN address unless clusters are disabled, which is what
    RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0 does (read at import, hence both). The node is labelled
    ``harness.io/host=<hostname>``, the name a kubelet gives its node unless told otherwise, so a
    fault with ``pods`` finds the agent for the pods scheduled on this machine.
    """
    from ray._private import ray_constants

    if os.environ.get("RAY_AUTH_MODE", "token").lower() != "token":
        os.environ.pop("RAY_AUTH_MODE")
    saved = (ray_constants.ENABLE_RAY_CLUSTER, os.environ.get(ray_constants.ENABLE_RAY_CLUSTERS_ENV_VAR))
    ray_constants.ENABLE_RAY_CLUSTER = False
    os.environ[ray_constants.ENABLE_RAY_CLUSTERS_ENV_VAR] = "0"  # for the processes ray.init starts
    try:
        ray.init(
            address="local",
            num_cpus=os.cpu_count() or 1,
            _node_ip_address="127.0.0.1",
            labels={HOST_LABEL: socket.gethostname()},  # the name a kubelet gives this machine's node by default
            **kwargs,
        )
    finally:
        ray_constants.ENABLE_RAY_CLUSTER = saved[0]
        if saved[1] is None:
            os.environ.pop(ray_constants.ENABLE_RAY_CLUSTERS_ENV_VAR, None)
        else:
            os.environ[ray_constants.ENABLE_RAY_CLUSTERS_ENV_VAR] = saved[1]


def stop_ray() -> None:
    """Shut Ray down in this process (the cluster with it, when :func:`start_ray` started it)."""
    ray.shutdown()


def live_nodes() -> list[Node]:
    """The cluster's live nodes, for :mod:`harness.run.nodes` to match selectors against."""
    nodes = []
    for entry in ray.nodes():
        if not entry.get("Alive"):
            continue
        nodes.append(
            Node(
                node_id=str(entry["NodeID"]),
                ip=str(entry.get("NodeManagerAddress", "")),
                hostname=str(entry.get("NodeManagerHostname", "")),
                labels=dict(entry.get("Labels") or {}),
                resources=dict(entry.get("Resources") or {}),
            )
        )
    return nodes


def driver_node_id() -> str:
    """The node this driver is attached to: where faults without a node selector act."""
    return str(ray.get_runtime_context().get_node_id())


def read_cluster(address: str) -> tuple[list[Node], Node]:
    """Join the cluster at ``address`` briefly (token required) and read its nodes and ours."""
    check_ray_address(address)
    ray.init(address=address, log_to_driver=False, logging_level=logging.WARNING, configure_logging=False)
    try:
        nodes = live_nodes()
        mine = driver_node_id()
    finally:
        ray.shutdown()
    driver = next((n for n in nodes if n.node_id == mine), Node(node_id=mine, ip=""))
    return nodes, driver
