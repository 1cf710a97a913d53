"""Read a locustfile's LoadTestShape once per second of run time, in a process of its own.

Run as ``python -m harness.load.shape_probe`` by :func:`harness.load.shape.shape_stages`:
it imports the locustfile as Locust does (gevent patched first, hooks registered), sets the
shape up as Locust's runner would (``shape.runner``, with the run's parsed options), then
calls ``tick()`` at run times 0, 1, 2, ... s, as Locust's shape worker does once a second,
until it returns None. The ticks go to ``--out`` as JSON: ``{"ticks": [[users, spawn_rate],
...]}`` (tick k at k seconds) or ``{"error": TEXT}``.

The shape sees the run time it would see at each tick; ``get_current_user_count()`` answers
the users its previous tick asked for (the count the run converges to, not a live count).
"""

from gevent import monkey

monkey.patch_all()

import argparse  # noqa: E402
import json  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

from harness.load.locustfile import Locustfile, build_environment, parse_options  # noqa: E402

#: A shape that has not returned None after this many seconds of run time is refused.
MAX_SECONDS = 24 * 3600


class _Runner:
    """What a shape may ask of ``self.runner`` while it is read ahead of the run."""

    def __init__(self, environment: Any) -> None:
        self.environment = environment
        self.user_count = 0
        self.state = "running"


def ticks(locustfile: Path, name: str, host: str, arguments: dict[str, Any]) -> list[list[float]]:
    """The shape's ticks at run times 0, 1, 2, ... s up to (not including) the first None."""
    loaded = Locustfile.load(locustfile)
    shape = loaded.shape(name)
    assert shape is not None
    options = parse_options(locustfile, host, None, None, arguments)
    environment = build_environment(loaded, list(loaded.users.values()), shape, host, options)
    runner = _Runner(environment)
    shape.runner = runner  # type: ignore[assignment]  # the part of a Runner a shape reads
    second = 0
    shape.get_run_time = lambda: float(second)  # type: ignore[method-assign]
    out: list[list[float]] = []
    for second in range(MAX_SECONDS + 1):
        tick = shape.tick()
        if tick is None:
            return out
        if len(tick) > 2 and tick[2] is not None:
            raise ValueError(
                f"tick() at {second}s chooses user classes ({len(tick)}-tuple); harness runs every class by "
                "weight, so a shape may give users and spawn_rate only"
            )
        users, rate = int(tick[0]), float(tick[1])
        out.append([users, rate])
        runner.user_count = users
    raise ValueError(f"tick() did not return None within {MAX_SECONDS} s of run time: a shape must end")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--locustfile", required=True, type=Path)
    parser.add_argument("--shape", required=True)
    parser.add_argument("--host", required=True)
    parser.add_argument("--arguments", default="{}")
    parser.add_argument("--out", required=True, type=Path)
    args = parser.parse_args()
    try:
        result: dict[str, Any] = {"ticks": ticks(args.locustfile, args.shape, args.host, json.loads(args.arguments))}
    except Exception as exc:  # the driver shows it, located at load.shape
        result = {"error": f"{type(exc).__name__}: {exc}"}
    args.out.write_text(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
