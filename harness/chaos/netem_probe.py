"""Whether this kernel can build the traffic-control objects a netem fault needs, found by trying.

netem is missing from the host kernel of our machines (see TESTBED.md), so nothing assumes it:
:func:`available` creates one for real, in a private network namespace of a short-lived child
process, and :func:`missing` says which of the other pieces (prio, u32, ifb, ingress, mirred)
the kernel refused. Used by the network family (``network.netem``, and ``network.loss`` with
method auto, which picks netem or nftables on the node that applies it) and ``harness doctor``.
No pyroute2 in this process: the probe runs in a fresh interpreter.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterable
from pathlib import Path

from harness.chaos.nft import NETNS_DIR

__all__ = ["PROBE_TIMEOUT", "REFUSAL_TTL", "available", "missing"]

#: Seconds the kernel probe may take (a fresh interpreter importing pyroute2).
PROBE_TIMEOUT = 20.0

# Runs in a fresh interpreter that first moves itself into a new, empty network namespace:
# whatever the probe creates (qdiscs on its own lo, an ifb) dies with the process, and no
# thread of the caller ever changes namespace.
_PROBE = r"""
import ctypes, json, os, sys
libc = ctypes.CDLL(None, use_errno=True)
if libc.unshare(0x40000000) != 0:  # CLONE_NEWNET
    print(json.dumps({"unshare": os.strerror(ctypes.get_errno())}))
    sys.exit(0)
from pyroute2 import IPRoute
found = {}
def attempt(name, action):
    try:
        action()
        found[name] = ""
    except Exception as exc:
        code = getattr(exc, "code", None)
        found[name] = os.strerror(code) if isinstance(code, int) else (str(exc) or type(exc).__name__)
with IPRoute() as ipr:
    ipr.link("set", index=1, state="up")
    attempt("netem", lambda: ipr.tc("add", "netem", index=1, handle=0x10000, delay=1000))
    if not found["netem"]:
        ipr.tc("del", index=1, handle=0x10000, parent=0xFFFFFFFF)
    attempt("prio", lambda: ipr.tc("add", "prio", index=1, handle=0x10000, bands=4, priomap=[1] * 16))
    attempt("u32", lambda: ipr.tc("add-filter", "u32", index=1, parent=0x10000, prio=1, protocol=0x0800,
                                  target=0x10004, keys=["0x0/0x0+16"]))
    attempt("ifb", lambda: ipr.link("add", ifname="hbprobe", kind="ifb"))
    attempt("ingress", lambda: ipr.tc("add", "ingress", index=1))
    if not found["ifb"] and not found["ingress"]:
        ifb = ipr.link_lookup(ifname="hbprobe")[0]
        attempt("mirred", lambda: ipr.tc("add-filter", "u32", index=1, parent=0xFFFFFFF2, prio=1, protocol=3,
                target=1, keys=["0x0/0x0+0"],
                action=[{"kind": "mirred", "direction": "egress", "action": "redirect", "ifindex": ifb}]))
print(json.dumps(found))
"""

_probed: dict[str, str] | None = None
_refused: tuple[float, dict[str, str]] | None = None  # (monotonic time, answer) of the last refusal
#: Seconds a refused probe stands before the kernel is asked again.
REFUSAL_TTL = 600.0


def _probe() -> dict[str, str]:
    """What the kernel answered when asked for each object a netem fault may need ('' = created).

    Cached for the process once it succeeded: modules do not vanish from a running kernel. A
    refusal is cached for :data:`REFUSAL_TTL` seconds only (someone may load the module), long
    enough that the chaos agent's warm-up probe serves a run's ``network.loss`` faults, which
    choose between netem and nftables when they are injected.
    """
    global _probed, _refused
    if _probed is not None:
        return _probed
    if _refused is not None and time.monotonic() - _refused[0] < REFUSAL_TTL:
        return _refused[1]
    try:
        done = subprocess.run(
            [sys.executable, "-c", _PROBE], capture_output=True, text=True, timeout=PROBE_TIMEOUT, check=False
        )
        found: dict[str, str] = json.loads(done.stdout.strip().splitlines()[-1]) if done.stdout.strip() else {}
    except (OSError, subprocess.TimeoutExpired, ValueError) as exc:
        return {"probe": f"the probe could not run: {exc}"}
    if not found:
        return {"probe": f"the probe failed: {done.stderr.strip()[-300:] or f'exit {done.returncode}'}"}
    if "unshare" in found:
        return {"probe": f"cannot create a network namespace to probe in ({found['unshare']}); needs root"}
    if not found.get("netem"):
        _probed = found
    else:
        _refused = (time.monotonic(), found)
    return found


def _kernel_hint(module: str) -> str:
    release = Path("/proc/sys/kernel/osrelease").read_text().strip()
    shipped = any(Path(f"/lib/modules/{release}/kernel/net/sched").glob(f"{module}.ko*"))
    return (
        f"kernel {release} has the module file but could not load it (modprobe {module})"
        if shipped
        else f"kernel {release} does not have {module}"
    )


def available(netns: str | None = None) -> tuple[bool, str]:
    """Whether this kernel can create a netem qdisc, and why not when it cannot.

    A real probe: a child process in a private, throwaway network namespace creates one on
    its own loopback (the kernel loads ``sch_netem`` on demand where it has the module).
    Namespaces share the kernel, so ``netns`` is only checked to exist; the probe never
    touches it.
    """
    if netns is not None and not (NETNS_DIR / netns).exists():
        return False, f"network namespace '{netns}' does not exist"
    found = _probe()
    if "probe" in found:
        return False, found["probe"]
    if found.get("netem"):
        # ENOENT is how the kernel says "unknown qdisc kind" (tc prints exactly that)
        return False, f"no netem qdisc: creating one failed with '{found['netem']}' ({_kernel_hint('sch_netem')})"
    return True, "netem qdisc created in a probe namespace"


def missing(pieces: Iterable[str]) -> list[str]:
    """Those of ``pieces`` (netem, prio, u32, ifb, ingress, mirred) the kernel refused, each with
    its answer; the probe's own failure when it could not run."""
    found = _probe()
    if "probe" in found:
        return [found["probe"]]
    return [f"{name}: {found[name]}" for name in dict.fromkeys(pieces) if found.get(name, "not probed")]
