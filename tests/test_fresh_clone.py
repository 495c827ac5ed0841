"""A new user's first commands in a fresh clone, without the study's datasets: `all` with no
flags says what to download; `score` with the committed `cpu` models scores real photos."""

from __future__ import annotations

import ast
import csv
import json
import os
import re
import shutil
import subprocess
import sys

import pytest

from conftest import REPO, clone, git_status, in_clone

pytestmark = pytest.mark.slow  # minutes: the command line in a clone, or prepare on the real images


@pytest.fixture(scope="module")
def repo(tmp_path_factory):
    return clone(tmp_path_factory.mktemp("fresh") / "repo")


def test_all_without_flags_or_data_says_what_to_download(repo):
    proc = in_clone(repo, "all")
    assert proc.returncode == 2, proc.stderr[-2000:]
    err = proc.stderr
    for line in (
        "data/asl-alphabet/",
        "kaggle datasets download -d grassknoted/asl-alphabet -p data/asl-alphabet",
        "data/synthetic-asl-alphabet/",
        "kaggle datasets download -d lexset/synthetic-asl-alphabet",
        "data/asl-photos/",
        "python -m study.run all --preset smoke",
    ):
        assert line in err, line
    assert "Traceback" not in err
    assert git_status(repo) == ""


def test_the_paper_preset_without_its_data_says_what_to_download(repo):
    proc = in_clone(repo, "all", "--preset", "paper", "--data-dir", "data")
    assert proc.returncode == 2 and "kaggle datasets download -d grassknoted/asl-alphabet" in proc.stderr
    assert "Traceback" not in proc.stderr and git_status(repo) == ""


# Every `python -m study.run` command the README shows, and the test that types it in a fresh
# clone and checks that `git status` stays clean. The record's own command is the one meant to
# rewrite results/cpu/ and paper/ (an hour on 2 cores: run by hand when the study changes).
README_COMMANDS = {
    "all --preset smoke": "test_end_to_end.test_smoke_all_in_a_clone_leaves_git_status_clean",
    "score --folder path/to/photos": "test_score_with_the_committed_cpu_models_needs_no_dataset",
    "score --folder path/to/photos [--name mine] [--folder-labels-only]": (
        "test_score_with_the_committed_cpu_models_needs_no_dataset"
    ),
    "all --preset paper --data-dir data": "test_the_paper_preset_without_its_data_says_what_to_download",
    "all --preset cpu --data-dir ../shared/data": "the study of record, re-run by hand",
}


def test_every_command_of_the_readme_is_one_a_test_runs():
    readme = (REPO / "README.md").read_text()
    shown = {c.strip() for c in re.findall(r"^ {4}python -m study\.run (.+?)(?: {2,}#.*)?$", readme, re.M)}
    assert shown == set(README_COMMANDS)


def test_score_with_the_committed_cpu_models_needs_no_dataset(repo, shared_data, tmp_path):
    """One real photo for each of 20 letters from asl-photos (a folder layout with `Del`-style
    names), scored by every committed cpu model at every r."""
    photos = tmp_path / "photos"
    letters = "ABCDEFGHIJKLMNOPQRST"
    for c in letters:
        src = sorted((shared_data / "asl-photos" / "train" / c).glob("*.jpg"))[0]
        (photos / c.lower()).mkdir(parents=True)
        shutil.copy(src, photos / c.lower() / src.name)
    assert not (repo / "data" / "asl-alphabet").exists()
    proc = in_clone(repo, "score", "--folder", str(photos), "--name", "mine", timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = repo / "results" / "cpu" / "score" / "mine"
    rows = list(csv.DictReader(open(out / "table.csv")))
    models = {(r["train_dataset"], r["train_res"]) for r in rows}
    # every model but the few-shot ones (adapted to one of the study's datasets), the ablation
    # and the fine-tuned ones, whose blocks (28 MB each) are not committed: it says so; the
    # hand-crop models on the photos' crops, the landmark models on their landmarks (r = 0)
    assert models == {
        (m, R) for m in ("asl_alphabet", "asl_photos", "asl_alphabet+asl_photos") for R in ("64", "128")
    } | {(f"{d}/aug4", "64") for d in ("asl_alphabet", "asl_photos")} | {
        (f"{d}/hand", R) for d in ("asl_alphabet", "asl_photos") for R in ("64", "128")
    } | {(f"{d}/landmarks", "0") for d in ("asl_alphabet", "asl_photos")}
    assert len(rows) == 7 * 3 + 5 * 4 + 2  # r in (64, 32, 16) at R = 64; (128, 64, 32, 16) at R = 128; r = 0
    assert (
        "not scored, their fine-tuned block 5 is not here" in proc.stdout and "asl_photos/ft5@64 seed 2" in proc.stdout
    )
    assert {r["n"] for r in rows} == {str(len(letters))}
    assert json.loads((out / "dataset.json").read_text())["splits"]["test"]["images"] == len(letters)
    assert "asl_photos@128" in proc.stdout and "accuracy" in proc.stdout
    assert git_status(repo) == ""  # no tracked file changed, score/ is ignored: the record stands
    # The README's Python example, run in the clone on one of the photos: score's letter for it.
    readme = (REPO / "README.md").read_text()
    example = readme.split("<!-- api-example -->\n```python\n", 1)[1].split("```\n<!-- /api-example -->", 1)[0]
    photo = sorted(photos.rglob("*.jpg"))[0]
    code = example.replace("path/to/photo.jpg", str(photo))
    env = dict(os.environ, PYTHONPATH=str(REPO), PYTHONSAFEPATH="1")
    shown = subprocess.run([sys.executable, "-c", code], cwd=repo, env=env, capture_output=True, text=True, timeout=600)
    assert shown.returncode == 0, shown.stderr[-3000:]
    letter = ast.literal_eval(shown.stdout.splitlines()[0])
    preds = {p["file"]: p for p in csv.DictReader(open(out / "predictions.csv"))}
    assert letter == [preds[str(photo.relative_to(photos))]["asl_photos@64 seed 0"]]


def test_prepare_the_study_of_record_leaves_the_clone_as_it_was(repo, shared_data):
    """The README's `prepare --preset cpu --data-dir ../shared/data` on the real images: the same
    datasets and weights give the same summaries, so no tracked file changes (the code's commit
    in their provenance is not a reason to rewrite them)."""
    proc = in_clone(repo, "prepare", "--preset", "cpu", "--data-dir", str(shared_data), timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert git_status(repo) == ""
