"""Before anything starts: what each fault will act on, and the refusals a run would meet.

``harness plan`` prints :func:`targets`; ``harness run`` calls :func:`check` before it
starts Ray, so a fault that could never be applied (a capability this host lacks, no
kubeconfig, a kube context the scenario does not allow, a namespace without the opt-in label,
an API server that does not answer, a proxy that does not answer) stops the run with exit 2
and the reason, with no load sent and nothing applied. Each fault's family says what it acts
on now (``resolve``) and what this host must have (``requirements``, then ``check``): process
faults are resolved when they fire (the target may start after the run does), so here only a
pid file that already names PID 1 or a kernel thread is refused; the plan shows what each
process target would match now.

The scenario's allow-lists (``safety``) are checked from the file alone when it is loaded;
what needs this host is checked here, for faults that act on the driver's node: a stress
directory that lies under ``safety.allowed_paths`` as written but leaves it once symbolic
links are followed is refused.

:func:`check_ray_address` refuses to join a Ray cluster (``--ray-address``) without Ray's
token authentication: no token anywhere Ray would look for one, or ``RAY_AUTH_MODE`` set to
anything but ``token``. It reads only the environment and the token file's size; it never
connects, and no message carries the token.
"""

from __future__ import annotations

import os
from pathlib import Path

from harness.chaos.family import HostContext, family_of
from harness.errors import ConfigError
from harness.scenario import Scenario

__all__ = ["check", "check_ray_address", "ray_token_source", "targets"]


def targets(scenario: Scenario) -> dict[str, str]:
    """One line per fault: what it will do, and what it would act on now where its family can say.

    Sends only GET requests (a Kubernetes fault that cannot be resolved says why instead).
    """
    context = HostContext(scenario.safety)
    out: dict[str, str] = {}
    for fault in scenario.faults:
        family = family_of(fault.kind)
        out[fault.name] = family.describe(fault) + family.resolve(fault, context)
    return out


def check(scenario: Scenario) -> None:
    """Raise ``ConfigError`` (exit 2) naming the fault when one could not be applied at all."""
    from harness.chaos import capabilities

    context = HostContext(scenario.safety)
    for fault in scenario.faults:
        refused = family_of(fault.kind).refusal(fault, context)
        if refused:
            raise ConfigError(refused)
    needed = sorted({need for fault in scenario.faults for need in capabilities.requirements(fault)})
    if needed:  # probed on this host, which is where a single-node run applies its faults
        gaps = capabilities.missing(scenario, capabilities.probe(needed))
        if gaps:
            raise ConfigError("cannot run here (harness doctor says more):\n  " + "\n  ".join(gaps))
    for fault in scenario.faults:
        family_of(fault.kind).check(fault, context)


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
