"""A Locust load process: one per core, started and supervised by a LoadGenerator actor.

Run as ``python -m harness.load.runner`` in a fresh interpreter, never imported by Ray
processes: Locust needs gevent's monkey patching before anything else is imported, and
``import locust`` inside a Ray worker hangs (see DESIGN.md). There is no Locust master; the
actor tells each process how many users (or what arrival rate) it owns, and the process
reports one window per second on the report pipe (see :mod:`harness.load.protocol`).

The process stops by itself when its stdin closes (actor killed, node lost) and when it
reads nothing from its actor for ``ACTOR_SILENCE`` seconds (the actor hangs, or stopped
forwarding keepalives because the driver went silent): a process cut off from the run must
not go on sending load.
"""

from gevent import monkey

monkey.patch_all()

import argparse  # noqa: E402
import ctypes  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
import os  # noqa: E402
import signal  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402
from dataclasses import dataclass, field  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any, TextIO  # noqa: E402

import gevent  # noqa: E402
from gevent.fileobject import FileObjectPosix  # noqa: E402
from locust import User  # noqa: E402
from locust import log as locust_log  # noqa: E402
from locust.env import Environment  # noqa: E402

from harness.load.arrivals import ArrivalSchedule, driver_now, intended, paced  # noqa: E402
from harness.load.failures import FailureKinds  # noqa: E402
from harness.load.locustfile import Locustfile, build_environment, parse_options  # noqa: E402
from harness.load.protocol import (  # noqa: E402
    ACTOR_SILENCE,
    Applied,
    Command,
    Error,
    Health,
    Keepalive,
    Ready,
    SetContext,
    SetRate,
    SetUsers,
    Stop,
    Stopped,
    decode_command,
)
from harness.load.trace import TraceSettings  # noqa: E402
from harness.load.tracing import traced  # noqa: E402
from harness.measure.windows import WindowRecorder  # noqa: E402


def _die_with_parent() -> None:
    """Ask the kernel to SIGKILL us when the actor process that started us dies."""
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except OSError:
        pass


@dataclass(frozen=True)
class Settings:
    """What a load process runs, from its command line (see :func:`main`)."""

    process_id: str
    locustfile: Path
    classes: dict[str, int]  # empty: every runnable User class of the file, as Locust does
    host: str
    open_model: bool = False
    shape: str | None = None  # environment.shape_class; the driver follows its ticks
    arguments: dict[str, Any] = field(default_factory=dict)  # the locustfile's own arguments
    users: int | None = None  # parsed_options.num_users: the run's peak users, all processes
    run_time: float | None = None  # parsed_options.run_time, seconds
    keep_stats: bool = False  # keep Locust's own request statistics (the locustfile reads them)
    trace: TraceSettings | None = None  # W3C trace context on every request (None: off)


class LoadProcess:
    """One Locust environment driven by commands, reporting per-second windows.

    Built as ``locust`` builds its own (:mod:`harness.load.locustfile`): the locustfile
    imported, its arguments parsed, one Environment on Locust's global events, ``init`` fired
    once; ``test_start`` fires when the first users start, ``test_stop`` and ``quitting`` in
    :meth:`finish`.
    """

    def __init__(self, settings: Settings, out: int, raw: TextIO | None) -> None:
        self.process_id = settings.process_id
        self.out = out
        self.raw = raw
        self.schedule = ArrivalSchedule()
        self.open_model = settings.open_model
        self.recorder = WindowRecorder(settings.process_id, int(driver_now()))
        locustfile = Locustfile.load(settings.locustfile)
        self.user_classes: list[type[User]] = locustfile.user_classes(settings.classes)
        shape = locustfile.shape(settings.shape)
        options = parse_options(
            settings.locustfile, settings.host, settings.users, settings.run_time, settings.arguments
        )
        if settings.open_model:
            count_start = self._count_start
            self.user_classes = [paced(cls, self.schedule, count_start) for cls in self.user_classes]
        self.env: Environment = build_environment(locustfile, self.user_classes, shape, settings.host, options)
        self.runner = self.env.create_local_runner()
        if not settings.keep_stats:
            _drop_locust_stats(self.env)
        self._failure_kind = FailureKinds()
        listener = self._on_request_open if settings.open_model else self._on_request
        self.tracer = traced(settings.trace)  # before any user starts
        #: Per endpoint, the latency a request must beat to be kept as an example (None: untraced),
        #: and what keeps it (:meth:`Tracer.keep`, called only when it is beaten or the request failed).
        self._floor: dict[tuple[str, str], float] | None = self.tracer.keeper.floor if self.tracer else None
        self._keep: Callable[..., None] = self.tracer.keep if self.tracer else _no_keep
        self.env.events.request.add_listener(self._with_raw_log(listener) if raw is not None else listener)
        self.env.events.init.fire(environment=self.env, runner=self.runner, web_ui=None)
        if locust_log.unhandled_greenlet_exception:  # Locust exits 1 then too
            raise RuntimeError("an @events.init listener of the locustfile raised (its traceback is in this log)")
        self._cpu = (time.monotonic(), _cpu_seconds(), _runqueue_wait_seconds())
        # What each command does: True while the process should go on.
        self._handlers: dict[type[Command], Callable[[Any], bool]] = {
            SetUsers: self._set_users,
            SetRate: self._set_rate,
            Stop: lambda _: False,
            Keepalive: lambda _: True,  # nothing to apply, nothing to acknowledge
            SetContext: self._set_context,  # not acknowledged either: no stage waits for it
        }

    def _count_start(self) -> None:
        self.recorder.count_start(int(driver_now()))

    def emit(self, line: str) -> None:
        data = (line + "\n").encode()
        while data:
            written = os.write(self.out, data)
            data = data[written:]

    # The request listeners run once per request: keep them to a few dict operations.

    def _on_request(
        self,
        request_type: str,
        name: str,
        response_time: float,
        response_length: int,
        exception: BaseException | None = None,
        response: Any = None,
        **_: Any,
    ) -> int:
        failure = None if exception is None else self._failure_kind(exception, response)
        second = self.recorder.record(
            int(driver_now()), request_type, name, int(response_time * 1000), response_length or 0, failure
        )
        floor = self._floor
        if floor is not None and (failure is not None or response_time > floor.get((request_type, name), -1.0)):
            self._keep(request_type, name, response_time, failure, second)
        return second

    def _on_request_open(
        self,
        request_type: str,
        name: str,
        response_time: float,
        response_length: int,
        exception: BaseException | None = None,
        response: Any = None,
        **_: Any,
    ) -> int:
        now = driver_now()
        service_us = int(response_time * 1000)
        slot = intended.pop(gevent.getcurrent(), None)
        latency_us = service_us if slot is None else max(service_us, int((now - slot) * 1e6))
        failure = None if exception is None else self._failure_kind(exception, response)
        second = self.recorder.record(
            int(now), request_type, name, latency_us, response_length or 0, failure, service_us
        )
        floor = self._floor
        if floor is not None and (failure is not None or response_time > floor.get((request_type, name), -1.0)):
            self._keep(request_type, name, response_time, failure, second)
        return second

    def _with_raw_log(self, listener: Callable[..., int]) -> Callable[..., None]:
        """Also log every request's latency, for tests that check percentiles against ground truth."""
        raw = self.raw
        assert raw is not None

        def logged(request_type: str, name: str, response_time: float, **kwargs: Any) -> None:
            pending = intended.get(gevent.getcurrent())
            now = driver_now()
            second = listener(request_type=request_type, name=name, response_time=response_time, **kwargs)
            service_us = int(response_time * 1000)
            latency_us = service_us if pending is None else max(service_us, int((now - pending) * 1e6))
            raw.write(f"{second}\t{request_type}\t{name}\t{latency_us}\t{service_us}\n")

        return logged

    def health(self, lag_ms: float) -> Health:
        """CPU used and waited for since the last call, users, target rate, and the given lag."""
        wall, cpu, wait = time.monotonic(), _cpu_seconds(), _runqueue_wait_seconds()
        last_wall, last_cpu, last_wait = self._cpu
        self._cpu = (wall, cpu, wait)
        span = wall - last_wall
        share = (cpu - last_cpu) / span if span > 0 else 0.0
        waited = (wait - last_wait) / span if span > 0 else 0.0
        return Health(round(share, 3), round(waited, 3), self.runner.user_count, self.schedule.rate, lag_ms)

    def tick_forever(self) -> None:
        """Emit each second's window just after it ends; measure event-loop lag meanwhile."""
        while True:
            now = driver_now()
            due = math.floor(now) + 1.02
            gevent.sleep(due - now)
            woke = driver_now()
            health = self.health(lag_ms=round(max(0.0, woke - due) * 1000, 2))
            for line in self.recorder.flush(int(woke), health):
                self.emit(line)
            self._emit_examples()

    def _emit_examples(self) -> None:
        line = self.tracer.report(self.process_id) if self.tracer is not None else None
        if line is not None:
            self.emit(line)

    def _set_context(self, command: SetContext) -> bool:
        if self.tracer is not None:
            self.tracer.set_context(command.phase, command.faults)
        return True

    def handle(self, command: Command) -> bool:
        """Apply one command; False when the process should exit."""
        return self._handlers[type(command)](command)

    def _set_users(self, command: SetUsers) -> bool:
        if command.users > 0:
            self.runner.start(command.users, command.spawn_rate or command.users)
        elif self.runner.user_count:
            # All at once, as before; start(0), not stop(): under Locust a test stops once, at
            # its end (test_stop), however often its users drop to none on the way.
            self.runner.start(0, max(self.runner.user_count, 1))
        self.emit(Applied(self.process_id, command.name, round(driver_now(), 4)).encode())
        return True

    def _set_rate(self, command: SetRate) -> bool:
        effective = self.schedule.set_rate(command.rate, command.start, command.phase)
        if command.users > 0:
            ahead = effective - driver_now()
            if ahead > 0:  # the pool changes with the schedule, not when the command came
                gevent.spawn_later(ahead, self._resize, command.users)
            else:
                self._resize(command.users)
        # Sent ahead, the stage takes effect at its start, in the schedule's intended time.
        self.emit(Applied(self.process_id, command.name, round(effective, 4)).encode())
        return True

    def _resize(self, users: int) -> None:
        if users != self.runner.user_count:
            self.runner.start(users, max(users, 100))

    def finish(self) -> None:
        """End as ``locust --headless`` ends: stop the users (``test_stop``), then ``quitting``."""
        self.runner.quit()
        self.env.events.quitting.fire(environment=self.env, reverse=True)
        health = self.health(lag_ms=0.0)
        for line in self.recorder.flush(int(driver_now()) + 1, health):
            self.emit(line)
        self._emit_examples()
        if self.raw is not None:
            self.raw.flush()
        self.emit(Stopped(self.process_id).encode())


def _no_keep(*_: Any) -> None:
    """Where nothing keeps examples (trace context off); never called: the floor is None then."""


def _drop_locust_stats(env: Environment) -> None:
    """Unhook Locust's own request statistics: harness's windows replace them (unless the file reads them).

    Locust's runner logs every request into ``env.stats`` (rounded response-time buckets,
    per-second counts, for its web UI and CSV files, neither of which runs here). That
    bookkeeping costs more per request than the window recorder; with it gone the harness
    path is leaner than plain Locust's. ``env.stats`` therefore stays empty under harness,
    unless the scenario's locustfile reads ``.stats`` (``keep_stats``): then it holds this
    process's own requests, as a Locust worker's does.
    """
    hook = env.events.request
    for handler in list(hook._handlers):
        if getattr(handler, "__module__", "") == "locust.runners":
            hook.remove_listener(handler)


def _cpu_seconds() -> float:
    times = os.times()
    return times.user + times.system


def _runqueue_wait_seconds() -> float:
    """Seconds the main (event-loop) thread was runnable but waiting for a core (``/proc/self/schedstat``).

    CPU used is not enough to tell a generator that is flat out: beside a busy neighbour it
    gets, say, 60% of a core and waits for the other 40%, just as unable to send more. 0 where
    the kernel has no schedstat.
    """
    try:
        with open("/proc/self/schedstat", "rb") as f:  # the main thread, where gevent's loop runs
            return int(f.read().split()[1]) / 1e9
    except (OSError, IndexError, ValueError):
        return 0.0


def _parse_classes(text: str) -> dict[str, int]:
    out = {}
    for item in filter(None, text.split(",")):
        name, _, weight = item.partition(":")
        out[name] = int(weight or 1)
    return out


def _settings(argv: list[str] | None) -> tuple[Settings, int]:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--process-id", required=True)
    parser.add_argument("--locustfile", required=True, type=Path)
    parser.add_argument("--classes", default="", help="Name:weight,Name:weight; none: every User class")
    parser.add_argument("--host", required=True)
    parser.add_argument("--report-fd", required=True, type=int)
    parser.add_argument("--open-model", action="store_true", help="Pace iterations by arrival rate")
    parser.add_argument("--shape", default=None, help="The LoadTestShape class (environment.shape_class)")
    parser.add_argument("--arguments", default="{}", help="The locustfile's own arguments, a JSON object")
    parser.add_argument("--users", type=int, default=None, help="parsed_options.num_users")
    parser.add_argument("--run-time", type=float, default=None, help="parsed_options.run_time, seconds")
    parser.add_argument("--keep-stats", action="store_true", help="Keep Locust's request statistics")
    parser.add_argument("--trace", default=None, help="W3C trace context: per=request|iteration,sampled=1|0")
    args = parser.parse_args(argv)
    settings = Settings(
        process_id=args.process_id,
        locustfile=args.locustfile,
        classes=_parse_classes(args.classes),
        host=args.host,
        open_model=args.open_model,
        shape=args.shape,
        arguments=json.loads(args.arguments),
        users=args.users,
        run_time=args.run_time,
        keep_stats=args.keep_stats,
        trace=TraceSettings.parse(args.trace) if args.trace else None,
    )
    return settings, args.report_fd


def main(argv: list[str] | None = None) -> int:
    settings, report_fd = _settings(argv)
    _die_with_parent()
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the orchestrator's to handle

    raw_dir = os.environ.get("HARNESS_RAW_LATENCY_DIR")
    raw = open(Path(raw_dir) / f"raw-{settings.process_id}.log", "w") if raw_dir else None  # noqa: SIM115
    try:
        process = LoadProcess(settings, report_fd, raw)
    except Exception as exc:  # the actor shows this to the user
        os.write(report_fd, (Error(settings.process_id, f"{type(exc).__name__}: {exc}").encode() + "\n").encode())
        return 1
    ticker = gevent.spawn(process.tick_forever)
    scheduler = gevent.spawn(process.schedule.run)
    process.emit(Ready(process.process_id).encode())
    commands: Callable[[], bytes] = FileObjectPosix(sys.stdin.fileno(), "rb").readline
    try:
        while True:
            line: bytes | None = None
            with gevent.Timeout(ACTOR_SILENCE, False):  # False: the block just ends on timeout
                line = commands()
            if line is None:  # a hung actor, or one cut off from the driver: stop sending load
                message = f"no word from its generator actor for {ACTOR_SILENCE:g} s: stopped its users and exited"
                process.emit(Error(process.process_id, message).encode())
                break
            if not line:  # actor gone: stop sending load
                break
            if not process.handle(decode_command(line)):
                break
    finally:
        ticker.kill()
        scheduler.kill()
        process.finish()
    return 0


if __name__ == "__main__":
    sys.exit(main())
