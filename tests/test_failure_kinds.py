"""The kind a failed request is counted under (harness.load.failures), with Locust's real exceptions.

Pure: imports Locust's exception classes, starts nothing.
"""

from __future__ import annotations

from types import SimpleNamespace

from locust.exception import CatchResponseError

from harness.load.failures import MAX_MESSAGE_KINDS, FailureKinds, normalise


def test_ids_are_normalised_out_of_messages() -> None:
    assert normalise("payment 3f2b8c1e-9d4a-4b7e-8f00-1a2b3c4d5e6f declined for order 4711") == (
        "payment <uuid> declined for order <n>"
    )
    assert normalise("session deadbeef42 expired after 1.5 s") == "session <hex> expired after <n> s"
    assert normalise("  spaces\n and   tabs ") == "spaces and tabs"
    assert normalise("") == "CatchResponseError"
    assert len(normalise("x" * 1000)) == 120


def test_catch_response_message_status_and_exception_kinds() -> None:
    kinds = FailureKinds()
    assert (
        kinds(CatchResponseError("item 12 out of stock"), SimpleNamespace(status_code=200)) == "item <n> out of stock"
    )
    assert kinds(RuntimeError("boom"), SimpleNamespace(status_code=503)) == "http_503"
    assert kinds(ConnectionRefusedError(), None) == "ConnectionRefusedError"


def test_message_kinds_are_bounded() -> None:
    kinds = FailureKinds()
    names = {kinds(CatchResponseError(f"wrong answer {word}"), None) for word in map(chr, range(0x4E00, 0x4E00 + 200))}
    assert len(names) == MAX_MESSAGE_KINDS + 1  # the first 50 messages, then one catch-all
    assert "CatchResponseError" in names
    assert kinds(CatchResponseError("wrong answer \u4e00"), None) == "wrong answer \u4e00"  # an early one stays
