"""The generator wire protocol: every command and report survives its line, and is found by its name."""

from __future__ import annotations

import json

import pytest

from harness.load.protocol import (
    Applied,
    Command,
    Error,
    Health,
    Keepalive,
    Ready,
    Report,
    SetRate,
    SetUsers,
    Stop,
    Stopped,
    Window,
    decode_as,
    decode_command,
    decode_report,
    encode_command,
)

COMMANDS: list[Command] = [
    SetUsers(users=12, spawn_rate=2.5),
    SetRate(rate=33.3, users=4, start=1_700_000_000.25, phase=0.5),
    SetRate(rate=10.0, users=1),
    Stop(),
    Keepalive(),
]
REPORTS: list[Report] = [
    Ready("g0.1"),
    Window("g0.1", 42, Health(cpu=0.9, wait=0.1, users=7, rate=33.0, lag_ms=2.5), 3, [{"m": "GET", "n": "/"}]),
    Applied("g0.1", "set_rate", 1_700_000_000.5),
    Stopped("g0.1"),
    Error("g0.1", 'boom: "quoted"\nand a second line'),
]


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: c.name)
def test_every_command_is_one_line_that_decodes_to_itself(command: Command) -> None:
    line = encode_command(command)
    assert line.endswith(b"\n") and line.count(b"\n") == 1
    assert json.loads(line)["cmd"] == command.name
    assert decode_command(line) == command


@pytest.mark.parametrize("report", REPORTS, ids=lambda r: r.name)
def test_every_report_is_one_line_that_decodes_to_itself(report: Report) -> None:
    line = report.encode()
    assert "\n" not in line
    assert json.loads(line)["t"] == report.name and json.loads(line)["p"] == "g0.1"
    assert decode_report(line) == report
    assert decode_report(line.encode()) == report
    assert decode_as(line, type(report)) == report


def test_a_window_keeps_the_wire_keys_the_driver_reads() -> None:
    window = REPORTS[1]
    assert json.loads(window.encode()) == {
        "t": "window",
        "p": "g0.1",
        "s": 42,
        "cpu": 0.9,
        "w": 0.1,
        "u": 7,
        "r": 33.0,
        "lag": 2.5,
        "a": 3,
        "e": [{"m": "GET", "n": "/"}],
    }


def test_decode_as_leaves_other_reports_undecoded() -> None:
    assert decode_as('{"t":"error","text":"no p: not decoded"}', Window) is None
    assert decode_as(Ready("x").encode(), Applied) is None


@pytest.mark.parametrize(
    "line",
    ['{"cmd":"reboot"}', '{"users":1}', "[1, 2]", "not json", '{"cmd":"set_users","users":"many"}'],
)
def test_a_line_that_is_no_command_is_a_value_error(line: str) -> None:
    with pytest.raises(ValueError):
        decode_command(line)


@pytest.mark.parametrize("line", ['{"t":"status","p":"x"}', '{"t":"applied","p":"x"}', '{"t":"window"}', "{"])
def test_a_line_that_is_no_report_is_a_value_error(line: str) -> None:
    with pytest.raises(ValueError):
        decode_report(line)
