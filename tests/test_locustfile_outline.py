"""What harness reads of a locustfile without running it, and how a scenario's load fields are checked.

Pure: no Locust process starts. The scenario files are real files validated by the real
loader, and the errors pinned are the ones a user sees from ``harness validate``.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.errors import ScenarioError
from harness.scenario import describe_load, load_scenario, locustfile_notes
from harness.scenario.locustfile import outline

LOCUSTFILE = """
from locust import HttpUser, LoadTestShape, events, task
from locust.contrib.fasthttp import FastHttpUser


@events.init_command_line_parser.add_listener
def _(parser):
    parser.add_argument("--my-argument", type=int, default=1)
    parser.add_argument("--flag", action="store_true")


class Base(HttpUser):
    abstract = True


class Shopper(Base):
    @task
    def index(self):
        self.client.get("/")


class Fast(FastHttpUser):
    fixed_count = 1


class Steps(LoadTestShape):
    def tick(self):
        return None
"""


@pytest.fixture
def locustfile(tmp_path: Path) -> Path:
    path = tmp_path / "locustfile.py"
    path.write_text(LOCUSTFILE)
    return path


def _scenario(tmp_path: Path, load: str) -> Path:
    path = tmp_path / "scenario.yaml"
    path.write_text(f"name: s\ntarget:\n  base_url: http://127.0.0.1:9\nload:\n  locustfile: locustfile.py\n{load}")
    return path


def test_outline_reads_classes_shapes_arguments(locustfile: Path) -> None:
    declared = outline(locustfile)
    assert declared is not None
    assert declared.users == ("Shopper", "Fast")  # Base is abstract
    assert declared.shapes == ("Steps",)
    assert declared.arguments == ("my_argument", "flag")
    assert not declared.reads_stats


def test_outline_sees_stats_reads(tmp_path: Path) -> None:
    path = tmp_path / "stats.py"
    path.write_text("def on_stop(environment):\n    print(environment.stats.total.num_requests)\n")
    declared = outline(path)
    assert declared is not None and declared.reads_stats


def test_user_classes_may_be_omitted_and_plan_says_what_runs(locustfile: Path, tmp_path: Path) -> None:
    scenario = load_scenario(
        _scenario(tmp_path, "  arguments: {my-argument: 5, flag: true}\n  stages: [{duration: 5s, users: 2}]\n")
    )
    assert scenario.load.user_classes == []
    rows = dict(describe_load(scenario))
    assert (
        rows["user classes"] == "every User class in the file, each with its own weight or fixed_count: Shopper, Fast"
    )
    assert rows["arguments"] == "--my-argument=5 --flag"
    assert locustfile_notes(scenario) == []


def test_unknown_argument_and_missing_shape_are_located(locustfile: Path, tmp_path: Path) -> None:
    path = _scenario(tmp_path, "  shape: Ramp\n  arguments:\n    my-argument: 5\n    iterations: 3\n")
    with pytest.raises(ScenarioError) as caught:
        load_scenario(path)
    lines = str(caught.value).splitlines()
    assert lines == [
        f"{path}:6:3: load.shape: class 'Ramp' is not a LoadTestShape defined in locustfile.py (found: Steps)",
        f"{path}:9:5: load.arguments.iterations: locustfile.py declares no argument --iterations (declared with "
        "init_command_line_parser: --my-argument, --flag)",
    ]


def test_stages_or_shape(locustfile: Path, tmp_path: Path) -> None:
    neither = _scenario(tmp_path, "  processes: 1\n")
    with pytest.raises(ScenarioError, match=r"load.stages: give at least one stage, or name a LoadTestShape"):
        load_scenario(neither)
    both = _scenario(tmp_path, "  shape: Steps\n  stages: [{duration: 5s, users: 2}]\n")
    with pytest.raises(ScenarioError, match=r"load.shape: give load.stages or load.shape .*not both"):
        load_scenario(both)
    assert load_scenario(_scenario(tmp_path, "  shape: Steps\n")).load.shape == "Steps"


def test_validate_warns_when_the_locustfile_reads_stats(tmp_path: Path) -> None:
    (tmp_path / "locustfile.py").write_text(
        LOCUSTFILE + "\n\n@events.quitting.add_listener\ndef _(environment, **kw):\n"
        "    print(environment.stats.total.fail_ratio)\n"
    )
    scenario = load_scenario(_scenario(tmp_path, "  stages: [{duration: 5s, users: 2}]\n"))
    (note,) = locustfile_notes(scenario)
    assert note.startswith("locustfile.py reads '.stats': under harness, environment.stats holds only each Locust")


def test_shape_ticks_become_stages() -> None:
    from harness.load.shape import stages_of

    stages = stages_of([[2, 10.0], [2, 10.0], [4, 10.0], [4, 10.0], [4, 10.0], [0, 5.0]])
    assert [(s.at, s.duration, s.users, s.spawn_rate) for s in stages] == [
        (0.0, 2.0, 2, 10.0),
        (2.0, 3.0, 4, 10.0),
        (5.0, 1.0, 0, 5.0),
    ]
    with pytest.raises(ValueError, match=r"tick\(\) at 1s gives \(3, 0\)"):
        stages_of([[1, 1.0], [3, 0.0]])
