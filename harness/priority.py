"""Give an actor's process back the normal CPU priority that Ray's workers lack.

Ray starts its worker processes at nice 15 so that they yield to the driver. For an actor
whose answers are on the run's clock that is wrong: while Locust processes (at nice 0)
saturate the node, a nice-15 chaos agent was measured taking 0.1 to 1.5 s to inject or
revert a fault, and at nice 0 mostly under 20 ms. On Linux niceness belongs to each
thread, so every thread of the process is set, and threads started later inherit it from
their (now normal) creators. Lowering niceness needs CAP_SYS_NICE (root has it); without
it the process keeps Ray's niceness and this is a no-op.
"""

from __future__ import annotations

import contextlib
import os
import threading

__all__ = ["AGENT_NICE", "normal_priority", "set_thread_niceness"]


#: The chaos agent's niceness. It is idle but for the milliseconds an inject or revert takes,
#: so running ahead of the Locust processes costs the load nothing; at nice 0 it shared the
#: CPU with two saturated Locust processes and a pause was measured 123 ms late.
AGENT_NICE = -10


def normal_priority(value: int = 0) -> int:
    """Set every thread of this process to nice ``value`` (0: normal) where it is higher;
    returns how many threads were changed. Idempotent."""
    changed = 0
    try:
        threads = os.listdir("/proc/self/task")
    except OSError:  # not Linux
        threads = [str(os.getpid())]
    for tid in threads:
        with contextlib.suppress(OSError, ValueError):
            if os.getpriority(os.PRIO_PROCESS, int(tid)) > value:
                os.setpriority(os.PRIO_PROCESS, int(tid), value)
                changed += 1
    return changed


def set_thread_niceness(value: int) -> int:
    """Set the calling thread's niceness (Linux: niceness is per thread); returns the previous one.

    The clock thread sleeps nearly all the time, so raising its priority costs the load
    nothing, while on a node saturated by Locust processes it is what makes it wake on time.
    Without CAP_SYS_NICE nothing changes.
    """
    tid = threading.get_native_id()
    previous = os.getpriority(os.PRIO_PROCESS, tid)
    with contextlib.suppress(OSError):
        os.setpriority(os.PRIO_PROCESS, tid, value)
    return previous
