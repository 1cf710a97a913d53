"""The DNS responder's faults: what a control API PUT may hold, and which fault answers a query.

Pure (no sockets, no dnslib): the responder asks :func:`decide` for each query and acts on the
:class:`Action` it gets. A fault matches a query when one of its ``patterns`` (shell globs,
case-insensitive, without the trailing dot: ``payments.shop.demo``, ``*.shop.demo``) matches
the query's name and a roll of ``percent`` hits. Faults are tried in the order they were put;
the first that matches decides. The kinds on the wire are the ``dns`` family's kinds without
their ``dns.`` prefix:

* ``error``: ``error`` one of ``nxdomain``, ``servfail``, ``refused`` or ``timeout`` (no
  answer at all), after ``delay`` seconds;
* ``spoof``: answer with ``address`` (an IPv4 address answers A queries, an IPv6 one AAAA
  queries; the other type gets an empty answer), or ``random``: a fresh address drawn from
  ``network`` for each answer; after ``delay`` seconds;
* ``delay``: forward as usual, ``delay`` seconds late.
"""

from __future__ import annotations

import fnmatch
import ipaddress
import random
from dataclasses import dataclass
from typing import Any

__all__ = ["ERRORS", "KINDS", "Action", "decide", "normal_name", "validate"]

ERRORS = ("nxdomain", "servfail", "refused", "timeout")
KINDS = ("error", "spoof", "delay")
_MAX_PATTERNS = 64


def normal_name(name: str) -> str:
    """A query name as patterns see it: lower case, no trailing dot."""
    return name.rstrip(".").lower()


def _number(spec: dict[str, Any], key: str, default: float, low: float, high: float) -> float:
    value = spec.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or not low <= value <= high:
        raise ValueError(f"{key} must be a number from {low:g} to {high:g}, not {value!r}")
    return float(value)


def validate(spec: Any) -> dict[str, Any]:
    """The normalised fault of a PUT body; ``ValueError`` saying what is wrong."""
    if not isinstance(spec, dict):
        raise ValueError("a fault is a JSON object")
    kind = spec.get("kind")
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {', '.join(KINDS)}, not {kind!r}")
    allowed = {"kind", "patterns", "delay", "percent"} | {
        "error": {"error"},
        "spoof": {"address", "network"},
        "delay": set(),
    }[kind]
    unknown = sorted(set(spec) - allowed)
    if unknown:
        raise ValueError(f"unknown key(s) for {kind}: {', '.join(unknown)}")
    patterns = spec.get("patterns")
    if (
        not isinstance(patterns, list)
        or not 0 < len(patterns) <= _MAX_PATTERNS
        or not all(isinstance(p, str) and 0 < len(p) <= 255 for p in patterns)
    ):
        raise ValueError(f"patterns must be a list of 1 to {_MAX_PATTERNS} name globs")
    out: dict[str, Any] = {
        "kind": kind,
        "patterns": [normal_name(p) for p in patterns],
        "delay": _number(spec, "delay", 0.0, 0.0, 60.0),
        "percent": _number(spec, "percent", 100.0, 0.0, 100.0),
    }
    if kind == "error":
        if spec.get("error") not in ERRORS:
            raise ValueError(f"error must be one of {', '.join(ERRORS)}, not {spec.get('error')!r}")
        out["error"] = spec["error"]
    elif kind == "spoof":
        address = spec.get("address")
        if address == "random":
            try:
                out["network"] = str(ipaddress.ip_network(str(spec.get("network", "127.0.0.0/8")), strict=False))
            except ValueError as exc:
                raise ValueError(f"network: {exc}") from None
        else:
            try:
                out["address"] = str(ipaddress.ip_address(str(address)))
            except ValueError:
                raise ValueError(f"address must be an IPv4 or IPv6 address or 'random', not {address!r}") from None
        out.setdefault("address", "random")
    return out


@dataclass(frozen=True)
class Action:
    """What to do with one query: ``forward`` (to the upstream), ``error`` (an rcode name, or
    ``timeout``: no answer), or ``spoof`` (answer ``address``, which may be None: an empty
    answer, for a query of the other address family or another type), after ``delay`` seconds."""

    what: str
    delay: float = 0.0
    error: str = ""
    address: str | None = None
    fault: str = ""


FORWARD = Action("forward")


def _random_address(network: str, rng: random.Random) -> str:
    net = ipaddress.ip_network(network)
    return str(net.network_address + rng.randrange(net.num_addresses))


def _spoofed(fault: dict[str, Any], qtype: str, rng: random.Random) -> str | None:
    drawn = fault["address"] == "random"
    address = _random_address(fault["network"], rng) if drawn else str(fault["address"])
    version = ipaddress.ip_address(address).version
    return address if (qtype, version) in (("A", 4), ("AAAA", 6)) else None


def decide(name: str, qtype: str, faults: list[tuple[str, dict[str, Any]]], rng: random.Random) -> Action:
    """The action for a query of ``name`` (any case, trailing dot or not) and type ``qtype``
    (``A``, ``AAAA``, ...), given the faults in the order they were put."""
    qname = normal_name(name)
    for fault_name, fault in faults:
        if not any(fnmatch.fnmatchcase(qname, p) for p in fault["patterns"]):
            continue
        if fault["percent"] < 100.0 and rng.random() * 100.0 >= fault["percent"]:
            continue
        kind, delay = fault["kind"], fault["delay"]
        if kind == "error":
            return Action("error", delay, error=fault["error"], fault=fault_name)
        if kind == "spoof":
            return Action("spoof", delay, address=_spoofed(fault, qtype, rng), fault=fault_name)
        return Action("forward", delay, fault=fault_name)
    return FORWARD
