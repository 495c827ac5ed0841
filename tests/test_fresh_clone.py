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
    "score --folder path/to/photos [--name mine] [--folder-labels-only] [--every-r]": (
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
    names), scored by every kind of committed cpu model at its own R; then the same photos
    through the Python API from another working folder: each kind gives score's answers."""
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
    # every kind but the few-shot and adapted ones and the ablation, each at its own R; not the
    # fine-tuned ones, whose blocks (28 MB each) are not committed: it says so, last
    sources = ("asl_alphabet", "asl_photos")
    hands = {(f"{d}/{v}", R) for d in sources for v in ("hand", "hand+landmarks") for R in ("64", "128")}
    marks = {(f"{d}/{v}", "0") for d in sources for v in ("landmarks", "landmarks/aug8")}
    images = {(m, R) for m in ("asl_alphabet", "asl_photos", "asl_alphabet+asl_photos") for R in ("64", "128")}
    assert models == images | {(f"{d}/aug4", "64") for d in sources} | hands | marks
    assert len(rows) == len(models) and all(r["eval_res"] == r["train_res"] for r in rows)
    last = proc.stdout.strip().splitlines()[-1]
    assert last.startswith("not scored: asl_alphabet/ft5@64, asl_photos/ft5@64") and "minutes" in last, last
    assert "hand+landmarks" not in last and "aug8" not in last, last
    assert "leaked" not in proc.stderr and "Traceback" not in proc.stderr
    assert {r["n"] for r in rows} == {str(len(letters))}
    assert json.loads((out / "dataset.json").read_text())["splits"]["test"]["images"] == len(letters)
    answers = list(csv.DictReader(open(out / "answers.csv")))
    assert len(answers) == len(models) and answers[0]["model"] in proc.stdout
    assert git_status(repo) == ""  # no tracked file changed, score/ is ignored: the record stands
    preds = {p["file"]: p for p in csv.DictReader(open(out / "predictions.csv"))}
    # The README's Python example, run in the clone on one of the photos: score's letter for it.
    readme = (REPO / "README.md").read_text()
    example = readme.split("<!-- api-example -->\n```python\n", 1)[1].split("```\n<!-- /api-example -->", 1)[0]
    photo = sorted(photos.rglob("*.jpg"))[0]
    code = example.replace("path/to/photo.jpg", str(photo))
    env = dict(os.environ, PYTHONPATH=str(REPO), PYTHONSAFEPATH="1")
    shown = subprocess.run([sys.executable, "-c", code], cwd=repo, env=env, capture_output=True, text=True, timeout=600)
    assert shown.returncode == 0, shown.stderr[-3000:]
    letter = ast.literal_eval(shown.stdout.splitlines()[0])
    assert letter == [preds[str(photo.relative_to(photos))]["asl_photos@64 seed 0"]]
    # Each kind through the API, typed in another folder (the clone named by STUDY_HOME): the
    # seeds' mean answer that score gives every photo, and nothing written in that folder.
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    kinds = [
        "asl_photos@64",
        "asl_alphabet/hand@64",
        "asl_photos/landmarks",
        "asl_alphabet/aug4@64",
        "asl_photos/hand+landmarks@128",
        "asl_alphabet/landmarks/aug8",
    ]
    files = sorted(str(p.relative_to(photos)) for p in photos.rglob("*.jpg"))
    code = (
        "import json, sys\nfrom study import api\n"
        f"files = {[str(photos / f) for f in files]!r}\n"
        f"print(json.dumps({{m: api.load(m).predict(files) for m in {kinds!r}}}))"
    )
    env = dict(os.environ, PYTHONPATH=str(REPO), PYTHONSAFEPATH="1", STUDY_HOME=str(repo))
    got = subprocess.run(
        [sys.executable, "-c", code], cwd=elsewhere, env=env, capture_output=True, text=True, timeout=900
    )
    assert got.returncode == 0, got.stderr[-3000:]
    said = json.loads(got.stdout.splitlines()[-1])
    for m in kinds:
        column = m if "@" in m else f"{m}@0"
        assert said[m] == [preds[f][column] for f in files], m
    assert list(elsewhere.iterdir()) == []


def test_prepare_the_study_of_record_leaves_the_clone_as_it_was(repo, shared_data):
    """The README's `prepare --preset cpu --data-dir ../shared/data` on the real images: the same
    datasets and weights give the same summaries, so no tracked file changes (the code's commit
    in their provenance is not a reason to rewrite them)."""
    proc = in_clone(repo, "prepare", "--preset", "cpu", "--data-dir", str(shared_data), timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert git_status(repo) == ""
