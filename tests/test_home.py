"""The command line and the Python API from a working folder that is not the repository: they
find the checkout's results and weights (study.core.store.HOME), or say in one line how to point
at them, and write nothing into the working folder."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest

from conftest import REPO

RESULTS = REPO / "results" / "cpu"


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """A copy of the package outside any checkout, as an installed package is."""
    site = tmp_path_factory.mktemp("site")
    shutil.copytree(REPO / "study", site / "study", ignore=shutil.ignore_patterns("__pycache__"))
    return site


@pytest.fixture
def cwd(tmp_path):
    """An empty working folder that is not a checkout."""
    (tmp_path / "cwd").mkdir()
    return tmp_path / "cwd"


def python(cwd, path, *argv: str, **env: str) -> subprocess.CompletedProcess:
    """`python ARGV` in `cwd` with the package imported from `path`, STUDY_HOME unset unless given."""
    base = {k: v for k, v in os.environ.items() if k != "STUDY_HOME"}
    env = base | {"PYTHONPATH": str(path), "PYTHONSAFEPATH": "1"} | env
    return subprocess.run([sys.executable, *argv], cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


def one_line_error(proc: subprocess.CompletedProcess) -> str:
    """The one line a study error prints (exit status 2, no traceback)."""
    assert proc.returncode == 2 and proc.stderr.startswith("error: "), proc.stderr[-2000:]
    assert proc.stderr.count("\n") == 1, proc.stderr
    return proc.stderr


def test_score_elsewhere_uses_the_checkout_of_the_package(cwd, tmp_path):
    """The package's checkout holds results/cpu: score reads them (and stops here at a folder that
    is not there, without running any model), leaving the working folder empty."""
    proc = python(cwd, REPO, "-m", "study.run", "score", "--folder", str(tmp_path / "photos"))
    err = one_line_error(proc)
    assert "is not a folder" in err or "in use by" in err  # found the results; stopped at the folder (or its lock)
    assert list(cwd.iterdir()) == []


@pytest.mark.parametrize("argv", [("score", "--folder", "photos"), ("train",), ("report", "--preset", "smoke")])
def test_outside_any_checkout_a_command_says_how_to_point_at_the_results(site, cwd, argv):
    preset = argv[-1] if argv[0] == "report" else "cpu"
    err = one_line_error(python(cwd, site, "-m", "study.run", *argv))
    assert f"no results/{preset} here ({cwd}) and no checkout" in err and "STUDY_HOME=" in err and "--out" in err
    assert list(cwd.iterdir()) == []  # no .run.lock, no results/, no data/


def test_study_home_without_results_is_named(cwd, tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    err = one_line_error(python(cwd, REPO, "-m", "study.run", "score", "--folder", "x", STUDY_HOME=str(home)))
    assert f"no results/cpu in STUDY_HOME={home}" in err and "--out" in err
    assert list(cwd.iterdir()) == [] and list(home.iterdir()) == []


def test_the_api_elsewhere_finds_the_checkout_s_results_and_weights(cwd):
    """Without `results=`: the checkout's results/cpu; with it: the weights of the checkout's
    data/weights/, not the working folder's (the conversion stubbed: no backbone is built)."""
    code = """
import sys
from study import api
from study.core.errors import ConfigError
from study.network import weights
try:
    api.load("mnist@64")
except ConfigError as e:
    print(e)
def prepared(ctx):
    print(ctx.weights_dir)
    raise SystemExit(0)
weights.prepared = prepared
api.load("asl_photos@64", results=sys.argv[1])
"""
    proc = python(cwd, REPO, "-c", code, str(RESULTS))
    assert proc.returncode == 0, proc.stderr[-2000:]
    found, weights_dir = proc.stdout.splitlines()
    assert f"no model 'mnist@64' in {RESULTS}" in found and weights_dir == str(REPO / "data" / "weights")
    assert list(cwd.iterdir()) == []


def test_the_api_outside_any_checkout_says_how_to_point_at_results_and_weights(site, cwd):
    code = """
import sys
from study import api
from study.core.errors import StudyError
for options in ({}, {"results": sys.argv[1]}):
    try:
        api.load("asl_photos@64", **options)
    except StudyError as e:
        print(e)
"""
    proc = python(cwd, site, "-c", code, str(RESULTS))
    assert proc.returncode == 0, proc.stderr[-2000:]
    results, weights = proc.stdout.splitlines()
    assert "no results/cpu here" in results and "results=" in results and "STUDY_HOME=" in results
    assert "weights_dir=" in weights and "STUDY_HOME=" in weights
    assert list(cwd.iterdir()) == []
