"""The report (study.stages.report) on the smoke run's results: every table and figure, numbers
read from the files, partial results refused naming what is missing; and it never imports jax."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import REPO
from smoke import layout
from study import run


@pytest.mark.slow
def test_report_writes_every_table_and_figure_from_the_results(smoke):
    paper = layout(smoke)["paper"]
    for name in (
        "training_curves",
        "accuracy_vs_resolution",
        "cross_domain_heatmap",
        "per_letter_f1",
        "cross_domain_confusions",
        "few_shot",
        "effects",
        "gradcam",
    ):
        for ext in ("png", "pdf"):
            assert (paper / "figures" / f"{name}.{ext}").stat().st_size > 1000, name
    assert (paper / "tables" / "comparison.tex").read_text().count(r"\\") >= 4
    md = (layout(smoke)["out"] / "table.md").read_text()
    assert "asl_alphabet@32" in md and "Leakage ablation" in md
    text = (paper / "paper.md").read_text()
    assert "{" not in text  # every placeholder filled
    assert "figures/few_shot.png" in text and "**Table 2.**" in text  # the remedies
    for question in (
        "Does the transfer fail, and why?",
        "What recovers it?",
        "What does downsizing the pixels do?",
        "## Appendix A. The full table",
        "## Appendix B. Every effect, by question",
    ):
        assert question in text, question
    numbers = json.loads((layout(smoke)["out"] / "paper_numbers.json").read_text())
    effects = numbers["effects"]
    ranked = [e for e in effects if e["verdict"] != "no clear difference"]
    assert ranked == effects[: len(ranked)] and [abs(e["difference"]) for e in ranked] == sorted(
        (abs(e["difference"]) for e in ranked), reverse=True
    )
    for e in effects:  # the verdict is the simultaneous interval's, which holds the difference's own
        assert e["ci_family"][0] <= e["ci"][0] <= e["difference"] <= e["ci"][1] <= e["ci_family"][1]
        assert e["verdict"] == (
            "higher" if e["ci_family"][0] > 0 else "lower" if e["ci_family"][1] < 0 else "no clear difference"
        )
    family = numbers["multiplicity"]
    assert family["family"] == len(effects) and family["verdicts_changed"] == sum(
        e["verdict"] != e["verdict_alone"] for e in effects
    )
    # Every decimal number in the paper is one that a result file holds.
    results = "".join(p.read_text() for p in layout(smoke)["out"].glob("*.*") if p.suffix in (".json", ".csv"))
    numbers = set(re.findall(r"(?<![\w.])\d+\.\d+", text))
    assert numbers
    missing = [
        n for n in numbers if n not in results and f"{float(n):.4f}" not in results and not _rounded_in(n, results)
    ]
    assert missing == []


def _rounded_in(number: str, results: str) -> bool:
    """`number` (3 decimals) is a rounding of a value with more decimals in the results."""
    decimals = len(number.split(".")[1])
    return any(f"{float(v):.{decimals}f}" == number for v in re.findall(r"\d+\.\d+", results))


@pytest.mark.slow
def test_report_on_partial_results_names_what_is_missing_and_writes_nothing(smoke, tmp_path, capsys):
    out = tmp_path / "out"
    shutil.copytree(layout(smoke)["out"], out)
    shutil.rmtree(out / "models" / "asl_photos@32")
    rows = (out / "table.csv").read_text().splitlines()
    (out / "table.csv").write_text("\n".join(r for r in rows if not r.startswith("asl_photos,")) + "\n")
    (out / "table.md").unlink()
    assert run.main(["report", "--preset", "smoke", "--out", str(out), "--paper-dir", str(tmp_path / "paper")]) == 2
    err = capsys.readouterr().err
    assert "model asl_photos@32 seed 0" in err and "table row asl_photos@32 on asl_alphabet at r=32" in err
    assert not (tmp_path / "paper").exists() and not (out / "table.md").exists()


@pytest.mark.slow
def test_domain_separability_is_balanced_leak_free_and_in_the_report(smoke):
    from study.core.splits import balanced
    from study.core.store import read_separability

    rows = read_separability(layout(smoke)["out"] / "separability.csv")
    assert {(r["dataset_a"], r["dataset_b"]) for r in rows} == {
        ("asl_alphabet", "synthetic_asl_alphabet"),
        ("asl_alphabet", "asl_photos"),
        ("synthetic_asl_alphabet", "asl_photos"),
    }
    assert {(r["R"], r["r"]) for r in rows} == {(32, 32), (32, 16)}
    for r in rows:
        assert r["n_test"] % 2 == 0 and r["n_train"] % 2 == 0  # as many images from each side
        assert 0 <= r["accuracy_ci_low"] <= r["accuracy"] <= r["accuracy_ci_high"] <= 1
    y_a, y_b = np.array([0, 0, 0, 1, 2, 2]), np.array([0, 1, 1, 1, 3])
    ia, ib = balanced(y_a, y_b, [0, 1], seed=0)
    assert sorted(y_a[ia]) == sorted(y_b[ib]) == [0, 1]
    assert "Domain separability" in (layout(smoke)["out"] / "table.md").read_text()
    assert "tells the two datasets' test images apart" in (layout(smoke)["paper"] / "paper.md").read_text()


def test_report_imports_no_jax():
    code = (
        "import sys, study.stages.report; assert 'jax' not in sys.modules, 'report imported jax'; "
        "assert 'tensorflow_datasets' not in sys.modules, 'report imported TFDS'"
    )
    subprocess.run([sys.executable, "-c", code], cwd=REPO, check=True)


def test_only_the_record_preset_writes_the_paper_of_record(tmp_path):
    from study.core.config import RECORD

    def paper(*argv):
        return run.context(run.parser().parse_args(["report", *argv])).paper_folder

    assert paper() == Path("paper") and RECORD == "cpu"
    assert paper("--preset", "cpu") == Path("paper")
    assert paper("--preset", "cpu", "--out", str(tmp_path)) == tmp_path / "paper"
    assert paper("--preset", "smoke") == Path("results/smoke/paper")
    assert paper("--preset", "paper") == Path("results/paper/paper")
    assert paper("--preset", "smoke", "--paper-dir", str(tmp_path / "p")) == tmp_path / "p"
