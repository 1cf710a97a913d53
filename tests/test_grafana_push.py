"""`harness grafana push` and `harness grafana link`.

No Grafana server can run here: push is tested over real HTTP against tests/grafana_api.py, a
double of Grafana's HTTP API with Grafana's status codes, bodies and validation. The dashboards
are harness.review.grafana.dashboards.build_all()'s; a small stand-in is used only while that module
does not exist yet.
"""

from __future__ import annotations

import importlib.util
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from harness.errors import ConfigError, ResultsError
from harness.results.lineproto import encode_many
from harness.results.points import run_point, running_point
from harness.review.grafana.link import run_dashboard_url, run_times
from harness.review.grafana.push import DATASOURCE_UID, GrafanaError, PushSettings, datasource_body, folder_uid, push
from tests.grafana_api import GrafanaDouble

GRAFANA_TOKEN = "glsa_Zq9sEcReT0kEn_1234abcd"
INFLUX_TOKEN = "influx-s3cr3t+token/with=chars"

STAND_IN: dict[str, dict[str, Any]] = {
    "harness-run.json": {
        "id": None,
        "uid": "harness-run",
        "title": "Harness run",
        "schemaVersion": 39,
        "panels": [{"type": "timeseries", "datasource": {"type": "influxdb", "uid": "harness-influxdb"}}],
    },
    "harness-compare.json": {"id": None, "uid": "harness-compare", "title": "Harness compare", "schemaVersion": 39},
}


def _real_dashboards_exist() -> bool:
    if importlib.util.find_spec("harness.review.grafana.dashboards") is None:
        return False
    from harness.review.grafana import dashboards

    return hasattr(dashboards, "build_all")


REAL = _real_dashboards_exist()


def _dashboards() -> dict[str, dict[str, Any]]:
    if REAL:
        from harness.review.grafana.dashboards import build_all

        built: dict[str, dict[str, Any]] = build_all()
        return built
    return STAND_IN


# Runs the CLI; while build_all does not exist yet, a stand-in module is put in its place first.
_STAND_IN_CLI = (
    "import json, sys, types\n"
    "models = json.loads(sys.argv.pop(1))\n"
    "m = types.ModuleType('harness.review.grafana.dashboards')\n"
    "m.build_all = lambda: models\n"
    "sys.modules['harness.review.grafana.dashboards'] = m\n"
    "from harness.cli import main\n"
    "sys.argv[0] = 'harness'\n"
    "main()\n"
)


def _cli(*args: str, env: dict[str, str] | None = None, runs: Path | None = None) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if k not in ("GRAFANA_TOKEN", "INFLUX_TOKEN", "HARNESS_GRAFANA_URL")}
    environ.update({"COLUMNS": "200", **(env or {})})
    if runs is not None:
        environ["HARNESS_RUNS_DIR"] = str(runs)
    if REAL:
        command = [sys.executable, "-m", "harness.cli", *args]
    else:
        command = [sys.executable, "-c", _STAND_IN_CLI, json.dumps(STAND_IN), *args]
    return subprocess.run(command, env=environ, capture_output=True, text=True, timeout=60)


@pytest.fixture
def grafana() -> Iterator[GrafanaDouble]:
    with GrafanaDouble(token=GRAFANA_TOKEN) as double:
        yield double


def _push(grafana: GrafanaDouble, *extra: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    environ = {"GRAFANA_TOKEN": GRAFANA_TOKEN, "INFLUX_TOKEN": INFLUX_TOKEN, **(env or {})}
    args = ["grafana", "push", "--url", grafana.url, "--results-url", "http://influxdb:8086"]
    return _cli(*args, "--results-token-env", "INFLUX_TOKEN", *extra, env=environ)


def _datasource_uids(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        ref = node.get("datasource")
        if isinstance(ref, dict) and isinstance(ref.get("uid"), str):
            yield ref["uid"]
        for value in node.values():
            yield from _datasource_uids(value)
    elif isinstance(node, list):
        for value in node:
            yield from _datasource_uids(value)


# ---------------------------------------------------------------------------- push, end to end


def test_push_creates_datasource_folder_and_dashboards_in_order(grafana: GrafanaDouble) -> None:
    dashboards = _dashboards()
    done = _push(grafana)
    assert done.returncode == 0, done.stdout + done.stderr
    uids = sorted(d["uid"] for d in dashboards.values())
    assert grafana.calls() == [
        ("GET", f"/api/datasources/uid/{DATASOURCE_UID}"),
        ("POST", "/api/datasources"),
        ("GET", "/api/folders/harness"),
        ("POST", "/api/folders"),
        *[("POST", "/api/dashboards/db")] * len(dashboards),
    ]
    for request in grafana.requests:
        assert request.headers["authorization"] == f"Bearer {GRAFANA_TOKEN}"
        if request.body is not None:
            assert request.headers["content-type"] == "application/json"

    ds = grafana.requests[1].body
    assert {k: ds[k] for k in ("uid", "type", "access", "url", "database")} == {
        "uid": "harness-influxdb",
        "type": "influxdb",
        "access": "proxy",
        "url": "http://influxdb:8086",
        "database": "harness",
    }
    assert ds["name"]
    assert ds["jsonData"] == {
        "version": "InfluxQL",
        "dbName": "harness",
        "httpMode": "POST",
        "timeInterval": "1s",
        "httpHeaderName1": "Authorization",
    }
    assert ds["secureJsonData"] == {"httpHeaderValue1": f"Token {INFLUX_TOKEN}"}
    stored = grafana.state.datasources["harness-influxdb"]
    assert stored["secureJsonFields"] == {"httpHeaderValue1": True}
    assert grafana.state.secure["harness-influxdb"] == {"httpHeaderValue1": f"Token {INFLUX_TOKEN}"}

    assert grafana.requests[3].body == {"uid": "harness", "title": "harness"}
    posted = [r.body for r in grafana.requests[4:]]
    assert sorted(b["dashboard"]["uid"] for b in posted) == uids
    for body in posted:
        assert body["folderUid"] == "harness" and body["overwrite"] is True and body["message"] == "harness push"
        assert body["dashboard"]["id"] is None
        model = next(d for d in dashboards.values() if d["uid"] == body["dashboard"]["uid"])
        assert body["dashboard"] == {**model, "id": None}
        # Every datasource a pushed dashboard names by uid exists after the push (or is a variable).
        for uid in _datasource_uids(body["dashboard"]):
            assert uid in grafana.state.datasources or uid.startswith("$") or uid in ("grafana", "-- Grafana --")
    assert sorted(grafana.state.dashboards) == uids
    assert {d["folderUid"] for d in grafana.state.dashboards.values()} == {"harness"}

    lines = done.stdout.splitlines()
    assert lines[0].startswith("datasource harness-influxdb: created (influxdb, InfluxQL, http://influxdb:8086")
    assert lines[1] == "folder harness: created (uid harness)"
    for uid in uids:
        title = next(d["title"] for d in dashboards.values() if d["uid"] == uid)
        slug = "-".join("".join(c if c.isalnum() else " " for c in title.lower()).split())
        assert f"dashboard {uid}: created (version 1): {grafana.url}/d/{uid}/{slug}" in lines
    assert len(lines) == 2 + len(uids)


def test_a_second_push_updates_and_duplicates_nothing(grafana: GrafanaDouble) -> None:
    assert _push(grafana).returncode == 0
    first = len(grafana.requests)
    again = _push(grafana, "--database", "harness2")
    assert again.returncode == 0, again.stdout + again.stderr
    n = len(_dashboards())
    assert grafana.calls()[first:] == [
        ("GET", f"/api/datasources/uid/{DATASOURCE_UID}"),
        ("PUT", f"/api/datasources/uid/{DATASOURCE_UID}"),
        ("GET", "/api/folders/harness"),
        *[("POST", "/api/dashboards/db")] * n,
    ]
    assert all(r.body["overwrite"] is True for r in grafana.requests[first + 3 :])
    assert len(grafana.state.datasources) == 1 and len(grafana.state.folders) == 1
    assert len(grafana.state.dashboards) == n
    assert {d["version"] for d in grafana.state.dashboards.values()} == {2}
    stored = grafana.state.datasources[DATASOURCE_UID]
    assert stored["version"] == 2 and stored["jsonData"]["dbName"] == "harness2"
    lines = again.stdout.splitlines()
    assert lines[0].startswith("datasource harness-influxdb: updated")
    assert lines[1] == "folder harness: exists (uid harness)"
    assert all(": updated (version 2): " in line for line in lines[2:]) and len(lines) == 2 + n


def test_no_secret_is_printed_or_sent_anywhere_but_its_place(grafana: GrafanaDouble) -> None:
    done = _push(grafana)
    assert done.returncode == 0
    for secret in (GRAFANA_TOKEN, INFLUX_TOKEN):
        assert secret not in done.stdout + done.stderr
    for request in grafana.requests:
        body = request.body if isinstance(request.body, dict) else {}
        elsewhere = {k: v for k, v in body.items() if k != "secureJsonData"}
        assert INFLUX_TOKEN not in json.dumps([request.path, request.query, elsewhere, dict(request.headers)])
        assert GRAFANA_TOKEN not in request.raw  # only in the Authorization header
    # Grafana never hands the secret back, and push does not need it to.
    assert INFLUX_TOKEN not in json.dumps(grafana.state.datasources)


def test_a_wrong_grafana_token_is_exit_3_with_grafanas_message_and_no_token(grafana: GrafanaDouble) -> None:
    wrong = "glsa_wrong_token_ffff0000"
    done = _push(grafana, env={"GRAFANA_TOKEN": wrong})
    assert done.returncode == 3, done.stdout + done.stderr
    assert done.stderr.strip() == (
        f"error: Grafana {grafana.url}: datasource harness-influxdb: "
        f"GET /api/datasources/uid/harness-influxdb: HTTP 401: Invalid API key"
    )
    for secret in (wrong, GRAFANA_TOKEN, INFLUX_TOKEN):
        assert secret not in done.stdout + done.stderr
    assert "Traceback" not in done.stderr
    assert grafana.calls() == [("GET", "/api/datasources/uid/harness-influxdb")]


def test_a_missing_token_variable_is_exit_2_naming_it(grafana: GrafanaDouble) -> None:
    done = _cli("grafana", "push", "--url", grafana.url)
    assert done.returncode == 2, done.stdout + done.stderr
    assert "--token-env names GRAFANA_TOKEN, but that environment variable is not set" in done.stderr
    custom = _cli("grafana", "push", "--url", grafana.url, "--token-env", "MY_GRAFANA", env={"GRAFANA_TOKEN": "x"})
    assert custom.returncode == 2 and "MY_GRAFANA" in custom.stderr
    influx = _cli(
        "grafana", "push", "--url", grafana.url, "--results-token-env", "NO_SUCH_VAR", env={"GRAFANA_TOKEN": "x"}
    )
    assert influx.returncode == 2 and "--results-token-env names NO_SUCH_VAR" in influx.stderr
    # The old spelling still works (hidden from --help), and messages name the flag that was typed.
    old = _cli("grafana", "push", "--url", grafana.url, "--influx-token-env", "NO_SUCH_VAR", env={"GRAFANA_TOKEN": "x"})
    assert old.returncode == 2 and "--influx-token-env names NO_SUCH_VAR" in old.stderr
    assert "note: --influx-token-env is deprecated; use --results-token-env" in old.stderr
    assert grafana.requests == []


def test_credentials_in_a_url_are_refused_without_printing_them(grafana: GrafanaDouble) -> None:
    for flag in ("--results-url", "--influx-url"):  # the name, and its deprecated spelling
        done = _cli(
            "grafana", "push", "--url", grafana.url, flag, "http://u:pw-in-url@influxdb:8086",
            env={"GRAFANA_TOKEN": GRAFANA_TOKEN},
        )  # fmt: skip
        assert done.returncode == 2
        assert f"{flag} http://influxdb:8086: remove the credentials" in done.stderr
        assert "pw-in-url" not in done.stdout + done.stderr
    assert grafana.requests == []


def test_push_takes_grafanas_url_from_harness_grafana_url(grafana: GrafanaDouble) -> None:
    done = _cli("grafana", "push", env={"GRAFANA_TOKEN": GRAFANA_TOKEN, "HARNESS_GRAFANA_URL": grafana.url})
    assert done.returncode == 0, done.stdout + done.stderr
    assert ("GET", "/api/datasources/uid/harness-influxdb") in grafana.calls()
    nowhere = _cli("grafana", "push", env={"GRAFANA_TOKEN": GRAFANA_TOKEN})
    assert nowhere.returncode == 2 and "--url" in nowhere.stderr


def test_an_unreachable_grafana_is_exit_3() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    done = _cli("grafana", "push", "--url", f"http://127.0.0.1:{port}", env={"GRAFANA_TOKEN": GRAFANA_TOKEN})
    assert done.returncode == 3
    assert f"error: Grafana http://127.0.0.1:{port} unreachable (GET /api/datasources/uid/harness-influxdb)" in (
        done.stderr
    )
    assert GRAFANA_TOKEN not in done.stderr


# ---------------------------------------------------------------------------- push, in process


def _settings(grafana: GrafanaDouble, **kw: Any) -> PushSettings:
    return PushSettings(
        url=grafana.url, token=GRAFANA_TOKEN, influx_url="http://127.0.0.1:8086", database="harness", **kw
    )


def test_grafana_refusing_a_dashboard_stops_the_push_with_its_message(grafana: GrafanaDouble) -> None:
    said: list[str] = []
    # A title of blanks passes push's own check and is what Grafana itself refuses.
    bad = {"bad.json": {"uid": "harness-bad", "title": " "}}
    with pytest.raises(GrafanaError) as caught:
        push(_settings(grafana), bad, said.append)
    assert str(caught.value) == (
        f"Grafana {grafana.url}: dashboard harness-bad (bad.json): POST /api/dashboards/db: "
        "HTTP 400: Dashboard title cannot be empty"
    )
    assert caught.value.exit_code == 3
    assert said == ["datasource harness-influxdb: created (influxdb, InfluxQL, http://127.0.0.1:8086, db harness)",
                    "folder harness: created (uid harness)"]  # fmt: skip


def test_a_dashboard_model_without_uid_or_title_is_refused_before_any_request(grafana: GrafanaDouble) -> None:
    with pytest.raises(GrafanaError, match=r"dashboard x.json: the model has no uid or no title; nothing was pushed"):
        push(_settings(grafana), {"x.json": {"title": "No uid"}}, print)
    assert grafana.requests == []


def test_a_provisioned_datasource_is_left_as_it_is(grafana: GrafanaDouble) -> None:
    grafana.add_provisioned_datasource(DATASOURCE_UID, "InfluxDB (provisioned)")
    said: list[str] = []
    push(_settings(grafana), STAND_IN, said.append)
    assert said[0] == "datasource harness-influxdb: provisioned from a file (read-only in Grafana), left as it is"
    assert ("PUT", f"/api/datasources/uid/{DATASOURCE_UID}") not in grafana.calls()
    assert len(grafana.state.dashboards) == len(STAND_IN)


def test_an_existing_secret_is_kept_when_no_influx_token_is_given(grafana: GrafanaDouble) -> None:
    push(_settings(grafana, influx_token="tok-1"), STAND_IN, lambda _: None)
    push(_settings(grafana), STAND_IN, lambda _: None)
    put = next(r for r in grafana.requests if r.method == "PUT")
    assert "secureJsonData" not in put.body and "httpHeaderName1" not in put.body["jsonData"]
    assert grafana.state.secure[DATASOURCE_UID] == {"httpHeaderValue1": "Token tok-1"}


def test_requests_are_bounded_by_the_timeout() -> None:
    with GrafanaDouble(token=GRAFANA_TOKEN, stall_s=3.0) as slow:
        began = time.monotonic()
        with pytest.raises(
            GrafanaError, match=r"unreachable \(GET /api/datasources/uid/harness-influxdb\): .*timed out"
        ):
            push(_settings(slow, timeout=0.3), STAND_IN, print)
        assert time.monotonic() - began < 2.0


def test_folder_uids_follow_grafanas_alphabet() -> None:
    assert folder_uid("harness") == "harness"
    assert folder_uid("Load tests / EU") == "Load-tests-EU"
    assert len(folder_uid("x" * 60)) == 40
    with pytest.raises(ConfigError):
        folder_uid(" / ")


def test_the_datasource_body_without_a_token_has_no_header() -> None:
    body = datasource_body(
        PushSettings(url="http://g", token="t", influx_url="http://i:8086", database="d", influx_token=None)
    )
    assert "secureJsonData" not in body and "httpHeaderName1" not in body["jsonData"]
    assert "token=" not in repr(PushSettings(url="http://g", token="t", influx_url="http://i", database="d"))


# ---------------------------------------------------------------------------- the double itself


def test_the_double_rejects_what_grafana_rejects(grafana: GrafanaDouble) -> None:
    from harness.results._http import http_request

    def call(method: str, path: str, body: Any, token: str | None = GRAFANA_TOKEN) -> tuple[int, Any]:
        headers = {"Content-Type": "application/json"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        status, raw = http_request(
            method, grafana.url + path, body=json.dumps(body).encode(), headers=headers, timeout=5
        )
        return status, json.loads(raw)

    assert call("GET", "/api/datasources/uid/nope", None) == (404, {"message": "Data source not found"})
    assert call("GET", "/api/folders/nope", None) == (404, {"status": "not-found", "message": "folder not found"})
    assert call("GET", "/api/folders/nope", None, token=None) == (401, {"message": "Unauthorized"})
    for missing in ("name", "type", "access"):
        body = {"name": "n", "type": "influxdb", "access": "proxy"}
        del body[missing]
        assert call("POST", "/api/datasources", body) == (400, {"message": "bad request data"})
    assert call("POST", "/api/dashboards/db", {"dashboard": {"uid": "u"}}) == (
        400,
        {"status": "empty-name", "message": "Dashboard title cannot be empty"},
    )
    assert call("POST", "/api/dashboards/db", {"overwrite": True}) == (400, {"message": "bad request data"})
    assert call("POST", "/api/dashboards/db", {"dashboard": {"uid": "a b", "title": "t"}}) == (
        400,
        {"message": "uid contains illegal characters"},
    )
    assert call("POST", "/api/dashboards/db", {"dashboard": {"uid": "u", "title": "t"}, "folderUid": "nope"}) == (
        400,
        {"message": "folder not found"},
    )
    status, saved = call("POST", "/api/dashboards/db", {"dashboard": {"uid": "u", "title": "My Board"}})
    assert status == 200
    assert saved == {
        "id": saved["id"], "uid": "u", "url": "/d/u/my-board", "status": "success", "version": 1,
        "slug": "my-board", "folderUid": "",
    }  # fmt: skip
    assert call("POST", "/api/dashboards/db", {"dashboard": {"uid": "u", "title": "My Board"}})[0] == 412
    assert call("POST", "/api/folders", {"uid": "f", "title": ""}) == (400, {"message": "folder title cannot be empty"})


# ---------------------------------------------------------------------------- link


def test_link_is_the_run_dashboard_over_the_run_with_10s_margins() -> None:
    assert run_dashboard_url("http://g:3000/", "shop-1", 1_700_000_000.25, 1_700_000_060.5) == (
        "http://g:3000/d/harness-run/harness-run?var-run_id=shop-1&from=1699999990250&to=1700000070500"
    )
    # Outward rounding to whole milliseconds, and a run id that survives the trip intact.
    url = run_dashboard_url("http://g", "a b&c=d#e+f/é", 10.0004, 20.0001)
    assert url == "http://g/d/harness-run/harness-run?var-run_id=a%20b%26c%3Dd%23e%2Bf%2F%C3%A9&from=0&to=30001"


def test_link_to_a_running_run_follows_it_from_its_start_to_now() -> None:
    assert run_dashboard_url("http://g", "shop-1", 1_700_000_000.25, None) == (
        "http://g/d/harness-run/harness-run?var-run_id=shop-1&from=1699999990250&to=now&refresh=5s"
    )


def test_link_reads_a_running_run_from_its_own_results_lp(tmp_path: Path) -> None:
    """No summary.json yet and no InfluxDB to ask: the run's own record says it is running."""
    run = tmp_path / "shop-live"
    run.mkdir()
    lines = encode_many([running_point("shop-live", "shop", 1_767_225_600.0, 1_767_225_660.0)])
    (run / "results.lp").write_text("\n".join(lines) + "\n" + "harness_requests,run_id=shop-live cou")  # mid-write
    assert run_times("shop-live", tmp_path, None) == (1_767_225_600.0, None)
    done = _cli("grafana", "link", "shop-live", runs=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.endswith("var-run_id=shop-live&from=1767225590000&to=now&refresh=5s\n")
    # The verdict written onto the same point: the run has ended.
    ended = run_point("shop-live", "shop", "passed", 1_767_225_600.0, 1_767_225_661.5, "ok", 1_767_225_660.0)
    (run / "results.lp").write_text("\n".join([*lines, *encode_many([ended])]) + "\n")
    assert run_times("shop-live", tmp_path, None) == (1_767_225_600.0, 1_767_225_661.5)


def test_link_prints_the_url_from_summary_json(tmp_path: Path) -> None:
    run = tmp_path / "shop-20260101-abc"
    run.mkdir()
    (run / "summary.json").write_text(json.dumps({"started": 1_767_225_600.0, "ended": 1_767_225_660.123}))
    done = _cli("grafana", "link", "shop-20260101-abc", runs=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout == (
        "http://127.0.0.1:3000/d/harness-run/harness-run?var-run_id=shop-20260101-abc"
        "&from=1767225590000&to=1767225670123\n"
    )
    other = _cli(
        "grafana", "link", "shop-20260101-abc", runs=tmp_path, env={"HARNESS_GRAFANA_URL": "https://grafana.example/"}
    )
    assert other.stdout.startswith("https://grafana.example/d/harness-run/harness-run?")
    flag = _cli("grafana", "link", "shop-20260101-abc", "--url", "http://g:3000", runs=tmp_path)
    assert flag.stdout.startswith("http://g:3000/d/harness-run/")


def test_link_to_an_unknown_run_is_exit_2_naming_it(tmp_path: Path) -> None:
    with socket.socket() as sock:  # an InfluxDB that is not there
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    done = _cli("grafana", "link", "no-such-run", "--results-url", f"http://127.0.0.1:{port}", runs=tmp_path)
    assert done.returncode == 2, done.stdout + done.stderr
    assert done.stderr.startswith("error: run no-such-run: unknown (no ")
    assert done.stdout == "" and "Traceback" not in done.stderr


class _Influx:
    def __init__(self, rows: list[dict[str, Any]] | None = None, fail: bool = False) -> None:
        self.rows = rows or []
        self.fail = fail
        self.asked: list[str] = []

    def query(self, q: str) -> list[dict[str, Any]]:
        self.asked.append(q)
        if self.fail:
            raise ResultsError("InfluxDB http://127.0.0.1:8086 unreachable: refused")
        return self.rows


def test_link_falls_back_to_influxdb_harness_runs(tmp_path: Path) -> None:
    influx = _Influx([{"time": 1, "started": 100.0, "ended": 160.0}])
    assert run_times("it's", tmp_path, influx) == (100.0, 160.0)
    assert influx.asked == ['SELECT "started", "ended", "verdict" FROM harness_runs WHERE "run_id" = \'it\\\'s\'']
    running = _Influx([{"time": 1, "started": 100.0, "ended": 160.0, "verdict": "running"}])
    assert run_times("live", tmp_path, running) == (100.0, None)
    with pytest.raises(ConfigError, match=r"run gone: unknown \(no .*summary.json, and not in InfluxDB's harness_runs"):
        run_times("gone", tmp_path, _Influx([]))
    with pytest.raises(ConfigError, match=r"run gone: unknown .*InfluxDB could not be asked"):
        run_times("gone", tmp_path, _Influx(fail=True))
    with pytest.raises(ConfigError, match=r"not a run id"):
        run_times("../etc", tmp_path, influx)
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "summary.json").write_text('{"started": "yesterday"}')
    with pytest.raises(ConfigError, match=r"run bad: .* has no numeric 'started' and 'ended'"):
        run_times("bad", tmp_path, None)


def test_a_short_wrong_token_does_not_mangle_the_message(grafana: GrafanaDouble) -> None:
    settings = PushSettings(url=grafana.url, token="x", influx_url="http://i:8086", database="harness")
    with pytest.raises(GrafanaError) as caught:
        push(settings, STAND_IN, print)
    assert str(caught.value).endswith(
        ": datasource harness-influxdb: GET /api/datasources/uid/harness-influxdb: HTTP 401: Invalid API key"
    )
