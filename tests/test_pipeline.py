"""The runner end to end on the smoke preset: outputs, no work twice, stale refusal, resume
after a kill, and sharded features equal to single-device ones."""

from __future__ import annotations

import csv
import dataclasses
import re
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from conftest import REPO
from study import evaluate, features, run, train
from study.config import SMOKE
from study.context import Context
from study.units import StaleResultError


def args(tmp: Path, stage: str = "all", *extra: str) -> list[str]:
    return [stage, "--preset", "smoke", "--data-dir", str(tmp / "data"), "--out", str(tmp / "out"),
            "--tfds-dir", str(tmp / "tfds"), "--cache-dir", str(tmp / "cache"),
            "--weights-dir", str(tmp / "weights"), "--paper-dir", str(tmp / "paper"), *extra]


def context(tmp: Path, preset=SMOKE, force=False) -> Context:
    return Context(preset, tmp / "data", tmp / "out", tmp / "tfds", tmp / "cache", tmp / "weights", force, lambda s: None)


def outputs(tmp: Path) -> dict[str, int]:
    return {str(p.relative_to(tmp)): p.stat().st_mtime_ns for d in ("out", "cache") for p in (tmp / d).rglob("*") if p.is_file()}


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("pipeline")
    assert run.main(args(tmp)) == 0
    return tmp


def read_table(tmp: Path) -> list[dict]:
    with open(tmp / "out" / "table.csv") as f:
        return list(csv.DictReader(f))


def test_all_writes_models_evaluations_and_the_table(smoke):
    out = smoke / "out"
    rows = read_table(smoke)
    assert list(rows[0]) == evaluate.TABLE_COLUMNS
    names = {"asl_alphabet", "synthetic_asl_alphabet", "asl_photos"}
    assert {r["train_dataset"] for r in rows} == names | {"asl_alphabet+random"}
    assert {r["eval_dataset"] for r in rows} == names | {"asl_alphabet:kaggle_test", "asl_alphabet+random"}
    assert {r["eval_res"] for r in rows} == {"32", "16"}
    # 3 models x (3 test splits + kaggle_test) x 2 degradations, and the ablation's one row
    assert len(rows) == 3 * 4 * 2 + 1
    ablation = [r for r in rows if r["train_dataset"] == "asl_alphabet+random"]
    assert [(r["eval_dataset"], r["eval_res"]) for r in ablation] == [("asl_alphabet+random", "32")]
    for name in names:
        d = out / "models" / f"{name}@32" / "seed0"
        assert {"head.npz", "history.json", "curves.png", "unit.json"} <= {p.name for p in d.iterdir()}
        assert not (d / "checkpoint.npz").exists()
        h = json.loads((d / "history.json").read_text())["history"]
        assert [e["epoch"] for e in h] == [1, 2] and {"train_loss", "val_loss", "train_accuracy", "val_accuracy"} <= set(h[0])
    e = json.loads((out / "eval/asl_alphabet@32/seed0/synthetic_asl_alphabet.test.r32.json").read_text())
    assert e["labels"] == [chr(c) for c in range(65, 91)] + ["nothing"]  # shared labels only
    assert e["n"] == 27 * 4
    for key in ("accuracy", "accuracy_ci", "macro_f1", "macro_f1_ci", "report", "confusion", "report_text"):
        assert key in e
    assert (out / "eval/asl_alphabet@32/seed0/synthetic_asl_alphabet.test.r32.txt").read_text().count("precision") == 1
    fj = json.loads((out / "features.json").read_text())
    assert fj["throughput_by_R"]["32"] > 0


def test_second_all_does_no_work(smoke):
    before = outputs(smoke)
    t0 = time.perf_counter()
    assert run.main(args(smoke)) == 0
    assert time.perf_counter() - t0 < 30
    after = outputs(smoke)
    changed = [k for k in after if before.get(k) != after[k] and not k.endswith(("table.csv", "features.json", "datasets.json", "weights.json"))]
    assert changed == []


def test_changed_config_is_refused_without_force(smoke):
    longer = dataclasses.replace(SMOKE, train=dataclasses.replace(SMOKE.train, epochs=3))
    with pytest.raises(StaleResultError, match=r"changed: train.*--force"):
        train.run_stage(context(smoke, longer))
    harder = dataclasses.replace(SMOKE, eval=dataclasses.replace(SMOKE.eval, bootstrap=50))
    with pytest.raises(StaleResultError, match="--force"):
        evaluate.run_stage(context(smoke, harder))


def test_killed_run_resumes_and_equals_an_uninterrupted_one(smoke, tmp_path):
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    proc = subprocess.Popen([sys.executable, "-m", "study.run", *args(tmp_path)], cwd=REPO, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + 120
    # Kill once a few feature units are done and the rest are not.
    while time.time() < deadline and len(list((tmp_path / "cache").rglob("unit.json"))) < 5:
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    finished = {p.parent for p in (tmp_path / "cache").rglob("unit.json")}
    assert 5 <= len(finished) < 14
    stamps = {p: (p / "feats.npy").stat().st_mtime_ns for p in finished}
    assert run.main(args(tmp_path)) == 0
    assert {p: (p / "feats.npy").stat().st_mtime_ns for p in finished} == stamps  # nothing redone
    assert read_table(tmp_path) == read_table(smoke)
    for p in (smoke / "cache").rglob("feats.npy"):
        np.testing.assert_array_equal(np.load(p), np.load(tmp_path / p.relative_to(smoke)))


def test_sharded_features_equal_single_device_features(smoke, tmp_path):
    script = (
        "import sys, numpy as np, jax\n"
        "from study import features, weights\n"
        "w = weights.load_converted(sys.argv[1])\n"
        "x = np.load(sys.argv[2])\n"
        "ex = features.Extractor(w, 16)\n"
        "assert jax.device_count() == int(sys.argv[4]), jax.devices()\n"
        "np.save(sys.argv[3], np.concatenate([ex(x[i:i + 16]) for i in range(0, len(x), 16)]))\n"
    )
    ctx = context(smoke)
    wfile = ctx.weights_dir / ctx.weights_record["converted_file"]
    src = ctx.builder("asl_alphabet").as_data_source()["test"]
    x = np.stack([features.model_input(src[i]["image"], 32, 32) for i in range(40)])  # 40: a padded last batch
    np.save(tmp_path / "x.npy", x)
    for n in (1, 2):
        env = dict(os.environ, XLA_FLAGS=f"--xla_force_host_platform_device_count={n}", JAX_PLATFORMS="cpu")
        subprocess.run([sys.executable, "-c", script, str(wfile), str(tmp_path / "x.npy"), str(tmp_path / f"f{n}.npy"), str(n)],
                       cwd=REPO, env=env, check=True)
    one, two = np.load(tmp_path / "f1.npy"), np.load(tmp_path / "f2.npy")
    assert one.shape == (40, 512)
    # Equal up to float32 summation order (each device convolves 8 images instead of 16):
    # the largest difference relative to the features' scale.
    scale = np.abs(one).max()
    assert np.abs(two - one).max() / scale < 1e-5
    cached = np.load(features.unit_dir(ctx, "asl_alphabet", "test", 32, 32) / "feats.npy")
    labels = np.load(features.unit_dir(ctx, "asl_alphabet", "test", 32, 32) / "labels.npy")
    assert np.abs(cached[:40] - one).max() / scale < 1e-5
    assert list(labels[:40]) == [src[i]["label"] for i in range(40)]


def test_score_a_folder_of_own_photos(smoke, tmp_path, capsys):
    from study.datasets import fake

    photos = tmp_path / "My Photos"
    fake.write_asl_folder(photos, split_dir=None, per_class=2, seed=7)
    (photos / "holiday").mkdir()
    (photos / "holiday" / "beach.jpg").write_bytes((photos / "A" / "A0.jpg").read_bytes())
    capsys.readouterr()
    assert run.main(args(smoke, "score", "--folder", str(photos))) == 0
    printed = capsys.readouterr().out
    out = smoke / "out" / "score" / "my_photos"
    rows = list(csv.DictReader(open(out / "table.csv")))
    assert {r["train_dataset"] for r in rows} == {"asl_alphabet", "synthetic_asl_alphabet", "asl_photos"}
    assert {r["eval_dataset"] for r in rows} == {"my_photos"} and {r["eval_res"] for r in rows} == {"32", "16"}
    ds = json.loads((out / "dataset.json").read_text())
    assert ds["splits"]["test"]["images"] == 29 * 2 + 1  # + the planted frameless image: scoring needs no frames
    assert any(s["path"] == "holiday/" and s["reason"] == "unknown class folder" for s in ds["skipped"])
    assert "asl_photos@32" in printed and "accuracy" in printed
    # Lexset has no del/space: those photos are not scored against its model.
    lex = [r for r in rows if r["train_dataset"] == "synthetic_asl_alphabet"][0]
    assert int(lex["n"]) == ds["splits"]["test"]["images"] - ds["splits"]["test"]["per_class"]["del"] - ds["splits"]["test"]["per_class"]["space"]


def test_score_refuses_a_folder_without_class_folders(smoke, tmp_path, capsys):
    (tmp_path / "x" / "holiday").mkdir(parents=True)
    (tmp_path / "x" / "holiday" / "a.jpg").write_bytes(b"x")
    assert run.main(args(smoke, "score", "--folder", str(tmp_path / "x"))) == 2
    assert "no recognisable class folders" in capsys.readouterr().err


def test_unknown_dataset_or_resolution_lists_the_valid_ones(smoke, capsys):
    assert run.main(args(smoke, "train", "--resolution", "64")) == 2
    assert "valid resolutions: 32" in capsys.readouterr().err
    assert run.main(args(smoke, "train", "--dataset", "mnist")) == 2
    assert "valid datasets: asl_alphabet, synthetic_asl_alphabet, asl_photos" in capsys.readouterr().err
    with pytest.raises(ValueError, match="model resolution 16"):
        dataclasses.replace(SMOKE, train_resolutions=(16,))


def test_finetune_mode_through_the_runner(smoke):
    """Fine-tuning block 5 (full VGG16, 32 px, one dataset, one epoch): trained, saved, scored
    from features of its own backbone."""
    ft = dataclasses.replace(SMOKE, train=dataclasses.replace(SMOKE.train, finetune=True, epochs=1)).restricted(["asl_photos"])
    ctx = context(smoke, ft)
    ctx.out_dir = smoke / "out-finetune"
    ctx.out_dir.mkdir()
    for name in ("datasets.json", "weights.json"):
        (ctx.out_dir / name).write_text((smoke / "out" / name).read_text())
    assert features.units(ctx) == []
    train.run_stage(ctx)
    d = train.model_dir(ctx, "asl_photos", 32, 0)
    rec = json.loads((d / "unit.json").read_text())
    assert rec["spec"]["kind"] == "finetune" and (d / "block5.npz").is_file()
    assert rec["backbone_sha256"] != ctx.weights_record["converted_sha256"]
    rows = evaluate.run_stage(ctx)
    assert {(r["eval_dataset"], r["eval_res"]) for r in rows} == {("asl_photos", 32), ("asl_photos", 16)}
    assert features.unit_dir(ctx, "asl_photos", "test", 32, 16, weights=rec["backbone_sha256"]).is_dir()


def test_ablation_deals_the_same_images_at_random_into_splits_of_the_same_sizes(smoke):
    ctx = context(smoke)
    parts, _ = train.random_split(ctx, "asl_alphabet+random", 32)
    block = {s: features.load(ctx, "asl_alphabet", s, 32, 32) for s in ("train", "validation", "test")}
    assert {s: len(parts[s][1]) for s in parts} == {s: len(block[s][1]) for s in block}
    pooled = np.concatenate([block[s][0] for s in block])
    dealt = np.concatenate([parts[s][0] for s in parts])
    assert sorted(map(bytes, pooled)) == sorted(map(bytes, dealt))  # a permutation of the same rows
    assert not np.array_equal(parts["test"][0], block["test"][0])


def test_report_writes_every_table_and_figure_from_the_results(smoke):
    paper = smoke / "paper"
    for name in ("training_curves", "accuracy_vs_resolution", "cross_domain_heatmap", "per_letter_f1", "cross_domain_confusions"):
        for ext in ("png", "pdf"):
            assert (paper / "figures" / f"{name}.{ext}").stat().st_size > 1000, name
    assert (paper / "tables" / "comparison.tex").read_text().count(r"\\") >= 4
    md = (smoke / "out" / "table.md").read_text()
    assert "asl_alphabet@32" in md and "Leakage ablation" in md
    text = (paper / "paper.md").read_text()
    assert "{" not in text  # every placeholder filled
    # Every decimal number in the paper is one that a result file holds.
    results = "".join(p.read_text() for p in (smoke / "out").glob("*.*") if p.suffix in (".json", ".csv"))
    numbers = set(re.findall(r"(?<![\w.])\d+\.\d+", text))
    assert numbers
    missing = [n for n in numbers if n not in results and f"{float(n):.4f}" not in results and not _rounded_in(n, results)]
    assert missing == []


def _rounded_in(number: str, results: str) -> bool:
    """`number` (3 decimals) is a rounding of a value with more decimals in the results."""
    decimals = len(number.split(".")[1])
    return any(f"{float(v):.{decimals}f}" == number for v in re.findall(r"\d+\.\d+", results))


def test_report_on_partial_results_names_what_is_missing_and_writes_nothing(smoke, tmp_path, capsys):
    import shutil

    out = tmp_path / "out"
    shutil.copytree(smoke / "out", out)
    shutil.rmtree(out / "models" / "asl_photos@32")
    rows = (out / "table.csv").read_text().splitlines()
    (out / "table.csv").write_text("\n".join(r for r in rows if not r.startswith("asl_photos,")) + "\n")
    (out / "table.md").unlink()
    assert run.main(["report", "--preset", "smoke", "--out", str(out), "--paper-dir", str(tmp_path / "paper")]) == 2
    err = capsys.readouterr().err
    assert "model asl_photos@32 seed 0" in err and "table row asl_photos@32 on asl_alphabet at r=32" in err
    assert not (tmp_path / "paper").exists() and not (out / "table.md").exists()


def test_report_imports_no_jax():
    code = "import sys, study.report; assert 'jax' not in sys.modules, 'report imported jax'; " \
           "from study.datasets.labels import CANONICAL; assert study.report.CANONICAL == CANONICAL"
    subprocess.run([sys.executable, "-c", code], cwd=REPO, check=True)
