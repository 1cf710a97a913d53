"""The kind a failed request is counted under: a status, an exception name, or a failure's own words.

A status Locust failed a request for is ``http_NNN`` (what SLO ``errors:`` lists select by
status or class); any other exception is its class name (``ConnectionRefusedError``). A
failure a locustfile declares itself, ``response.failure("out of stock")`` inside
``catch_response``, keeps its message, as Locust's own failure table does: that is what the
user wrote the check to tell apart. Messages often carry ids (``order 4711 not found``), so
they are normalised (UUIDs, long hex ids and numbers replaced) and bounded: at most
``MAX_MESSAGE_KINDS`` distinct messages per process, later new ones counted as
``CatchResponseError``. Runs only for failed requests.
"""

from __future__ import annotations

import re
from typing import Any

__all__ = ["MAX_MESSAGE_KINDS", "MAX_MESSAGE_LENGTH", "FailureKinds", "normalise"]

MAX_MESSAGE_KINDS = 50  # distinct failure messages one process keeps as kinds
MAX_MESSAGE_LENGTH = 120  # characters of a message kept

_UUID = re.compile(r"\b[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}\b")
_HEX = re.compile(r"\b(?=[0-9a-fA-F]*[0-9])(?=[0-9a-fA-F]*[a-fA-F])[0-9a-fA-F]{8,}\b|\b0x[0-9a-fA-F]+\b")
_NUMBER = re.compile(r"\d+(?:\.\d+)?")
_SPACE = re.compile(r"\s+")


def normalise(message: str) -> str:
    """``message`` with ids replaced (``<uuid>``, ``<hex>``, ``<n>``), spaces collapsed, cut to a bound."""
    text = _UUID.sub("<uuid>", message)
    text = _HEX.sub("<hex>", text)
    text = _NUMBER.sub("<n>", text)
    text = _SPACE.sub(" ", text).strip()
    if len(text) > MAX_MESSAGE_LENGTH:
        text = text[: MAX_MESSAGE_LENGTH - 3] + "..."
    return text or "CatchResponseError"


class FailureKinds:
    """Names failures for one process; remembers the message kinds it gave out (bounded)."""

    def __init__(self) -> None:
        self._messages: dict[str, str] = {}  # raw message -> its kind, for messages seen before
        self._kinds: set[str] = set()

    def __call__(self, exception: BaseException, response: Any) -> str:
        # By name: importing locust here would patch gevent into whoever imports this module.
        if type(exception).__name__ == "CatchResponseError":
            return self._message(str(exception))
        status = getattr(response, "status_code", 0) or 0
        if status >= 400 or (status and status < 200):
            return f"http_{status}"
        return type(exception).__name__

    def _message(self, message: str) -> str:
        kind = self._messages.get(message)
        if kind is not None:
            return kind
        kind = normalise(message)
        if kind not in self._kinds:
            if len(self._kinds) >= MAX_MESSAGE_KINDS:
                return "CatchResponseError"  # not remembered: the raw messages are unbounded too
            self._kinds.add(kind)
        if len(self._messages) < 4 * MAX_MESSAGE_KINDS:
            self._messages[message] = kind
        return kind
