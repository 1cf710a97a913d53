"""The kind a failed request is counted under (harness.load.failures), with Locust's real exceptions.

Locust's exceptions are raised in a Python process of their own (importing locust patches
gevent into whoever imports it, pytest included); the normalisation is checked directly.
"""

from __future__ import annotations

import json
import subprocess
import sys

from harness.load.failures import MAX_MESSAGE_KINDS, normalise

KINDS = """
from gevent import monkey; monkey.patch_all()
import json
from types import SimpleNamespace
from locust.exception import CatchResponseError
from harness.load.failures import FailureKinds

kinds = FailureKinds()
ok = SimpleNamespace(status_code=200)
out = {
    "message": kinds(CatchResponseError("item 12 out of stock"), ok),
    "status": kinds(RuntimeError("boom"), SimpleNamespace(status_code=503)),
    "exception": kinds(ConnectionRefusedError(), None),
}
fresh = FailureKinds()
out |= {
    "many": sorted({fresh(CatchResponseError(f"wrong answer {chr(0x4E00 + i)}"), None) for i in range(200)}),
    "early": fresh(CatchResponseError("wrong answer \\u4e00"), None),
}
print(json.dumps(out))
"""


def test_ids_are_normalised_out_of_messages() -> None:
    assert normalise("payment 3f2b8c1e-9d4a-4b7e-8f00-1a2b3c4d5e6f declined for order 4711") == (
        "payment <uuid> declined for order <n>"
    )
    assert normalise("session deadbeef42 expired after 1.5 s") == "session <hex> expired after <n> s"
    assert normalise("  spaces\n and   tabs ") == "spaces and tabs"
    assert normalise("") == "CatchResponseError"
    assert len(normalise("x" * 1000)) == 120


def test_catch_response_message_status_and_exception_kinds_are_bounded() -> None:
    done = subprocess.run([sys.executable, "-c", KINDS], capture_output=True, text=True, timeout=60, check=True)
    kinds = json.loads(done.stdout.strip().splitlines()[-1])
    assert kinds["message"] == "item <n> out of stock"  # catch_response's own words
    assert kinds["status"] == "http_503"
    assert kinds["exception"] == "ConnectionRefusedError"
    assert len(kinds["many"]) == MAX_MESSAGE_KINDS + 1  # the first 50 messages, then one catch-all
    assert "CatchResponseError" in kinds["many"]
    assert kinds["early"] == "wrong answer \u4e00"  # a message kept early stays its own kind
