"""harness as a user gets it from the package index: a wheel built from this checkout, installed
into a fresh virtualenv, run from a directory outside the checkout: ``--help``, ``--version``,
``new`` and ``validate`` of what it wrote, ``validate`` and ``plan`` of a bundled scenario.

The wheel is built from a copy of the checkout's files (tracked and new, not ignored) with the
dev venv's own setuptools (``--no-build-isolation``): nothing is downloaded, and a stale
``build/`` directory in the checkout cannot leak into the wheel.

The fresh virtualenv must not download the world (Ray, Locust, scipy: about 1 GB). It is made
without pip packages of its own and sees the dev venv's site-packages through a ``.pth`` file:
a path listed in a ``.pth`` file is appended to ``sys.path`` but its own ``.pth`` files are not
run, so the dev venv's editable install of harness (a ``.pth`` import hook) stays inactive and
the only ``harness`` that can be imported is the one the wheel put into the new venv, which
comes first on ``sys.path``. (``python -m venv --system-site-packages`` would not do: from a
venv it exposes the base interpreter's site-packages, not the dev venv's.) The wheel is
installed with ``--no-index``, so its declared dependencies must all be satisfied by what is
already there, or the install fails.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

from harness.bundled import BUNDLED, bundled_dir

ROOT = Path(__file__).resolve().parents[1]


def _tracked(*paths: str) -> list[str]:
    listed = subprocess.run(
        ["git", "ls-files", "-co", "--exclude-standard", *paths], cwd=ROOT, capture_output=True, text=True, check=True
    )
    return [name for name in listed.stdout.splitlines() if (ROOT / name).is_file()]


def test_bundled_trees_are_the_checkouts_own_in_a_checkout() -> None:
    for name in BUNDLED:
        assert bundled_dir(name) == ROOT / name
    assert (bundled_dir("scenarios") / "demo.yaml").is_file()
    # A scenario's relative locustfile path holds wherever the trees sit, side by side.
    assert (bundled_dir("scenarios") / "../locustfiles/shop.py").resolve().is_file()


def test_the_package_is_typed() -> None:
    assert (ROOT / "harness" / "py.typed").is_file()


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    work = tmp_path_factory.mktemp("wheel")
    source = work / "src"
    for name in _tracked():
        (source / name).parent.mkdir(parents=True, exist_ok=True)
        (source / name).write_bytes((ROOT / name).read_bytes())
    offline = ["--no-deps", "--no-build-isolation", "--no-index"]
    built = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", *offline, "-w", str(work / "dist"), str(source)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert built.returncode == 0, built.stdout + built.stderr
    [found] = (work / "dist").glob("*.whl")
    return found


@pytest.fixture(scope="module")
def installed(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh venv with the wheel installed; returns its bin/ directory."""
    venv = tmp_path_factory.mktemp("venv")
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", venv], check=True, timeout=120)
    [site] = venv.glob("lib/python*/site-packages")
    (site / "dev-venv.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    done = subprocess.run(
        [venv / "bin" / "python", "-m", "pip", "install", "--no-index", "--no-cache-dir", wheel],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return venv / "bin"


@pytest.mark.slow
def test_the_wheel_carries_the_bundled_trees_and_the_type_marker(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    assert "harness/py.typed" in names
    # the report's charts: uPlot with its licence, and the report's own script (harness report from a wheel)
    for asset in ("vendor/uPlot.iife.min.js", "vendor/uPlot.min.css", "vendor/uPlot.LICENSE.txt", "report.js"):
        assert f"harness/review/{asset}" in names, asset
    shipped = [name for name in _tracked(*BUNDLED) if "__pycache__" not in name]
    assert shipped, "nothing under scenarios/, locustfiles/, grafana/"
    missing = [name for name in shipped if f"harness/_bundled/{name}" not in names]
    assert not missing, missing
    [metadata] = [name for name in names if name.endswith(".dist-info/METADATA")]
    text = zipfile.ZipFile(wheel).read(metadata).decode()
    assert "Name: load-chaos-harness" in text
    assert "Classifier: Typing :: Typed" in text
    assert "Project-URL: Documentation" in text


@pytest.mark.slow
def test_the_installed_wheel_runs_outside_the_checkout(installed: Path, tmp_path: Path) -> None:
    env = {
        **os.environ,
        "HARNESS_DATA_DIR": str(tmp_path / "data"),
        "HARNESS_RUNS_DIR": str(tmp_path / "runs"),
        "PYTHONPATH": "",
        "COLUMNS": "200",
    }

    def harness(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [installed / "harness", *args], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120
        )

    where = subprocess.run(
        [installed / "python", "-c", "import harness, harness.bundled as b, json;"
         "print(json.dumps([harness.__file__, *(str(b.bundled_dir(n)) for n in b.BUNDLED)]))"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    package, *trees = (Path(p) for p in json.loads(where.stdout))
    venv = installed.parent
    assert package.is_relative_to(venv), f"imported {package}, not the installed wheel"
    for tree in trees:
        assert tree.is_relative_to(package.parent / "_bundled"), tree
    scenarios, _locustfiles, grafana = trees
    assert (grafana / "provisioning" / "datasources" / "harness.yaml").is_file()
    assert (grafana / "dashboards" / "harness-run.json").is_file()
    charts = subprocess.run(  # the report's inline scripts and licence come from the installed package
        [installed / "python", "-c", "import json; from harness.review import report, vendor;"
         "print(json.dumps([len(vendor.script()), vendor.licence().splitlines()[0], report.csp()]))"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    script_size, licence, policy = json.loads(charts.stdout)
    assert script_size > 40_000 and licence == "The MIT License (MIT)", charts.stdout
    assert policy.startswith("default-src 'none'; script-src 'sha256-"), charts.stdout

    helped = harness("--help")
    assert helped.returncode == 0, helped.stderr
    assert "validate" in helped.stdout and "grafana" in helped.stdout
    versioned = harness("--version")
    assert versioned.returncode == 0, versioned.stderr
    assert versioned.stdout.split()[0] == "load-chaos-harness", versioned.stdout

    # `harness new` writes its templates from the installed package; what it writes validates.
    made = harness("new", "smoke")
    assert made.returncode == 0, made.stdout + made.stderr
    assert (tmp_path / "smoke.yaml").is_file() and (tmp_path / "smoke.py").is_file()
    fresh = harness("validate", "smoke.yaml")
    assert fresh.returncode == 0, fresh.stdout + fresh.stderr

    demo = scenarios / "demo.yaml"
    checked = harness("validate", str(demo))
    assert checked.returncode == 0, checked.stdout + checked.stderr
    planned = harness("plan", str(demo))
    assert planned.returncode == 0, planned.stdout + planned.stderr
    assert "kill-payments" in planned.stdout

    # A bad scenario is still a located exit 2 from the installed command.
    broken = tmp_path / "broken.yaml"
    broken.write_text(demo.read_text().replace("name: demo", "nmae: demo", 1))
    refused = harness("validate", str(broken))
    assert refused.returncode == 2, refused.stdout + refused.stderr
    assert "broken.yaml" in refused.stdout + refused.stderr
