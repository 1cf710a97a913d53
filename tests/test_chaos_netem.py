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
* jitter (tests/netem_probes.py: 300 UDP probes 10 ms apart, each round trip minus the
  median of 100 unshaped probes is one netem draw): without a distribution table netem draws
  uniformly, delay - jitter + (random u32 mod 2 jitter) (sch_netem.c ``tabledist``), so 100 ms
  +/- 20 ms is U[80, 120) with sd 20/sqrt(3) = 11.55 ms. Bounds, 4 standard errors each: the
  sample sd within 4 sqrt(0.2/n) = 10.3 % (for a uniform, Var(s^2) = 0.8 sigma^4 / n); the mean
  within 4 x 0.67 ms + 1 ms; each quartile within 4 x 40 sqrt(p(1-p)/n) ms + 1 ms (4.0 and 4.6
  ms); at most 1 % outside [79, 122] ms (a normal of the same sd: 8.4 %) and min and max within
  3 ms of the edges (a uniform sample of 300 misses a 2 ms edge band with probability 2e-7);
  lag-1 autocorrelation within
  4/sqrt(n) = 0.23 of 0. The 1 ms is the guest's timer and scheduling noise.
* correlation: netem mixes each u32 with the previous one and *then* takes it modulo 2 x jitter,
  which scrambles it: with the uniform jitter, consecutive delays stay uncorrelated. We assert
  that (and that the kernel got delay_corr 50 %), so the docs say what users really get.
* reorder 25 % (gap 1, what pyroute2 sends): each packet goes at once with probability 0.25,
  the rest wait the delay; binomial bound as for loss, and every probe that went at once
  overtakes the delayed ones sent within the last 50 ms.
* corrupt 20 %: one random bit of the frame flipped; the receiver drops it on a checksum or a
  MAC/EtherType not its own, except ~49 harmless bits (source MAC, multicast bit of the
  destination), so the loss is binomial with p = 0.2 (1 - 49 / frame bits).
"""

from __future__ import annotations

import json
import math
import statistics
from typing import Any

import pytest

from harness.chaos.families.network import netem
from tests import netem_probes, uml

GUEST_TIMEOUT = 180.0


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
    print(f"{name}: {json.dumps(_brief({k: v for k, v in data.items() if not k.endswith('_tc')}), default=str)}")
    return data


def _brief(value: Any) -> Any:
    """``value`` with every long list (a probe's round trips, its arrival order) replaced by its length."""
    if isinstance(value, dict):
        return {k: _brief(v) for k, v in value.items()}
    if isinstance(value, list) and len(value) > 10:
        return f"<{len(value)} values>"
    return value


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


# ---------------------------------------------------------------- jitter, reorder, corrupt (paced UDP probes)


def _udp_base(guest: dict[str, Any]) -> float:
    """Median round trip of paced UDP probes with no fault, in ms."""
    probe = _scenario(guest, "udp_baseline")["probe"]
    rtts = [r for r in probe["rtt_ms"] if r is not None]
    assert len(rtts) == probe["sent"], "probes lost with no fault"
    return statistics.median(rtts)


def _jitter_delays(guest: dict[str, Any], name: str) -> tuple[dict[str, Any], list[float]]:
    """The scenario's data and each probe's added delay (its round trip minus the UDP baseline)."""
    base = _udp_base(guest)
    data = _scenario(guest, name)
    probe = data["probe"]
    assert probe["bad"] == 0 and None not in probe["rtt_ms"], "jitter alone loses or damages nothing"
    assert data["after_clean"], data["after_tc"]
    return data, [r - base for r in probe["rtt_ms"]]


def _assert_uniform(what: str, delays: list[float], delay: float, jitter: float) -> None:
    """``delays`` look like draws of netem's default jitter: uniform on [delay - jitter, delay + jitter)."""
    n, low, high = len(delays), delay - jitter, delay + jitter
    sd_expected = jitter / math.sqrt(3)
    mean, sd = statistics.fmean(delays), statistics.stdev(delays)
    quartiles = {q: netem_probes.percentile(delays, q) for q in (25, 50, 75)}
    print(
        f"{what}: n {n}, mean {mean:.2f} ms, sd {sd:.2f} ms (uniform: {sd_expected:.2f}), min {min(delays):.2f}, "
        f"max {max(delays):.2f}, quartiles {', '.join(f'{v:.2f}' for v in quartiles.values())}"
    )
    # The uniform's support, with 1 ms for the baseline subtracted (and UML's timers) and 2 ms
    # of scheduling delay on the high side, and 1% of the probes allowed outside it for the
    # guest's worst scheduling hiccups on the shared host: a normal of the same sd would put
    # 8.4% outside. 300 draws reach within 2 ms of each edge (a miss: 0.95^300 = 2e-7).
    outside = [d for d in delays if not low - 1 <= d <= high + 2]
    assert len(outside) <= n // 100, outside
    assert min(delays) <= low + 3 and max(delays) >= high - 3
    # Sample sd of a uniform: relative standard error sqrt((mu4/sigma^4 - 1) / 4n) = sqrt(0.2/n).
    assert abs(sd / sd_expected - 1) <= 4 * math.sqrt(0.2 / n)
    assert abs(mean - delay) <= 4 * sd_expected / math.sqrt(n) + 1
    for q, value in quartiles.items():
        p = q / 100  # a sample quantile's standard error: sqrt(p (1-p) / n) / density
        assert abs(value - (low + p * (high - low))) <= 4 * math.sqrt(p * (1 - p) / n) * (high - low) + 1, q


@pytest.mark.slow
def test_jitter_20ms_spreads_the_delay_uniformly_and_reorders_paced_probes(guest: dict[str, Any]) -> None:
    data, delays = _jitter_delays(guest, "jitter")
    assert data["options"]["delay_us"] == 100_000 and data["options"]["jitter_us"] == 20_000, data["options"]
    _assert_uniform("netem delay 100ms jitter 20ms", delays, 100.0, 20.0)
    r1 = netem_probes.lag1(delays)
    print(f"lag-1 autocorrelation {r1:.3f} (independent draws: 0 +/- {1 / math.sqrt(len(delays)):.3f})")
    assert abs(r1) <= 4 / math.sqrt(len(delays))
    # Probes 10 ms apart with 40 ms of spread: netem's queue is ordered by time to send, so a
    # probe drawn short overtakes earlier ones drawn long; as many as independent draws predict.
    overtook = netem_probes.ahead(data["probe"]["arrival"])
    mean, sd = netem_probes.simulated_ahead(len(delays), 1000 * data["probe"]["interval"], 80.0, 120.0)
    print(f"probes arriving ahead of an earlier one: {overtook} (uniform draws: {mean:.1f} +/- {sd:.1f})")
    assert abs(overtook - mean) <= 4 * sd


@pytest.mark.slow
def test_jitter_correlation_50_is_sent_but_linux_keeps_uniform_delays_uncorrelated(guest: dict[str, Any]) -> None:
    """netem draws the correlated value over all 32 bits and then takes it modulo 2 x jitter
    (sch_netem.c tabledist), which scrambles the correlation: consecutive delays stay as
    uncorrelated, and as spread, as without it. This pins that down, so the docs stay true."""
    data, delays = _jitter_delays(guest, "jitter_correlated")
    assert data["options"]["delay_corr"] == pytest.approx(50, abs=0.01), data["options"]
    _assert_uniform("netem delay 100ms jitter 20ms correlation 50%", delays, 100.0, 20.0)
    r1 = netem_probes.lag1(delays)
    _, plain = _jitter_delays(guest, "jitter")
    print(f"lag-1 autocorrelation {r1:.3f} with correlation 50%, {netem_probes.lag1(plain):.3f} without")
    assert abs(r1) <= 4 / math.sqrt(len(delays))


@pytest.mark.slow
def test_reorder_25_percent_sends_a_binomial_share_at_once_ahead_of_the_delayed(guest: dict[str, Any]) -> None:
    data = _scenario(guest, "reorder")
    options, probe = data["options"], data["probe"]
    assert options["delay_us"] == 50_000 and options["gap"] == 1, options  # gap 1: every packet may go at once
    assert options["prob_reorder"] == pytest.approx(25, abs=0.01)
    rtts = probe["rtt_ms"]
    assert probe["bad"] == 0 and None not in rtts
    immediate = [r for r in rtts if r < 25.0]
    delayed = [r for r in rtts if r >= 25.0]
    print(f"immediate: max {max(immediate):.2f} ms; delayed: {min(delayed):.2f} to {max(delayed):.2f} ms")
    assert max(immediate) < 5.0 and min(delayed) >= 49.0 and max(delayed) < 60.0  # nothing in between
    assert _within_binomial("netem delay 50ms reorder 25%, probes sent at once", len(immediate), len(rtts), 0.25)
    # 3 ms apart, an immediate probe overtakes the delayed ones of the last 50 ms (all 16 of them
    # immediate too: 0.25^16), and a delayed probe overtakes nothing: the two counts agree.
    overtook = netem_probes.ahead(probe["arrival"])
    print(f"probes arriving ahead of an earlier one: {overtook}")
    assert len(immediate) - 1 <= overtook <= len(immediate)
    assert data["after_clean"], data["after_tc"]


@pytest.mark.slow
def test_corrupt_20_percent_is_dropped_by_the_receivers_checksums(guest: dict[str, Any]) -> None:
    """netem flips one random bit of a corrupted frame (Ethernet header included). The receiver
    drops it: IP header checksum, UDP checksum (netem computes a partial checksum before the
    flip), or a destination MAC/EtherType that is not its own. Only ~49 of the frame's bits
    (source MAC, and the multicast bit of the destination) flip harmlessly, so with 1,000-byte
    payloads the observed loss is 20% x (1 - 49 / frame bits) = 19.9%."""
    data = _scenario(guest, "corrupt")
    probe, snmp = data["probe"], data["snmp"]
    assert data["options"]["prob_corrupt"] == pytest.approx(20, abs=0.01), data["options"]
    frame_bits = 8 * (probe["size"] + netem_probes.FRAME_OVERHEAD)
    lost = sum(r is None for r in probe["rtt_ms"])
    assert _within_binomial("netem corrupt 20%, probes lost", lost, probe["sent"], 0.20 * (1 - 49 / frame_bits))
    assert probe["bad"] == 0, "a damaged payload reached the application"
    csum, header = snmp["Udp.InCsumErrors"], snmp["Ip.InHdrErrors"]
    print(f"server: Udp.InCsumErrors +{csum}, Ip.InHdrErrors +{header}, of {lost} lost")
    # what is lost is what the server's stack counted as a bad checksum, but for the few frames
    # whose Ethernet header was hit (0.8% of them), dropped before IP counts anything
    assert csum > 0 and 0.95 * lost <= csum + header <= lost
    assert data["after_clean"], data["after_tc"]
