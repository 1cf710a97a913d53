"""The open-model schedule of one Locust process, with stage changes sent ahead of time.

Runs in a subprocess: the schedule lives in a gevent-patched process, as in the runner.
A change sent ahead must keep the old rate until its start and then switch exactly there
(in intended time), without the scheduler spinning meanwhile.
"""

from __future__ import annotations

import itertools
import json
import subprocess
import sys

SCRIPT = r"""
from gevent import monkey; monkey.patch_all()
import gevent, json, os, time
from harness.load.arrivals import ArrivalSchedule
s = ArrivalSchedule()
gevent.spawn(s.run)
got = []
def user():
    while True:
        got.append(s.take())
gevent.spawn(user)
t0 = time.time() + 0.2
returned = [s.set_rate(25, t0, 0), s.set_rate(40, t0 + 1.0, 0.5), s.set_rate(10, t0 + 2.0, 0)]
c0 = os.times()
gevent.sleep(t0 + 3.0 - time.time())
c1 = os.times()
print(json.dumps({"t0": t0, "got": got, "returned": returned,
                  "cpu": (c1.user + c1.system) - (c0.user + c0.system)}))
"""


def test_changes_sent_ahead_switch_on_their_start_without_spinning() -> None:
    done = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=60, check=True)
    data = json.loads(done.stdout)
    t0, got = data["t0"], data["got"]
    assert data["returned"] == [t0, t0 + 1.0, t0 + 2.0]  # each change takes effect at its start
    per_second = [sum(1 for x in got if t0 + k <= x < t0 + k + 1) for k in range(3)]
    assert per_second == [25, 40, 10], per_second
    # 40/s with phase 0.5: the first slot of the second stage is 12.5 ms after its start
    first = min(x for x in got if x >= t0 + 1.0)
    assert abs(first - (t0 + 1.0125)) < 1e-6
    assert all(b > a for a, b in itertools.pairwise(got))  # in order, none twice
    assert data["cpu"] < 0.3, f"the scheduler used {data['cpu']:.2f} s of CPU in 3 s: it spins"
