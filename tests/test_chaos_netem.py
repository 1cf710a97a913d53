"""network.netem measured for real, inside a User-Mode Linux guest (the host kernel has no netem).

One guest boot (tests/uml.py) runs tests/netem_guest.py, which builds two namespaces joined
by a veth pair on 10.77.0.0/24 inside the guest, applies each fault with
:mod:`harness.chaos.families.network.netem` and measures it with real traffic; the tests here read back what
it measured and assert on it. Nothing in the guest touches the host's network; the guest
is killed by its process group if it overruns, and its files are removed.

Tolerances, and why:

* delay: one HTTP request on a kept-alive connection is one round trip, so netem 100 ms on
  the client's egress adds 100 ms to the median of 25 requests, and on both directions
  200 ms; the brief's bound is ±10 %. UML's timers are the host's hrtimers, so the median
  is off by a few ms at most.
* loss and duplicate: each of n probes is lost (duplicated) independently with probability
  p, so the count is binomial with standard deviation sqrt(n p (1-p)); we accept 4 standard
  deviations (a false failure about once in 16,000 runs). n = 2000, p = 0.3 gives
  sigma = 1.02 % points, so 30 % +/- 4.1; p = 0.5 gives 50 % +/- 4.5.
"""

from __future__ import annotations

import json
import math
from typing import Any

import pytest

from harness.chaos.families.network import netem
from tests import uml

GUEST_TIMEOUT = 150.0


@pytest.fixture(scope="module")
def guest() -> dict[str, Any]:
    """Every scenario's figures, from one guest run."""
    missing = uml.missing_reason()
    if missing is not None:
        pytest.skip(missing)
    result = uml.run_in_guest(
        [str(uml.VENV_PYTHON), "-m", "tests.netem_guest", "measure"],
        timeout=GUEST_TIMEOUT,
    )
    print(f"guest ran {result.seconds:.1f}s, exit {result.returncode}")
    if "netem.json" not in result.files:
        pytest.fail(f"the guest wrote no results (exit {result.returncode}); console:\n{result.console[-4000:]}")
    data: dict[str, Any] = json.loads(result.files["netem.json"])
    return data


def _scenario(guest: dict[str, Any], name: str) -> dict[str, Any]:
    data = guest.get(name)
    assert data is not None, f"scenario {name} did not run"
    assert "error" not in data, f"scenario {name} failed in the guest:\n{data['error']}"
    print(f"{name}: {json.dumps({k: v for k, v in data.items() if not k.endswith('_tc')}, default=str)}")
    return data


def _within_binomial(what: str, observed: int, n: int, p: float, sigmas: float = 4.0) -> bool:
    """Prints the figures; True when ``observed`` of ``n`` is within ``sigmas`` binomial sigmas of ``n p``."""
    sd = math.sqrt(n * p * (1 - p))
    print(f"{what}: {observed}/{n} = {100 * observed / n:.2f}% (expected {100 * p:g}%, sigma {100 * sd / n:.2f}%)")
    return abs(observed - n * p) <= sigmas * sd


def test_available_is_false_with_a_reason_on_the_host_kernel() -> None:
    ok, reason = netem.available()
    print(f"host: available={ok} reason={reason!r}")
    assert ok is False
    assert "netem" in reason and len(reason) > 20


@pytest.mark.slow
def test_in_the_guest_netem_is_available_and_check_names_missing_interfaces(guest: dict[str, Any]) -> None:
    data = _scenario(guest, "available")
    assert data["ok"] is True, data["reason"]
    assert data["check_ok"] is True
    assert data["missing_interface"] and "no interface 'nope0'" in data["missing_interface"]


def _baseline(guest: dict[str, Any]) -> float:
    """Median round trip to the server before any fault, in ms."""
    data = guest.get("baseline") or {}
    assert "error" not in data and "server" in data, f"no baseline: {data.get('error')}"
    assert data["tc"]["root"]["kind"] == "noqueue"
    return float(data["server"]["median"])


@pytest.mark.slow
def test_delay_100ms_egress_adds_100ms_to_the_round_trip_and_revert_restores_it(guest: dict[str, Any]) -> None:
    base = _baseline(guest)
    data = _scenario(guest, "delay_egress")
    added = data["latency"]["median"] - base
    print(f"baseline {base:.2f} ms, with netem 100ms egress {data['latency']['median']:.2f} ms: +{added:.2f} ms")
    assert data["during_tc"]["root"] == {"kind": "netem", "handle": "4853:", "parent": "ffffffff"}
    assert 90 <= added <= 110
    assert data["after_clean"], data["after_tc"]
    assert abs(data["latency_after"]["median"] - base) < 10, data["latency_after"]
    assert data["journal_state"] == "reverted"


@pytest.mark.slow
def test_delay_as_measured_by_the_harness_load_generator(guest: dict[str, Any]) -> None:
    """The acceptance figure, through harness's own client: a real Locust runner process."""
    data = _scenario(guest, "runner_delay")
    base = float(data["baseline"]["median"])
    egress = float(data["egress"]["median"]) - base
    both = float(data["both"]["median"]) - base
    print(
        f"harness runner: baseline p50 {base:.2f} ms; netem 100ms egress +{egress:.2f} ms "
        f"({data['egress']['n']} requests); both directions +{both:.2f} ms ({data['both']['n']} requests)"
    )
    assert 90.0 <= egress <= 110.0
    assert 180.0 <= both <= 220.0  # 100 ms per direction
    assert data["egress"]["after_clean"] and data["both"]["after_clean"]


@pytest.mark.slow
def test_delay_100ms_ingress_goes_through_an_ifb(guest: dict[str, Any]) -> None:
    base = _baseline(guest)
    data = _scenario(guest, "delay_ingress")
    added = data["latency"]["median"] - base
    print(f"with netem 100ms ingress: +{added:.2f} ms")
    assert 90 <= added <= 110
    tc = data["during_tc"]
    assert tc["root"]["kind"] == "noqueue"  # egress untouched
    assert [i["name"] for i in tc["ifbs"]] == [data["details"]["ifb"]] and tc["ifbs"][0]["qdiscs"] == ["netem"]
    assert tc["ingress_filters"] == [netem.FILTER_PREF]
    assert data["after_clean"], data["after_tc"]


@pytest.mark.slow
def test_delay_100ms_both_directions_adds_200ms(guest: dict[str, Any]) -> None:
    base = _baseline(guest)
    data = _scenario(guest, "delay_both")
    added = data["latency"]["median"] - base
    print(f"with netem 100ms both: +{added:.2f} ms")
    assert 180 <= added <= 220
    assert data["after_clean"], data["after_tc"]
    assert abs(data["latency_after"]["median"] - base) < 10, data["latency_after"]


@pytest.mark.slow
def test_peers_shape_only_traffic_with_that_peer(guest: dict[str, Any]) -> None:
    base = _baseline(guest)
    other_base = float(guest["baseline"]["other"]["median"])
    data = _scenario(guest, "peers")
    peer = data["latency_peer"]["median"] - base
    other = data["latency_other"]["median"] - other_base
    print(f"peers=10.77.0.2/32, both directions: to the peer +{peer:.2f} ms, to 10.77.0.3 +{other:.2f} ms")
    assert 180 <= peer <= 220
    assert abs(other) < 10
    root = data["during_tc"]["root"]
    assert root["kind"] == "prio" and root["handle"] == "4853:"
    assert any(q["kind"] == "netem" and q["handle"] == "4854:" for q in data["during_tc"]["qdiscs"])
    assert data["after_clean"], data["after_tc"]


@pytest.mark.slow
def test_loss_30_percent_is_measured_within_4_binomial_sigmas(guest: dict[str, Any]) -> None:
    data = _scenario(guest, "loss")
    probe = data["probe"]
    lost = probe["sent"] - probe["unique"]
    assert _within_binomial("netem loss 30%, probes lost", lost, probe["sent"], 0.30)
    assert probe["received"] == probe["unique"]  # no duplicates from loss
    assert data["after_clean"], data["after_tc"]


@pytest.mark.slow
def test_duplicate_50_percent_is_measured_within_4_binomial_sigmas(guest: dict[str, Any]) -> None:
    data = _scenario(guest, "duplicate")
    probe = data["probe"]
    dups = probe["received"] - probe["unique"]
    assert _within_binomial("netem duplicate 50%, probes echoed twice", dups, probe["sent"], 0.50)
    assert probe["unique"] == probe["sent"]  # nothing lost
    assert data["after_clean"], data["after_tc"]


@pytest.mark.slow
def test_network_loss_with_method_netem_is_a_netem_qdisc_that_spares_other_peers(guest: dict[str, Any]) -> None:
    data = _scenario(guest, "loss_via_netem")
    assert data["details"]["method"] == "netem"
    kinds = {q["kind"] for q in data["during_tc"]["qdiscs"]}
    assert {"prio", "netem"} <= kinds, data["during_tc"]
    probe, other = data["probe"], data["probe_other"]
    lost = probe["sent"] - probe["unique"]
    assert _within_binomial("network.loss 30% (netem), probes to the peer lost", lost, probe["sent"], 0.30)
    print(f"probes to 10.77.0.3 (not a peer) lost: {other['sent'] - other['unique']}/{other['sent']}")
    assert other["unique"] == other["sent"]
    assert data["after_clean"], data["after_tc"]


@pytest.mark.slow
def test_inject_twice_revert_once_leaves_nothing_and_a_crashed_inject_resumes(guest: dict[str, Any]) -> None:
    data = _scenario(guest, "idempotency")
    assert data["same_record"] is True
    during = data["during_tc"]
    assert len(during["ifbs"]) == 1 and during["root"]["kind"] == "prio"
    assert data["after_clean"], data["after_tc"]
    assert data["reverted_twice_state"] == "reverted"
    assert data["resumed_state"] == "injected"
    assert len(data["resumed_tc"]["ifbs"]) == 1 and data["resumed_tc"]["root"]["kind"] == "netem"
    assert data["resumed_after_clean"]


@pytest.mark.slow
def test_someone_elses_root_qdisc_is_refused_and_never_reverted(guest: dict[str, Any]) -> None:
    data = _scenario(guest, "refusal")
    assert data["refused"] and "refusing to replace it" in data["refused"]
    assert data["journal_state"] == "reverted"  # settled: no revert or recover will touch the pfifo
    assert data["root_after"] == {"kind": "pfifo", "handle": "1:", "parent": "ffffffff"}
    assert data["after_clean"]


@pytest.mark.slow
def test_revert_after_the_namespace_is_gone_is_fine(guest: dict[str, Any]) -> None:
    data = _scenario(guest, "netns_gone")
    assert data["injected_tc"]["root"]["kind"] == "netem" and len(data["injected_tc"]["ifbs"]) == 1
    assert data["state"] == "reverted"
    assert "is gone" in data["reverted"]
