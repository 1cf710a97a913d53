"""HTTP rules in the fault proxy (``http.*`` kinds), measured with real parts: the real proxy
subprocess with two worker processes on one port, a real HTTP service, real clients.

The service is ``tests/proxy_upstream.py`` (``/reflect`` answers what it received, ``/chunked/N``
a chunked JSON body). Each matcher and each action is checked by what a client sees and what
the service received; a rule change is seen by the next request of a kept-alive connection.
Every fixture stops what it started by PID; every request loop is bounded in count and time.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import signal
import statistics
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

from harness.chaos.families import proxy
from harness.chaos.journal import FaultState, Journal
from harness.chaos.recover import revert_record
from tests.test_chaos_proxy import (
    NS,
    ROOT_ONLY,
    Client,
    _control,
    _fault,
    _free_port,
    _ns_tables,
    _proxies_of,
    _start_proxy,
    _start_upstream,
    _stop,
    ns_journal,  # noqa: F401 (a fixture)
    service_ns,  # noqa: F401 (a fixture)
)

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def upstream() -> Iterator[str]:
    address = f"127.0.0.1:{_free_port()}"
    child = _start_upstream(address)
    try:
        yield address
    finally:
        _stop(child)


@pytest.fixture(scope="module")
def two_workers(upstream: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str, int]]:
    """(listen, control, pid) of one proxy with two processes; both must be gone after SIGTERM."""
    child, listen, control = _start_proxy(upstream, tmp_path_factory.mktemp("http") / "proxy.log", 2)
    workers = [p.pid for p in psutil.Process(child.pid).children()]
    try:
        yield listen, control, child.pid
    finally:
        assert _stop(child) == 0, "the proxy did not exit cleanly on SIGTERM"
        time.sleep(0.2)
        alive = [pid for pid in workers if psutil.pid_exists(pid) and psutil.Process(pid).status() != "zombie"]
        assert alive == [], f"worker processes outlived the proxy: {alive}"


@pytest.fixture
def rules(two_workers: tuple[str, str, int]) -> Iterator[Any]:
    """``put(spec)`` adds a rule (asserting 201); every rule is removed when the test ends."""
    control = two_workers[1]
    count = iter(range(1000))

    def put(spec: dict[str, Any]) -> str:
        name = f"r{next(count)}"
        status, answer = _control(control, "PUT", f"/faults/{name}", spec)
        assert status == 201, answer
        return name

    try:
        yield put
    finally:
        assert _control(control, "DELETE", "/faults")[0] == 204


def _send(
    client: Client, method: str, path: str, body: bytes | None = None, headers: dict[str, str] | None = None
) -> tuple[int, dict[str, str], bytes, float]:
    """(status, headers, body, seconds) of one request on the client's kept-alive connection."""
    if client.conn is None:
        client.get("/ok")  # opens it
    assert client.conn is not None
    began = time.perf_counter()
    try:
        client.conn.request(method, path, body=body, headers=headers or {})
        response = client.conn.getresponse()
        data = response.read()
    except BaseException:
        client.close()
        raise
    seconds = time.perf_counter() - began
    if response.will_close:
        client.close()
    return response.status, {k.lower(): v for k, v in response.getheaders()}, data, seconds


# ---------------------------------------------------------------- the control API


@pytest.mark.parametrize(
    ("spec", "error"),
    [
        ({"kind": "http.abort", "path": "/a"}, "status"),
        ({"kind": "http.abort", "status": 503, "reset": True}, "status"),
        ({"kind": "http.abort", "status": 503, "path": "/a", "path_regex": "/a"}, "not both"),
        ({"kind": "http.abort", "status": 503, "path_regex": "("}, "regular expression"),
        ({"kind": "http.abort", "status": 503, "code": 200}, "target Response"),
        ({"kind": "http.abort", "status": 503, "percent": 0}, "percent"),
        ({"kind": "http.abort", "status": 503, "nope": 1}, "not nope"),
        ({"kind": "http.delay"}, "delay"),
        ({"kind": "http.replace", "replace": {"code": 500}}, "takes body, headers, method, path"),
        ({"kind": "http.replace", "target": "Response", "replace": {"path": "/x"}}, "takes body, code, headers"),
        ({"kind": "http.patch", "patch": {"body": "text"}}, "JSON object"),
        ({"kind": "http.patch", "patch": {"headers": {"Bad Name": "x"}}}, "not a valid header"),
        ({"kind": "http.patch", "patch": {}}, "patch"),
        ({"kind": "http.abort", "status": 503, "target": "request"}, "Request or Response"),
    ],
)
def test_bad_rules_are_refused_with_the_reason(two_workers: tuple[str, str, int], spec: Any, error: str) -> None:
    status, answer = _control(two_workers[1], "PUT", "/faults/bad", spec)
    assert status == 400 and error in answer["error"], answer
    assert _control(two_workers[1], "GET", "/faults")[1] == {"faults": {}}


def test_a_put_answers_once_every_worker_has_the_rule(two_workers: tuple[str, str, int], rules: Any) -> None:
    """Each fresh connection lands on either process (SO_REUSEPORT); every one sees the rule at once."""
    listen, control, _ = two_workers
    health = _control(control, "GET", "/health")[1]
    assert health["workers"] == 2 and health["workers_answering"] == 2
    n0 = health["connections"]
    rules({"kind": "http.abort", "path": "/ok", "status": 503})
    statuses = []
    for _ in range(40):
        client = Client(listen, timeout=5)
        try:
            statuses.append(client.get("/ok")[0])
        finally:
            client.close()
    assert statuses == [503] * 40
    assert _control(control, "GET", "/health")[1]["connections"] - n0 == 40  # counted over both processes


# ---------------------------------------------------------------- matchers


MATCHERS = [
    # (rule match keys, (method, path, headers) that must match, ... that must not)
    ({"method": "POST"}, ("POST", "/reflect/a", {}), ("GET", "/reflect/a", {})),
    ({"path": "/reflect/checkout/*"}, ("GET", "/reflect/checkout/s1/x?q=1", {}), ("GET", "/reflect/checkou", {})),
    ({"path_regex": r"/reflect/item/\d+"}, ("GET", "/reflect/item/42", {}), ("GET", "/reflect/item/42x", {})),
    ({"host": "shop.*"}, ("GET", "/reflect", {"Host": "shop.example:8080"}), ("GET", "/reflect", {"Host": "api.x"})),
    (
        {"request_headers": {"X-Canary": "on*"}},
        ("GET", "/reflect", {"x-canary": "one"}),
        ("GET", "/reflect", {"X-Canary": "off"}),
    ),
    (
        {"method": "POST", "path": "/reflect/*", "request_headers": {"X-A": "1"}},
        ("POST", "/reflect/z", {"X-A": "1"}),
        ("POST", "/reflect/z", {}),
    ),
]


@pytest.mark.parametrize(
    ("match", "hit", "miss"), MATCHERS, ids=["method", "path", "path_regex", "host", "headers", "all-of"]
)
def test_each_matcher_picks_only_its_requests(
    two_workers: tuple[str, str, int], rules: Any, match: dict[str, Any], hit: Any, miss: Any
) -> None:
    client = Client(two_workers[0])
    try:
        rules({"kind": "http.abort", "status": 418, **match})
        for _ in range(3):
            method, path, headers = hit
            assert _send(client, method, path, b"" if method == "POST" else None, headers)[0] == 418
            method, path, headers = miss
            status, _, body, _ = _send(client, method, path, b"" if method == "POST" else None, headers)
            assert status == 200 and json.loads(body)["path"] == path
    finally:
        client.close()


def test_percent_is_a_binomial_share_of_matching_requests_only(two_workers: tuple[str, str, int], rules: Any) -> None:
    """600 matching requests at 30%: Binomial(600, 0.3), sd 11.2; within 4 sd. 200 others: none."""
    client = Client(two_workers[0])
    deadline = time.monotonic() + 60
    try:
        rules({"kind": "http.abort", "method": "POST", "path": "/echo", "status": 503, "percent": 30})
        hits = others = 0
        for _ in range(600):
            assert time.monotonic() < deadline
            hits += _send(client, "POST", "/echo", b"abc")[0] == 503
        for _ in range(200):
            others += _send(client, "GET", "/ok")[0] != 200
    finally:
        client.close()
    print(f"503 on {hits} of 600 matching requests ({hits / 6:.1f}%), {others} of 200 others")
    assert abs(hits - 180) <= 4 * math.sqrt(600 * 0.3 * 0.7) and others == 0


# ---------------------------------------------------------------- actions


def test_abort_with_a_status_keeps_the_connection_and_skips_the_body(
    two_workers: tuple[str, str, int], rules: Any
) -> None:
    client = Client(two_workers[0])
    try:
        rules({"kind": "http.abort", "method": "POST", "path": "/echo", "status": 503})
        status, headers, body, _ = _send(client, "POST", "/echo", b"x" * 100_000)
        assert status == 503 and headers["x-harness-fault"] == "abort" and b"aborted with 503" in body
        assert _send(client, "POST", "/reflect/after", b"kept")[2].count(b'"body": "kept"') == 1  # same connection
    finally:
        client.close()


def test_abort_reset_resets_only_matching_requests(two_workers: tuple[str, str, int], rules: Any) -> None:
    client = Client(two_workers[0])
    try:
        rules({"kind": "http.abort", "path": "/bytes/*", "reset": True})
        with pytest.raises(ConnectionResetError):
            _send(client, "GET", "/bytes/10")
        assert _send(client, "GET", "/ok")[0] == 200
    finally:
        client.close()


def test_response_abort_answers_after_the_service_did_the_work(two_workers: tuple[str, str, int], rules: Any) -> None:
    """target Response: the request reaches the service (its counter moves), the client gets 500;
    ``code`` picks only responses with that status."""
    listen, control, _ = two_workers
    client = Client(listen)
    try:
        rules({"kind": "http.abort", "target": "Response", "path": "/reflect/*", "code": 200, "status": 500})
        rules({"kind": "http.abort", "target": "Response", "path": "/bytes/*", "code": 404, "status": 502})
        before = _control(control, "GET", "/health")[1]["bytes_down"]
        status, _, body, _ = _send(client, "GET", "/reflect/x")
        assert status == 500 and b"aborted with 500" in body
        assert _control(control, "GET", "/health")[1]["bytes_down"] - before > 100  # the service's answer came
        assert _send(client, "GET", "/bytes/5")[:3:2] == (200, b"xxxxx")  # a 200, not a 404: untouched
    finally:
        client.close()


def _median(client: Client, method: str, path: str, n: int = 15) -> float:
    return statistics.median(_send(client, method, path, b"" if method == "POST" else None)[3] for _ in range(n))


@pytest.mark.parametrize("target", ["Request", "Response"])
def test_delay_holds_only_the_matching_route(two_workers: tuple[str, str, int], rules: Any, target: str) -> None:
    client = Client(two_workers[0])
    try:
        base_hit, base_miss = _median(client, "GET", "/bytes/10"), _median(client, "GET", "/ok")
        rules({"kind": "http.delay", "target": target, "path": "/bytes/*", "delay": 0.1})
        hit, miss = _median(client, "GET", "/bytes/10"), _median(client, "GET", "/ok")
    finally:
        client.close()
    print(f"{target}: +{(hit - base_hit) * 1000:.1f} ms on the route, {(miss - base_miss) * 1000:+.1f} ms elsewhere")
    assert abs(hit - base_hit - 0.1) <= 0.01
    assert abs(miss - base_miss) <= 0.005


def test_replace_the_request(two_workers: tuple[str, str, int], rules: Any) -> None:
    """Method, path (query kept), a header and the body (its Content-Length follows) as the service sees them."""
    client = Client(two_workers[0])
    try:
        rules(
            {
                "kind": "http.replace",
                "path": "/reflect/old",
                "replace": {"method": "PUT", "path": "/reflect/new", "headers": {"X-Env": "chaos"}, "body": "{}"},
            }
        )
        status, _, body, _ = _send(client, "POST", "/reflect/old?q=1", b'{"a": 1}', {"X-Env": "prod"})
        seen = json.loads(body)
        assert status == 200
        assert (seen["method"], seen["path"], seen["body"]) == ("PUT", "/reflect/new?q=1", "{}")
        assert seen["headers"]["x-env"] == "chaos" and seen["headers"]["content-length"] == "2"
        seen = json.loads(_send(client, "POST", "/reflect/other", b"same")[2])  # other routes untouched
        assert (seen["method"], seen["body"]) == ("POST", "same")
    finally:
        client.close()


def test_patch_the_request(two_workers: tuple[str, str, int], rules: Any) -> None:
    client = Client(two_workers[0])
    try:
        rules({"kind": "http.patch", "method": "POST", "patch": {"headers": {"X-Added": "1"}, "body": {"b": 2}}})
        body = json.dumps({"a": 1, "big": "y" * 200_000}).encode()  # read across many recvs
        seen = json.loads(_send(client, "POST", "/reflect/p", body)[2])
        assert json.loads(seen["body"]) == {"a": 1, "big": "y" * 200_000, "b": 2}
        assert seen["headers"]["x-added"] == "1" and int(seen["headers"]["content-length"]) == len(seen["body"])
        seen = json.loads(_send(client, "GET", "/reflect/g")[2])
        assert "x-added" not in seen["headers"]
    finally:
        client.close()


def test_replace_and_patch_the_response_chunked_or_not(two_workers: tuple[str, str, int], rules: Any) -> None:
    client = Client(two_workers[0])
    try:
        rules(
            {
                "kind": "http.replace",
                "target": "Response",
                "path": "/reflect/r",
                "replace": {"code": 404, "body": "gone"},
            }
        )
        rules(
            {
                "kind": "http.patch",
                "target": "Response",
                "path": "/chunked/*",
                "patch": {"headers": {"X-P": "2"}, "body": {"x": True}},
            }
        )
        status, headers, body, _ = _send(client, "GET", "/reflect/r")
        assert (status, body, headers["content-length"], headers["x-upstream"]) == (404, b"gone", "4", "reflect")
        status, headers, body, _ = _send(client, "GET", "/chunked/7")
        assert status == 200 and json.loads(body) == {"n": 7, "x": True} and headers["x-p"] == "2"
        assert "transfer-encoding" not in headers
        assert _send(client, "GET", "/bytes/3")[2] == b"xxx"  # the connection still frames right
    finally:
        client.close()


def test_a_rule_change_applies_from_the_next_request_of_a_kept_alive_connection(
    two_workers: tuple[str, str, int], rules: Any
) -> None:
    listen, control, _ = two_workers
    client = Client(listen)
    try:
        assert _send(client, "GET", "/ok")[0] == 200
        n0 = _control(control, "GET", "/health")[1]["connections"]
        name = rules({"kind": "http.abort", "path": "/ok", "status": 503})
        assert [_send(client, "GET", "/ok")[0] for _ in range(3)] == [503] * 3
        assert (
            _control(control, "PUT", f"/faults/{name}", {"kind": "http.abort", "path": "/ok", "status": 429})[0] == 200
        )
        assert _send(client, "GET", "/ok")[0] == 429
        assert _control(control, "DELETE", f"/faults/{name}")[0] == 204
        assert [_send(client, "GET", "/ok")[0] for _ in range(3)] == [200] * 3
        assert _control(control, "GET", "/health")[1]["connections"] == n0, "all on the one connection"
    finally:
        client.close()


# ---------------------------------------------------------------- as scenario faults, journaled


@pytest.fixture
def journal(tmp_path: Path, two_workers: tuple[str, str, int]) -> Iterator[Journal]:
    j = Journal(f"http-test.{os.getpid()}", tmp_path / "journal")
    try:
        yield j
    finally:
        for record in j.outstanding():
            with contextlib.suppress(Exception):
                revert_record(record, j)
        _control(two_workers[1], "DELETE", "/faults")


def test_http_kinds_injected_and_reverted_through_the_journal(
    two_workers: tuple[str, str, int], journal: Journal
) -> None:
    listen, control, _ = two_workers
    faults = [
        _fault("http.abort", {"method": "POST", "path": "/echo", "status": 503}, name="a", control=control),
        _fault("http.delay", {"path": "/bytes/*", "delay": "50ms"}, name="d", control=control),
        _fault(
            "http.replace", {"target": "Response", "path": "/ok", "replace": {"body": "no"}}, name="r", control=control
        ),
        _fault("http.patch", {"path": "/reflect/*", "patch": {"headers": {"X-Y": "z"}}}, name="p", control=control),
    ]
    assert proxy.describe(faults[0]) == (
        f"answer POST /echo requests with 503 through the fault proxy controlled at {control} for 30s"
    )
    assert proxy.describe(faults[2]).startswith("replace the body of the responses to /ok requests")
    records = [proxy.inject(fault, journal.run_id, journal) for fault in faults]
    client = Client(listen)
    try:
        assert _send(client, "POST", "/echo", b"1")[0] == 503
        assert _send(client, "GET", "/bytes/1")[3] >= 0.05
        assert _send(client, "GET", "/ok")[2] == b"no"
        assert json.loads(_send(client, "GET", "/reflect/x")[2])["headers"]["x-y"] == "z"
        for record in records:
            proxy.revert(record, journal)
        assert _send(client, "POST", "/echo", b"1")[:3:2] == (200, b"1")
        assert _send(client, "GET", "/ok")[2] == b"ok\n"
    finally:
        client.close()
    assert _control(control, "GET", "/faults")[1] == {"faults": {}}
    assert all(journal.latest(f.name).state is FaultState.REVERTED for f in faults)  # type: ignore[union-attr]


def test_the_control_process_dying_takes_its_workers(upstream: str, tmp_path: Path) -> None:
    child, _, _ = _start_proxy(upstream, tmp_path / "proxy.log", 3)
    try:
        workers = [p.pid for p in psutil.Process(child.pid).children()]
        assert len(workers) == 2
        os.kill(child.pid, signal.SIGKILL)
        child.wait(timeout=5)
        deadline = time.monotonic() + 5
        while any(psutil.pid_exists(p) and psutil.Process(p).status() != "zombie" for p in workers):
            assert time.monotonic() < deadline, "workers outlived a SIGKILLed control process"
            time.sleep(0.05)
    finally:
        _stop(child)


@ROOT_ONLY
def test_transparent_rule_acts_on_its_route_only_and_leaves_nothing(
    service_ns: str,  # noqa: F811 (the fixture)
    ns_journal: Journal,  # noqa: F811 (the fixture)
) -> None:
    """A transparent proxy (two processes) on the namespace's service: the rule's route fails, the
    others pass; a kept-alive connection opened after inject goes through it; revert leaves nothing."""
    fault = _fault("http.abort", {"path": "/bytes/*", "status": 503}, service=service_ns, netns=NS, workers=2)
    record = proxy.inject(fault, ns_journal.run_id, ns_journal)
    assert len(_proxies_of(ns_journal.run_id)) == 2
    client = Client(service_ns, timeout=5)
    try:
        for _ in range(5):
            assert _send(client, "GET", "/bytes/4")[0] == 503
            assert _send(client, "GET", "/ok")[:3:2] == (200, b"ok\n")
    finally:
        client.close()
        proxy.revert(record, ns_journal)
    assert _ns_tables() == [] and _proxies_of(ns_journal.run_id) == []
    client = Client(service_ns, timeout=5)
    try:
        assert _send(client, "GET", "/bytes/4")[:3:2] == (200, b"xxxx")
    finally:
        client.close()


@ROOT_ONLY
def test_a_transparent_rule_whose_journal_was_lost_is_swept_with_its_workers(
    service_ns: str,  # noqa: F811 (the fixture)
    ns_journal: Journal,  # noqa: F811 (the fixture)
) -> None:
    """``harness recover --sweep`` finds the redirect table and every process of the proxy by tag."""
    from harness.chaos import sweep

    fault = _fault("http.delay", {"path": "/ok", "delay": "1s"}, service=service_ns, netns=NS, workers=2)
    proxy.inject(fault, ns_journal.run_id, ns_journal)
    pids = _proxies_of(ns_journal.run_id)
    assert len(pids) == 2
    found = {(item.kind, item.name) for item in sweep.find()}
    assert ("nft table", f"ip {proxy.table_name(ns_journal.run_id)}") in found
    assert {f"pid {pid} (HARNESS_PROXY_FAULT={ns_journal.run_id}/{fault.name})" for pid in pids} <= {
        name for kind, name in found if kind == "process"
    }
    removed, failed = sweep.sweep()
    assert failed == [] and len(removed) >= 3, removed
    assert _ns_tables() == [] and _proxies_of(ns_journal.run_id) == []
    client = Client(service_ns, timeout=5)
    try:
        assert _send(client, "GET", "/ok")[3] < 0.5  # no delay: nothing of the fault is left
    finally:
        client.close()
