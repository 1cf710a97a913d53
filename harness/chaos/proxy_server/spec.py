"""The fault proxy's faults as its control API takes them, and the one profile the data path reads."""

from __future__ import annotations

import random
import socket
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from harness.chaos.proxy_server.rules import Rule, Rules, compile_rule, validate_rule

__all__ = ["HTTP_KINDS", "KINDS", "FaultSpec", "Profile", "format_address", "parse_address", "validate"]

# The control API's names of the faults (the scenario's proxy kinds are the same words).
LATENCY, BANDWIDTH, RESET, ABORT = "proxy.latency", "proxy.bandwidth", "proxy.reset", "proxy.abort"
# HTTP rules matched by route (rules.py): each kind's action keys besides the match.
HTTP_ACTIONS = {
    "http.abort": {"status", "reset"},
    "http.delay": {"delay", "jitter"},
    "http.replace": {"replace"},
    "http.patch": {"patch"},
}
HTTP_KINDS = tuple(HTTP_ACTIONS)
KINDS = (LATENCY, BANDWIDTH, RESET, ABORT, *HTTP_KINDS)

FaultSpec = dict[str, Any]


def parse_address(text: str) -> tuple[int, Any]:
    """``(family, sockaddr)`` of ``host:port``, ``[v6]:port`` or ``unix:/path``; ``ValueError`` otherwise."""
    if text.startswith("unix:"):
        path = text[len("unix:") :]
        if not path:
            raise ValueError(f"'{text}': a unix address needs a path, e.g. unix:/run/proxy.sock")
        return socket.AF_UNIX, path
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"'{text}' is not host:port, e.g. 127.0.0.1:8474")
    if host.startswith("[") and host.endswith("]"):
        return socket.AF_INET6, (host[1:-1], int(port))
    return (socket.AF_INET6 if ":" in host else socket.AF_INET), (host or "0.0.0.0", int(port))


def format_address(family: int, address: Any) -> str:
    if family == socket.AF_UNIX:
        return f"unix:{address}"
    host, port = address[0], address[1]
    return f"[{host}]:{port}" if family == socket.AF_INET6 else f"{host}:{port}"


def _number(spec: dict[str, Any], key: str, default: float | None, low: float, high: float) -> float:
    value = spec.get(key, default)
    if value is None:
        raise ValueError(f"'{key}' is required")
    if isinstance(value, bool) or not isinstance(value, int | float) or not low <= value <= high:
        raise ValueError(f"'{key}' must be a number from {low:g} to {high:g}, not {value!r}")
    return float(value)


def validate(spec: Any) -> FaultSpec:
    """The normalised fault of a PUT body; ``ValueError`` saying what is wrong.

    Kinds may be given short (``latency``) or as in scenarios (``proxy.latency``); HTTP rules
    (``http.abort``, ...) only in full. Times are seconds, ``rate`` bits/s, ``percent`` 0
    (exclusive) to 100.
    """
    if not isinstance(spec, dict):
        raise ValueError("a fault is a JSON object with 'kind' and its parameters")
    kind = str(spec.get("kind", ""))
    if kind in HTTP_ACTIONS:
        rule = validate_rule(kind, spec, HTTP_ACTIONS)
        if kind == "http.abort" and ("status" in rule) == ("reset" in rule):
            raise ValueError("http.abort takes 'status' (answer it) or 'reset': true (reset the connection)")
        if kind == "http.delay" and "delay" not in rule:
            raise ValueError("'delay' is required")
        if kind in ("http.replace", "http.patch") and kind.partition(".")[2] not in rule:
            raise ValueError(f"'{kind.partition('.')[2]}' is required")
        return rule
    kind = kind if kind.startswith("proxy.") else f"proxy.{kind}"
    allowed = {
        LATENCY: {"latency", "jitter"},
        BANDWIDTH: {"rate"},
        RESET: {"percent"},
        ABORT: {"status", "percent"},
    }.get(kind)
    if allowed is None:
        raise ValueError(f"unknown kind {spec.get('kind')!r}; one of {', '.join(KINDS)}")
    extra = set(spec) - allowed - {"kind"}
    if extra:
        raise ValueError(f"{kind} takes {', '.join(sorted(allowed))}, not {', '.join(sorted(extra))}")
    if kind == LATENCY:
        return {
            "kind": kind,
            "latency": _number(spec, "latency", None, 0, 3600),
            "jitter": _number(spec, "jitter", 0.0, 0, 3600),
        }
    if kind == BANDWIDTH:
        return {"kind": kind, "rate": int(_number(spec, "rate", None, 8, 1e12))}
    percent = _number(spec, "percent", 100.0 if kind == RESET else None, 0, 100)
    if percent <= 0:
        raise ValueError("'percent' must be above 0")
    if kind == RESET:
        return {"kind": kind, "percent": percent}
    status = spec.get("status")
    if isinstance(status, bool) or not isinstance(status, int) or not 100 <= status <= 599:
        raise ValueError(f"'status' must be an HTTP status from 100 to 599, not {status!r}")
    return {"kind": kind, "status": status, "percent": percent}


@dataclass(frozen=True)
class Profile:
    """Every active fault folded into what the hot path reads: replaced whole on each change."""

    idle: bool = True
    latency: float = 0.0
    jitter: float = 0.0
    rate: float = 0.0  # bytes/s; 0 = unlimited
    reset: float = 0.0  # probability per request
    aborts: tuple[tuple[int, float], ...] = ()  # (status, probability), tried in order
    rules: Rules | None = None  # HTTP rules matched per request (None: none active)

    @classmethod
    def of(cls, faults: Iterable[FaultSpec]) -> Profile:
        latency = jitter = 0.0
        rates: list[float] = []
        keep = 1.0
        aborts: list[tuple[int, float]] = []
        rules: list[Rule] = []
        empty = True
        for spec in faults:
            empty = False
            if spec["kind"] in HTTP_ACTIONS:
                rules.append(compile_rule(spec))  # compiled once per change, not per request
            elif spec["kind"] == LATENCY:
                latency += spec["latency"]
                jitter += spec["jitter"]
            elif spec["kind"] == BANDWIDTH:
                rates.append(spec["rate"] / 8.0)
            elif spec["kind"] == RESET:
                keep *= 1 - spec["percent"] / 100
            else:
                aborts.append((spec["status"], spec["percent"] / 100))
        compiled = Rules.of(rules) if rules else None
        return cls(empty, latency, jitter, min(rates, default=0.0), 1 - keep, tuple(aborts), compiled)

    def delay(self) -> float:
        if not self.latency and not self.jitter:
            return 0.0
        return max(0.0, self.latency + random.uniform(-self.jitter, self.jitter))
