"""LoadGenerator: a Ray async actor that supervises Locust subprocesses on its node.

The actor never imports Locust (that hangs inside Ray workers); it starts one
``harness.load.runner`` process per core, sends them commands on stdin and collects their
report lines from a pipe. It stays responsive to pings while load runs, and its
subprocesses die with it (PR_SET_PDEATHSIG) and stop when their stdin closes.

Cut off from the driver, a generator stops its load by itself. The driver drains every
generator several times a second; once the first drain came, an actor that hears nothing
from the driver (no drain, command or ping) for ``CUT_OFF_AFTER`` seconds asks its processes
to stop (their last windows are kept for a drain that may still come) and reports that in
its next drain. The actor also sends each process a keepalive every second while it hears
from the driver; a process that reads nothing for ``ACTOR_SILENCE`` seconds stops by itself,
which covers an actor that hangs. ``CUT_OFF_AFTER`` is longer than the driver's own
``LOST_AFTER``, so a live driver declares a silent generator lost before it stops itself.

``LoadGenerator`` is the public wrapper of one generator, ``_LoadGeneratorActor`` the actor
itself; ``GeneratorPool`` makes calls on many generators at once, the way Ray's ``ActorPool``
does (submit to many, collect the answers that are ready), so that the run's clock and poll
threads never wait on Ray themselves.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import functools
import os
import signal
import socket
import sys
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import ray

from harness.errors import LoadError
from harness.load.protocol import (
    KEEPALIVE_INTERVAL,
    Applied,
    Command,
    Error,
    Examples,
    Keepalive,
    Ready,
    Report,
    Stop,
    Stopped,
    Window,
    decode_report,
    encode_command,
)
from harness.load.spec import GeneratorSpec, LocustOptions
from harness.measure.clocks import CLOCK_OFFSET_ENV, ClockOffset, measure
from harness.measure.cpu import usable_cores
from harness.priority import normal_priority

__all__ = ["CUT_OFF_AFTER", "Answer", "Call", "GeneratorPool", "GeneratorSpec", "LoadGenerator", "LocustOptions"]

CUT_OFF_AFTER = 5.0  # an actor that hears nothing from the driver this long stops its load (s)
STOP_GRACE = 2.0  # a process asked to stop this long ago is killed (s)
WATCH_TICK = 0.25  # how often the actor checks when it last heard from the driver (s)


def _prepare_child() -> None:
    """Runs in the Locust child before exec: die with the actor, and undo Ray's worker niceness.

    Ray starts its workers at nice 15 so they yield to the driver; a Locust process inheriting
    that loses the CPU to everything else on the node and delivers a third less load than plain
    Locust. Lowering niceness needs CAP_SYS_NICE (root has it); without it the child keeps 15.
    """
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    with contextlib.suppress(PermissionError):
        os.setpriority(os.PRIO_PROCESS, 0, 0)


@dataclass
class _Child:
    process_id: str
    proc: asyncio.subprocess.Process
    reader: asyncio.StreamReader
    ready: asyncio.Event
    stopped: asyncio.Event  # its report pipe is closed: it exited, or is about to
    error: str = ""
    task: asyncio.Task[None] | None = None
    asked_to_stop: bool = False  # by ``stop`` or by the cut-off; any other exit is a death
    exited_at: float | None = None  # epoch time the actor saw it exit

    def died(self) -> bool:
        """Exited without being asked to (killed, crashed, or stopped by its own silence rule)."""
        return self.exited_at is not None and not self.asked_to_stop


class _LoadGeneratorActor:
    """Ray async actor; every method is safe to call twice."""

    def __init__(self) -> None:
        # Stage commands and drains are on the run's clock: do not wait behind the load.
        normal_priority()
        self._children: list[_Child] = []
        self._lines: list[str] = []
        self._events: list[str] = []
        self._applied: list[str] = []
        # One command at a time: each process must receive commands in the order they were
        # sent, because its ``applied`` acknowledgements are matched to them by order.
        self._command_lock = asyncio.Lock()
        self._spec: GeneratorSpec | None = None
        self._contact = time.monotonic()  # the driver's last drain, command or ping
        self._armed = False  # the cut-off applies once the driver drained once (the run began)
        self._stopping = False
        self._cut_off: dict[str, Any] | None = None
        self._watch: asyncio.Task[None] | None = None
        # What each report does. Windows and acknowledgements go to the driver as they came (it
        # decodes them again); the actor's own work per line stays one decode.
        self._on_report: dict[type[Report], Callable[[_Child, str], None]] = {
            Window: lambda _, text: self._lines.append(text),
            Examples: lambda _, text: self._lines.append(text),  # in order with the windows
            Applied: lambda _, text: self._applied.append(text),
            Ready: lambda child, _: child.ready.set(),
            Stopped: lambda child, _: child.stopped.set(),
            Error: self._on_error,
        }

    async def start(self, spec: GeneratorSpec, timeout: float = 60.0) -> dict[str, Any]:
        """Start the processes and wait until each has imported the locustfile."""
        if self._children:
            return self._describe()
        normal_priority()  # again: threads Ray started after __init__ are covered too
        self._spec = spec
        count = spec.processes or usable_cores()
        Path(spec.log_dir).mkdir(parents=True, exist_ok=True)
        env = {**os.environ, **spec.env, CLOCK_OFFSET_ENV: repr(spec.clock_offset)}
        for index in range(count):
            process_id = f"{spec.generator_id}.{index}"
            read_fd, write_fd = os.pipe()
            args = [sys.executable, "-m", "harness.load.runner", *spec.runner_args(process_id, write_fd)]
            log = open(Path(spec.log_dir) / f"locust-{process_id}.log", "ab")  # noqa: SIM115
            proc = await asyncio.create_subprocess_exec(
                *args,
                stdin=asyncio.subprocess.PIPE,
                stdout=log,
                stderr=log,
                pass_fds=(write_fd,),
                preexec_fn=_prepare_child,
                env=env,
            )
            log.close()
            os.close(write_fd)
            reader = asyncio.StreamReader(limit=16 * 1024 * 1024)
            loop = asyncio.get_running_loop()
            await loop.connect_read_pipe(
                functools.partial(asyncio.StreamReaderProtocol, reader), os.fdopen(read_fd, "rb", buffering=0)
            )
            child = _Child(process_id, proc, reader, asyncio.Event(), asyncio.Event())
            child.task = asyncio.create_task(self._read(child))
            self._children.append(child)
        # Keepalives start before the processes are ready: a process that is ready early must
        # not time out while its siblings still import the locustfile.
        self._watch = asyncio.create_task(self._watch_driver())
        deadline = time.monotonic() + timeout
        for child in self._children:
            remaining = max(0.1, deadline - time.monotonic())
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._ready_or_exit(child), remaining)
            if not child.ready.is_set():
                reason = child.error or f"did not become ready within {timeout:g}s"
                await self.stop(grace=1.0)
                raise LoadError(f"load process {child.process_id} failed to start: {reason}")
        return self._describe()

    async def _ready_or_exit(self, child: _Child) -> None:
        waiter = asyncio.create_task(child.ready.wait())
        exited = asyncio.create_task(child.proc.wait())
        await asyncio.wait({waiter, exited}, return_when=asyncio.FIRST_COMPLETED)
        waiter.cancel()
        exited.cancel()

    async def _read(self, child: _Child) -> None:
        while True:
            line = await child.reader.readline()
            if not line:
                break
            text = line.decode().rstrip("\n")
            try:
                report = decode_report(text)
            except ValueError:
                continue  # not a report of this protocol: nothing to act on
            self._on_report[type(report)](child, text)
        child.stopped.set()
        await child.proc.wait()
        child.exited_at = self._now()

    def _on_error(self, child: _Child, text: str) -> None:
        child.error = text
        self._events.append(text)

    async def _watch_driver(self) -> None:
        """Forward keepalives while the driver is heard from; stop the load when it is not.

        Runs until ``stop``. Never raises: a failure here must not leave the load running
        unsupervised, so any error stops the processes too.
        """
        sent = 0.0
        try:
            while not self._stopping:
                await asyncio.sleep(WATCH_TICK)
                silent = time.monotonic() - self._contact
                if self._stopping:
                    return
                if self._armed and silent > CUT_OFF_AFTER:
                    self._cut_off = {"at": self._now(), "silent_s": round(silent, 3)}
                    break
                if time.monotonic() - sent < KEEPALIVE_INTERVAL:
                    continue
                sent = time.monotonic()
                for child in self._children:
                    if child.proc.returncode is None and not child.asked_to_stop:
                        await self._send(child, Keepalive())
        except Exception as exc:  # stop the load below, whatever went wrong, and say so
            self._cut_off = {"at": self._now(), "silent_s": 0.0, "error": f"{type(exc).__name__}: {exc}"}
        if not self._stopping:
            await self._stop_children(grace=STOP_GRACE)

    def _describe(self) -> dict[str, Any]:
        """Where this generator runs: its processes, and the node that hosts them (for the summary)."""
        return {
            "processes": [c.process_id for c in self._children],
            "pids": [c.proc.pid for c in self._children],
            "node": ray.get_runtime_context().get_node_id(),
            "node_ip": ray.util.get_node_ip_address(),
            "hostname": socket.gethostname(),
            "actor_pid": os.getpid(),
        }

    async def _send(self, child: _Child, command: Command) -> None:
        if child.proc.stdin is None or child.proc.returncode is not None:
            return
        with contextlib.suppress(BrokenPipeError, ConnectionResetError, RuntimeError):
            child.proc.stdin.write(encode_command(command))
            await child.proc.stdin.drain()

    async def command(self, commands: dict[str, Command]) -> None:
        """Send each process its own command (keyed by process id), in call order."""
        self._contact = time.monotonic()
        async with self._command_lock:
            for child in self._children:
                command = commands.get(child.process_id)
                if command is not None and not child.asked_to_stop:
                    await self._send(child, command)

    async def drain(self) -> dict[str, Any]:
        """Report lines received since the last call, plus process liveness.

        ``windows`` and ``applied`` are the processes' raw report lines (parsed by the driver,
        which keeps the actor's per-line work to a prefix test); ``events`` are error reports.
        ``dead`` lists the processes that exited without being asked to, and ``died`` when
        (epoch time) and how (exit code; negative: the signal); ``cut_off`` is set once the
        actor stopped its load because the driver went silent. Each call is a sign of life
        from the driver.
        """
        self._contact = time.monotonic()
        self._armed = True
        lines, self._lines = self._lines, []
        events, self._events = self._events, []
        applied, self._applied = self._applied, []
        gone = [c for c in self._children if c.died()]
        return {
            "windows": lines,
            "events": events,
            "applied": applied,
            "dead": [c.process_id for c in gone],
            "died": {c.process_id: {"at": c.exited_at, "code": c.proc.returncode} for c in gone},
            "cut_off": self._cut_off,
        }

    def _now(self) -> float:
        """Epoch time on the driver's clock (this node's minus the offset measured at start)."""
        return time.time() - (self._spec.clock_offset if self._spec is not None else 0.0)

    async def ping(self) -> float:
        """This node's own clock (not corrected): what the driver measures the offset from."""
        self._contact = time.monotonic()
        return time.time()

    async def stop(self, grace: float = 5.0) -> dict[str, Any]:
        """Stop every process: ask, wait ``grace`` seconds, then kill. Idempotent."""
        self._stopping = True
        await self._stop_children(grace)
        if self._watch is not None:
            self._watch.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._watch
        return await self.drain()

    async def _stop_children(self, grace: float) -> None:
        for child in self._children:
            child.asked_to_stop = True
            stdin = child.proc.stdin
            if child.proc.returncode is None and stdin is not None and not stdin.is_closing():
                with contextlib.suppress(BrokenPipeError, ConnectionResetError, RuntimeError):
                    stdin.write(encode_command(Stop()))
                    await stdin.drain()
                    stdin.close()
        deadline = time.monotonic() + grace
        for child in self._children:
            try:
                await asyncio.wait_for(child.proc.wait(), max(0.1, deadline - time.monotonic()))
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    child.proc.kill()
                await child.proc.wait()
            if child.task is not None:
                with contextlib.suppress(TimeoutError, asyncio.CancelledError):
                    await asyncio.wait_for(child.task, 2.0)


class LoadGenerator:
    """Public handle on one generator actor. Calls block with a timeout and raise LoadError."""

    def __init__(self, spec: GeneratorSpec, options: dict[str, Any] | None = None) -> None:
        self.spec = spec
        actor_cls: Any = ray.remote(_LoadGeneratorActor)
        # ``options`` may override the defaults, e.g. a placement group's scheduling strategy and
        # the bundle's num_cpus (see harness.run.placement).
        merged = {"num_cpus": 0, "max_concurrency": 16, **(options or {})}
        # Ray's typed handles do not model async actor methods; the handle is used untyped.
        self._actor: Any = actor_cls.options(**merged).remote()
        self.info: dict[str, Any] = {}
        self.clock = ClockOffset(0.0, 0.0)

    def start(self, timeout: float = 60.0) -> dict[str, Any]:
        """Measure the node's clock against the driver's, then start the processes on driver time."""
        self.clock = measure(lambda: float(self._get(self._actor.ping.remote(), timeout)))
        self.spec = replace(self.spec, clock_offset=self.clock.offset_s)
        self.info = self._get(self._actor.start.remote(self.spec, timeout), timeout + 10)
        return self.info

    @property
    def process_ids(self) -> list[str]:
        return list(self.info.get("processes", []))

    def command_async(self, commands: dict[str, Command]) -> ray.ObjectRef:
        return self._actor.command.remote(commands)

    def drain_async(self) -> ray.ObjectRef:
        return self._actor.drain.remote()

    def stop(self, grace: float = 5.0) -> dict[str, Any]:
        """Graceful stop with a grace period, then the actor is killed whatever happened."""
        try:
            return self._get(self._actor.stop.remote(grace), grace + 10)
        except LoadError:
            return {"windows": [], "events": [], "applied": [], "dead": [], "died": {}, "cut_off": None}
        finally:
            self.kill()

    def kill(self) -> None:
        """Kill the actor without asking (a lost generator cannot be asked); its processes die with it."""
        with contextlib.suppress(Exception):
            ray.kill(self._actor)

    def _get(self, ref: ray.ObjectRef, timeout: float) -> Any:
        try:
            return ray.get(ref, timeout=timeout)
        except LoadError:
            raise
        except ray.exceptions.RayTaskError as exc:
            cause = exc.as_instanceof_cause()
            if isinstance(cause, LoadError):
                raise LoadError(str(cause).splitlines()[-1]) from None
            raise LoadError(f"generator {self.spec.generator_id}: {cause}") from None
        except (ray.exceptions.GetTimeoutError, ray.exceptions.RayActorError) as exc:
            raise LoadError(f"generator {self.spec.generator_id}: {type(exc).__name__}") from None


@dataclass(frozen=True)
class Call:
    """One call in flight on generator ``generator`` of a :class:`GeneratorPool`."""

    generator: int
    what: str  # what was asked, for messages: "drain", or the stage a command changes to
    sent: float  # time.monotonic() when it was sent
    ref: ray.ObjectRef = field(repr=False)


@dataclass(frozen=True)
class Answer:
    """What came back for a :class:`Call`: its ``value``, or why there is none.

    ``died``: the actor is gone (the Ray error's class name); ``error``: the call failed on the
    actor (the actor's own error) or Ray could not deliver its result.
    """

    call: Call
    value: Any = None
    died: str = ""
    error: str = ""


class GeneratorPool:
    """Many generators, called at once: submit to many, then collect the answers that are ready.

    Nothing here blocks longer than the timeout it is given; a dead actor or a failed call is
    an :class:`Answer` that says so, never an exception, so the caller decides what a loss means.
    """

    def __init__(self, generators: Sequence[LoadGenerator]) -> None:
        self.generators = list(generators)

    def __len__(self) -> int:
        return len(self.generators)

    def __getitem__(self, index: int) -> LoadGenerator:
        return self.generators[index]

    def start(self) -> list[dict[str, Any]]:
        """Start every generator in parallel; returns each one's ``info`` in order.

        Each start waits for its Locust processes to import the locustfile (seconds); on many
        nodes they do that in parallel, so start-up does not grow with the node count.
        Raises the first generator's ``LoadError``.
        """
        with ThreadPoolExecutor(max_workers=len(self.generators), thread_name_prefix="harness-start") as pool:
            return list(pool.map(lambda generator: generator.start(), self.generators))

    def command(self, index: int, commands: dict[str, Command], what: str) -> Call:
        """Send generator ``index`` its processes' commands (keyed by process id); do not wait."""
        return Call(index, what, time.monotonic(), self.generators[index].command_async(commands))

    def drain(self, index: int) -> Call:
        """Ask generator ``index`` for what its processes reported since its last drain; do not wait."""
        return Call(index, "drain", time.monotonic(), self.generators[index].drain_async())

    def ready(self, calls: Sequence[Call], timeout: float = 0.0) -> list[Answer]:
        """The answers of ``calls`` that are in within ``timeout`` seconds, in the order of ``calls``."""
        if not calls:
            return []
        done, _ = ray.wait([c.ref for c in calls], num_returns=len(calls), timeout=timeout)
        arrived = set(done)
        return [_answer(call) for call in calls if call.ref in arrived]


def _answer(call: Call) -> Answer:
    try:
        return Answer(call, ray.get(call.ref, timeout=0))
    except ray.exceptions.RayActorError as exc:
        return Answer(call, died=type(exc).__name__)
    except ray.exceptions.RayTaskError as exc:
        return Answer(call, error=str(exc.as_instanceof_cause()))
    except ray.exceptions.RayError as exc:
        return Answer(call, error=str(exc))
