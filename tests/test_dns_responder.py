"""The DNS responder of dns.* faults on loopback: its rules, its answers over real UDP and TCP,
and the dns family's control mode (a fault put into a running responder, and taken out).

The responder runs as ``harness dns`` does (a subprocess on 127.0.0.1); its upstream is a
second responder on loopback holding the "real" records, so nothing here leaves the machine's
loopback. Clients are dnslib's ``DNSRecord.send``: real DNS messages over real sockets.
"""

from __future__ import annotations

import json
import random
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from dnslib import RCODE, DNSRecord

from harness.chaos.dns_server import decide, validate
from harness.chaos.families.dns import control as api
from harness.chaos.family import HostContext, family_of
from harness.chaos.journal import Journal
from harness.chaos.steps import InjectContext
from harness.errors import ConfigError, ScenarioError
from harness.scenario import Safety, load_scenario

# ---------------------------------------------------------------- rules (pure)


def test_validate_normalises_and_refuses_what_is_wrong() -> None:
    spec = validate({"kind": "error", "patterns": ["Payments.Shop.Demo."], "error": "servfail"})
    assert spec == {"kind": "error", "patterns": ["payments.shop.demo"], "delay": 0.0, "percent": 100.0,
                    "error": "servfail"}  # fmt: skip
    for bad, why in [
        ({"kind": "nope", "patterns": ["x"]}, "kind must be one of error, spoof, delay"),
        ({"kind": "error", "patterns": [], "error": "nxdomain"}, "patterns must be a list"),
        ({"kind": "error", "patterns": ["x"], "error": "boom"}, "error must be one of"),
        ({"kind": "spoof", "patterns": ["x"], "address": "1.2.3"}, "address must be an IPv4 or IPv6 address"),
        ({"kind": "delay", "patterns": ["x"], "delay": 61}, "delay must be a number from 0 to 60"),
        ({"kind": "delay", "patterns": ["x"], "address": "::1"}, "unknown key(s) for delay: address"),
    ]:
        with pytest.raises(ValueError, match=why.replace("(", r"\(").replace(")", r"\)")):
            validate(bad)


def test_first_matching_fault_decides_and_percent_is_a_share() -> None:
    rng = random.Random(7)
    faults = [
        ("a", validate({"kind": "spoof", "patterns": ["*.shop.demo"], "address": "::1"})),
        ("b", validate({"kind": "error", "patterns": ["*"], "error": "refused", "percent": 25})),
    ]
    assert decide("CART.shop.demo.", "AAAA", faults, rng).address == "::1"
    assert decide("cart.shop.demo", "A", faults, rng).address is None  # an IPv6 spoof: empty A answer
    hits = sum(decide("example.test", "A", faults, rng).what == "error" for _ in range(4000))
    assert 900 <= hits <= 1100, hits  # 25% of 4000 = 1000, sigma 27
    drawn = validate({"kind": "spoof", "patterns": ["x"], "address": "random", "network": "10.9.0.0/30"})
    assert {decide("x", "A", [("r", drawn)], rng).address for _ in range(200)} == {f"10.9.0.{i}" for i in range(4)}


# ---------------------------------------------------------------- scenario models


SCENARIO = """\
name: dns-models
target: {{base_url: "http://127.0.0.1:9"}}
load:
  locustfile: {locustfile}
  user_classes: [{{class: Idler}}]
  stages: [{{name: s, duration: 30s, users: 1, spawn_rate: 1}}]
faults:
{faults}slos:
  - {{name: ok, objective: error_rate < 1%}}
"""


def _load(tmp_path: Path, faults: str) -> Any:
    path = tmp_path / "s.yaml"
    locustfile = Path(__file__).parent / "locustfiles" / "ping.py"
    path.write_text(SCENARIO.format(locustfile=locustfile, faults=faults))
    return load_scenario(path)


def test_bad_dns_faults_are_located_problems(tmp_path: Path) -> None:
    with pytest.raises(ScenarioError) as caught:
        _load(
            tmp_path,
            "  - {name: a, kind: dns.error, at: 1s, duration: 10s, target: {netns: shop},\n"
            "     params: {patterns: [x], error: boom}}\n"
            "  - {name: b, kind: dns.delay, at: 1s, duration: 5s, target: {netns: ns1},\n"
            "     params: {patterns: [y], delay: 1}}\n"
            "  - {name: c, kind: dns.spoof, at: 2s, duration: 5s, target: {netns: ns1},\n"
            "     params: {patterns: [x], address: 127.0.0.1}}\n"
            "  - {name: d, kind: dns.error, at: 2s, duration: 5s, target: {netns: ns2, control: '127.0.0.1:53'},\n"
            "     params: {patterns: [x], error: nxdomain}}\n",
        )
    problems = {(p.path, p.line): p.message for p in caught.value.problems}
    assert (
        problems[("faults[0].params.error", 9)] == "'boom' is not one of 'nxdomain', 'servfail', 'refused', 'timeout'"
    )
    assert problems[("faults[2].target.netns", 12)].startswith("overlaps dns fault 'b' on netns ns1"), problems
    assert problems[("faults[3].target", 14)].startswith("give exactly one of control"), problems
    assert len(problems) == 3, problems


def test_bad_process_targets_are_located_problems(tmp_path: Path) -> None:
    """Two faults on the same processes at once do not stack (one cgroup per process); an
    upstream is for the faults that start a responder, and IPv4 only."""
    with pytest.raises(ScenarioError) as caught:
        _load(
            tmp_path,
            "  - {name: a, kind: dns.error, at: 1s, duration: 10s, target: {pattern: gateway},\n"
            "     params: {patterns: [x], error: nxdomain}}\n"
            "  - {name: b, kind: dns.delay, at: 5s, duration: 5s, target: {pattern: gateway, upstream: '[::1]:53'},\n"
            "     params: {patterns: [y], delay: 1}}\n"
            "  - {name: c, kind: dns.spoof, at: 2s, duration: 5s, target: {pattern: other},\n"
            "     params: {patterns: [x], address: 127.0.0.1}}\n"
            "  - {name: d, kind: dns.error, at: 2s, duration: 5s,\n"
            "     target: {control: '127.0.0.1:53', upstream: '127.0.0.1:5353'},\n"
            "     params: {patterns: [x], error: nxdomain}}\n"
            "  - {name: e, kind: dns.error, at: 2s, duration: 5s, target: {netns: ns3, upstream: '198.51.100.53:53'},\n"
            "     params: {patterns: [x], error: nxdomain}}\n",
        )
    problems = {(p.path, p.line): p.message for p in caught.value.problems}
    assert problems[("faults[1].target.pattern", 10)].startswith("overlaps dns fault 'a' on pattern gateway"), problems
    assert problems[("faults[1].target.upstream", 10)] == "[::1]:53: dns faults forward to an IPv4 nameserver only"
    assert problems[("faults[3].target.upstream", 15)].startswith("upstream is for netns and process targets"), problems
    assert problems[("faults[4].target.upstream", 17)].startswith(
        "198.51.100.53:53 is not loopback and is outside safety.allowed_networks"
    ), problems
    assert len(problems) == 4, problems


# ---------------------------------------------------------------- responders on loopback


def _start(*args: str) -> tuple[subprocess.Popen[str], dict[str, Any]]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "harness.chaos.dns_server", "--listen", "127.0.0.1:0", "--control", "127.0.0.1:0",
         *args],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )  # fmt: skip
    assert proc.stdout is not None
    line = proc.stdout.readline()
    assert line, "the responder did not start"
    return proc, json.loads(line)


@pytest.fixture
def responder() -> Iterator[dict[str, Any]]:
    """A responder (forwarding to an upstream responder with two records), as a cluster DNS."""
    upstream, up = _start("--record", "payments.shop.test=10.215.0.3", "--record", "catalog.shop.test=10.215.0.4")
    front, info = _start("--upstream", up["listen"])
    try:
        yield info
    finally:
        for proc in (front, upstream):
            proc.terminate()
            proc.wait(10)


def ask(info: dict[str, Any], name: str, tcp: bool = False, qtype: str = "A") -> tuple[str, list[str]]:
    host, port = api.split_address(info["listen"])
    reply = DNSRecord.parse(DNSRecord.question(name, qtype).send(host, port, tcp=tcp, timeout=3))
    return RCODE.get(reply.header.rcode), [str(r.rdata) for r in reply.rr]


def test_forwards_over_udp_and_tcp_and_the_control_mode_puts_and_takes_faults(
    responder: dict[str, Any], tmp_path: Path
) -> None:
    from pydantic import TypeAdapter

    from harness.scenario import Fault

    for tcp in (False, True):
        assert ask(responder, "payments.shop.test", tcp) == ("NOERROR", ["10.215.0.3"])
        assert ask(responder, "nothing.shop.test", tcp) == ("NXDOMAIN", [])
    fault = TypeAdapter(Fault).validate_python(
        {
            "name": "nx",
            "kind": "dns.error",
            "at": 0,
            "duration": 9,
            "target": {"control": responder["control"]},
            "params": {"patterns": ["payments.*"], "error": "servfail"},
        }
    )
    family = family_of(fault.kind)
    family.check(fault, HostContext(Safety()))  # a responder answers there
    journal = Journal("dns-control", tmp_path)
    record = family.inject(fault, InjectContext("dns-control", journal))
    for tcp in (False, True):
        assert ask(responder, "payments.shop.test", tcp) == ("SERVFAIL", [])
        assert ask(responder, "catalog.shop.test", tcp) == ("NOERROR", ["10.215.0.4"])
    assert set(api.health(responder["control"])[1]["by_fault"]) == {"dns-control:nx"}
    family.revert(record, journal)
    assert ask(responder, "payments.shop.test") == ("NOERROR", ["10.215.0.3"])
    assert json.loads(json.dumps(api.health(responder["control"])[1]))["faults"] == 0
    timeout = TypeAdapter(Fault).validate_python(
        {
            "name": "t",
            "kind": "dns.error",
            "at": 0,
            "duration": 9,
            "target": {"control": responder["control"]},
            "params": {"patterns": ["*"], "error": "timeout", "delay": 0.1},
        }
    )
    family.inject(timeout, InjectContext("dns-control", journal))
    started = time.monotonic()
    with pytest.raises(OSError):  # no answer at all: the client's own timeout
        ask(responder, "payments.shop.test")
    assert time.monotonic() - started >= 2.9
    family.revert(journal.latest("t"), journal)  # type: ignore[arg-type]
    assert ask(responder, "payments.shop.test") == ("NOERROR", ["10.215.0.3"])


def test_check_refuses_a_control_address_where_no_responder_answers() -> None:
    from pydantic import TypeAdapter

    from harness.scenario import Fault

    fault = TypeAdapter(Fault).validate_python(
        {
            "name": "nx",
            "kind": "dns.error",
            "at": 0,
            "duration": 9,
            "target": {"control": "127.0.0.1:9"},
            "params": {"patterns": ["x"], "error": "nxdomain"},
        }
    )
    with pytest.raises(ConfigError, match=r"fault 'nx': no DNS responder answers at 127\.0\.0\.1:9"):
        family_of(fault.kind).check(fault, HostContext(Safety()))
