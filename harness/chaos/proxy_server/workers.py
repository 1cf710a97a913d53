"""Several fault proxy processes on one listening port: the workers the control process forks.

One Python process forwards about 22K requests/s (``benchmarks/proxy.py``); a proxy given N cores
runs N processes. The first is the control process: it serves the control API and forwards
traffic too. It forks N-1 workers before it starts serving, each with its own listening socket
bound to the same address with ``SO_REUSEPORT``, so the kernel spreads new connections over
the N sockets. Each worker keeps a socketpair to the control process and takes JSON lines on it:
``{"faults": {...}}`` (every fault at once: the worker rebuilds its profile and answers
``{"ok": true}``) and ``{"stats": true}`` (its counters). A change answers the control API only
after every worker confirmed it (:meth:`Workers.broadcast`), so a fault put is in effect in
every process when the PUT returns.

A worker exits when the control process's end of its socketpair closes, on SIGTERM, or when the
control process dies (``PR_SET_PDEATHSIG``); it inherits the control process's command line and
environment, so a transparent proxy's workers carry the same tag and a sweep finds them too.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import logging
import os
import signal
import socket
import time
from collections.abc import Callable
from dataclasses import asdict
from typing import Any

import gevent
import gevent.event
import gevent.lock
from gevent import socket as gsocket
from gevent.server import StreamServer

from harness.chaos.proxy_server.forward import Proxy
from harness.chaos.proxy_server.spec import FaultSpec

__all__ = ["REPLY_TIMEOUT", "Workers", "default_workers"]

log = logging.getLogger(__name__)

#: Seconds a worker may take to confirm a change (an in-memory swap: normally well under 1 ms).
REPLY_TIMEOUT = 5.0
_PR_SET_PDEATHSIG = 1


def default_workers() -> int:
    """The cores this process may run on: one proxy process per core."""
    return len(os.sched_getaffinity(0))


class _Channel:
    """One end of a socketpair carrying JSON lines, one exchange at a time."""

    def __init__(self, sock: Any) -> None:
        self.sock, self.buf, self.lock = sock, b"", gevent.lock.Semaphore()

    def send(self, payload: dict[str, Any]) -> None:
        self.sock.sendall(json.dumps(payload).encode() + b"\n")

    def receive(self) -> dict[str, Any] | None:
        while b"\n" not in self.buf:
            data = self.sock.recv(65536)
            if not data:
                return None
            self.buf += data
        line, _, self.buf = self.buf.partition(b"\n")
        answer = json.loads(line)
        return answer if isinstance(answer, dict) else None

    def ask(self, payload: dict[str, Any]) -> dict[str, Any]:
        with self.lock, gevent.Timeout(REPLY_TIMEOUT, TimeoutError("a proxy worker did not answer in time")):
            self.send(payload)
            answer = self.receive()
        if answer is None:
            raise ConnectionError("a proxy worker is gone")
        return answer


class Workers:
    """The worker processes of one proxy, seen from its control process."""

    def __init__(self) -> None:
        self.pids: list[int] = []
        self.channels: list[_Channel] = []

    @classmethod
    def start(cls, count: int, proxy: Proxy, bind: Callable[[], Any], close_in_child: list[Any]) -> Workers:
        """Fork ``count`` workers; each calls ``bind()`` for its own ``SO_REUSEPORT`` listener and
        closes ``close_in_child`` (the control process's sockets) first."""
        workers = cls()
        for _ in range(count):
            mine, theirs = socket.socketpair()
            pid = gevent.fork()
            if pid == 0:  # the worker: never returns
                mine.close()
                for other in workers.channels:
                    other.sock.close()
                code = 1
                try:
                    for sock in close_in_child:
                        sock.close()
                    code = _work(proxy, bind(), theirs)
                finally:
                    os._exit(code)
            theirs.close()
            workers.pids.append(pid)
            workers.channels.append(_Channel(gsocket.socket(fileno=mine.detach())))
        return workers

    def broadcast(self, faults: dict[str, FaultSpec]) -> None:
        """Every worker takes ``faults``; returns once all confirmed. ``OSError``/``TimeoutError``
        when one did not (it may be gone)."""
        if not self.channels:
            return
        jobs = [gevent.spawn(channel.ask, {"faults": faults}) for channel in self.channels]
        gevent.joinall(jobs)
        for job in jobs:
            if job.exception is not None:
                raise job.exception
            if job.value.get("ok") is not True:
                raise ConnectionError(f"a proxy worker refused the change: {job.value}")

    def counters(self) -> list[dict[str, Any]]:
        """Each worker's counters (those that answer)."""
        out = []
        for channel in self.channels:
            with contextlib.suppress(OSError, TimeoutError, ValueError):
                out.append(channel.ask({"stats": True}).get("stats", {}))
        return out

    def stop(self, grace: float = 2.0) -> None:
        """Close the channels (a worker exits on that), SIGTERM, SIGKILL after ``grace``; reap."""
        for channel in self.channels:
            with contextlib.suppress(OSError):
                channel.sock.close()
        for pid in self.pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + grace
        left = list(self.pids)
        while left:
            for pid in list(left):
                with contextlib.suppress(ChildProcessError):
                    if os.waitpid(pid, os.WNOHANG)[0] == 0:
                        continue
                left.remove(pid)
            if left and time.monotonic() > deadline:
                for pid in left:
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGKILL)
                deadline = float("inf")
            gevent.sleep(0.01)


def _work(proxy: Proxy, listener: Any, channel_sock: socket.socket) -> int:
    """A worker's life: forward on its own listener, take changes from the control process."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    if os.getppid() == 1:  # the control process died before the prctl took hold
        return 0
    channel = _Channel(gsocket.socket(fileno=channel_sock.detach()))
    stop = gevent.event.Event()
    handlers = [gevent.signal_handler(sig, stop.set) for sig in (signal.SIGTERM, signal.SIGINT)]
    server = StreamServer(listener, proxy.handle)
    server.start()

    def serve_channel() -> None:
        try:
            while (order := channel.receive()) is not None:
                if "faults" in order:
                    proxy.replace_faults(order["faults"])
                    channel.send({"ok": True})
                else:
                    channel.send({"stats": asdict(proxy.stats)})
        except (OSError, ValueError) as exc:
            log.debug("worker channel: %s", exc)
        finally:
            stop.set()

    reader = gevent.spawn(serve_channel)
    try:
        stop.wait()
    finally:
        for handler in handlers:
            handler.cancel()
        reader.kill(block=False)
        server.close()
        proxy.close_all()
        server.stop(timeout=1)
    return 0
