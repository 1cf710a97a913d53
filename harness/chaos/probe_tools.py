"""What every capability probe shares: bounded commands that raise ``CapabilityMissing`` with
the reason, and a throwaway network namespace that is deleted whatever happens inside.

Kept apart from :mod:`harness.chaos.capabilities` so that the probes of one kind of thing
(:mod:`harness.chaos.network_probes`) can live in their own module without a cycle.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import uuid
from collections.abc import Iterator

from harness.errors import CapabilityMissing

__all__ = ["PROBE_TIMEOUT", "first_line", "run", "throwaway_netns", "which"]

#: Seconds any one command of a probe may take.
PROBE_TIMEOUT = 2.0


def which(binary: str, package: str) -> str:
    found = shutil.which(binary)
    if found is None:
        raise CapabilityMissing(f"{binary} is not installed (apt-get install {package})")
    return found


def run(argv: list[str]) -> str:
    """Run ``argv`` (bounded by :data:`PROBE_TIMEOUT`); its stdout+stderr, or ``CapabilityMissing`` on failure."""
    try:
        done = subprocess.run(
            argv, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=PROBE_TIMEOUT, check=False
        )
    except subprocess.TimeoutExpired:
        raise CapabilityMissing(f"`{' '.join(argv)}` did not finish in {PROBE_TIMEOUT:g}s") from None
    except OSError as exc:
        raise CapabilityMissing(f"cannot run {argv[0]}: {exc.strerror or exc}") from None
    output = (done.stdout + done.stderr).strip()
    if done.returncode != 0:
        raise CapabilityMissing(
            f"`{' '.join(argv)}` failed: {' '.join(output.split())[:300] or f'exit {done.returncode}'}"
        )
    return output


def first_line(text: str) -> str:
    return text.splitlines()[0].strip() if text else ""


@contextlib.contextmanager
def throwaway_netns() -> Iterator[str]:
    """A new, empty named network namespace, deleted on the way out whatever happened inside."""
    ip = which("ip", "iproute2")
    name = f"harness-probe-{os.getpid()}-{uuid.uuid4().hex[:6]}"
    run([ip, "netns", "add", name])
    try:
        yield name
    finally:
        with contextlib.suppress(CapabilityMissing):
            run([ip, "netns", "delete", name])
