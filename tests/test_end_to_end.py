"""The study end to end on the smoke preset, run as a user does in a clone of the repository:
outputs, nothing tracked touched, no work twice, damaged artefacts redone and nothing else,
stale refusal, resume after a kill, two runs at once, the remedies and the image-level mode.
Every test here shares one smoke run (the `smoke` fixture) and is marked slow."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from conftest import REPO, git_status
from smoke import args, context, layout, outputs, read_table
from study import run
from study.core import store
from study.core.config import SMOKE
from study.core.errors import StaleResultError
from study.core.names import parse
from study.core.plan import Unit
from study.datasets import open_builder
from study.datasets.images import model_input
from study.extraction import extract
from study.network import weights
from study.stages import evaluate, features, train

pytestmark = pytest.mark.slow  # every test here uses the smoke run


def test_smoke_all_in_a_clone_leaves_git_status_clean(smoke):
    """The study of record (paper/, results/cpu/) is never touched by another preset."""
    assert git_status(smoke) == ""
    assert (smoke / "results" / "smoke" / "paper" / "paper.md").is_file()


def test_all_writes_models_evaluations_and_the_table(smoke):
    out = layout(smoke)["out"]
    rows = read_table(smoke)
    assert list(rows[0]) == store.TABLE_COLUMNS
    names = {"asl_alphabet", "synthetic_asl_alphabet", "asl_photos"}
    unions = {
        "asl_alphabet+synthetic_asl_alphabet+asl_photos",
        "asl_alphabet+synthetic_asl_alphabet",
        "asl_alphabet+asl_photos",
        "synthetic_asl_alphabet+asl_photos",
    }
    shots = {f"{a}+2shot({b})" for a in names for b in names if a != b}
    remedies = {f"{a}/{x}" for a in names for x in ("aug2", "ft5")}
    adapted = {f"{a}+{m}({b})" for a in names for b in names if a != b for m in ("std", "coral", "self")}
    crops = {f"{a}/{x}" for a in names for x in ("hand", "hand+landmarks")}
    # landmark models for the datasets with a hand found in training and validation images
    hands = {n: d["hands"]["splits"] for n, d in json.loads((out / "datasets.json").read_text())["datasets"].items()}
    with_hands = {n for n in names if all(hands[n][s]["found"] > 0 for s in ("train", "validation"))}
    landmarks = {f"{a}/{x}" for a in with_hands for x in ("landmarks", "landmarks/aug8")}
    assert {r["train_dataset"] for r in rows} == (
        names | unions | shots | remedies | adapted | crops | landmarks | {"asl_alphabet+random"}
    )
    assert {r["eval_dataset"] for r in rows} == names | {"asl_alphabet:kaggle_test", "asl_alphabet+random"}
    assert {r["eval_res"] for r in rows} == {"32", "16"} | ({"0"} if landmarks else set())
    # 3 + 4 + 6 + 6 models x (3 test splits + kaggle_test) x 2 degradations; each few-shot model on
    # its target's test splits (asl_alphabet's two, the others' one) x 2, and so each of the 3
    # adapted models of a pair; each landmark model on the 4 test sets at r = 0; the ablation's one row
    assert len(rows) == 19 * 4 * 2 + (2 * 2 + 4 * 1) * 2 * 4 + len(landmarks) * 4 + 1
    for r in rows:
        if "shot(" in r["train_dataset"] or parse(r["train_dataset"]).kind == "adapted":
            assert r["eval_dataset"].split(":")[0] == r["train_dataset"].split("(")[1].rstrip(")")
    # the few-shot draw is saved with the model: k images per label of the target's training split
    draw = json.loads((out / "models/asl_photos+2shot(asl_alphabet)@32/seed0/draw.json").read_text())
    assert draw["k"] == 2 and set(draw["per_label"].values()) == {2} and len(draw["files"]) == 2 * 29
    train_files = json.loads((out / "datasets.json").read_text())["datasets"]["asl_alphabet"]["splits"]["train"][
        "images"
    ]
    assert len(set(draw["files"])) == 58 < train_files
    # labels shared by all sources only: Lexset has no del or space
    e = json.loads((out / "eval/asl_alphabet+synthetic_asl_alphabet@32/seed0/asl_alphabet.test.r32.json").read_text())
    assert "del" not in e["labels"] and "space" not in e["labels"] and len(e["labels"]) == 27
    ablation = [r for r in rows if r["train_dataset"] == "asl_alphabet+random"]
    assert [(r["eval_dataset"], r["eval_res"]) for r in ablation] == [("asl_alphabet+random", "32")]
    for name in names:
        d = out / "models" / f"{name}@32" / "seed0"
        assert {"head.npz", "history.json", "curves.png", "unit.json"} <= {p.name for p in d.iterdir()}
        assert not (d / "checkpoint.npz").exists()
        h = json.loads((d / "history.json").read_text())["history"]
        assert [e["epoch"] for e in h] == [1, 2] and {
            "train_loss",
            "val_loss",
            "train_accuracy",
            "val_accuracy",
        } <= set(h[0])
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
    changed = [
        k
        for k in after
        if before.get(k) != after[k]
        and not k.endswith(
            (
                "table.csv",
                "separability.csv",
                "features.json",
                "features_finetuned.json",
                "datasets.json",
                "weights.json",
            )
        )
    ]
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
    proc = subprocess.Popen(
        [sys.executable, "-m", "study.run", *args(tmp_path)],
        cwd=REPO,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    deadline = time.time() + 120
    # Kill once a few feature units are done and the rest are not.
    features = tmp_path / "cache" / "features"  # the hands stage's units come first, elsewhere
    while time.time() < deadline and len(list(features.rglob("unit.json"))) < 5:
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    finished = {p.parent for p in features.rglob("unit.json")}
    assert 5 <= len(finished) < 14
    stamps = {p: (p / "feats.npy").stat().st_mtime_ns for p in finished}
    assert run.main(args(tmp_path)) == 0
    assert {p: (p / "feats.npy").stat().st_mtime_ns for p in finished} == stamps  # nothing redone
    assert read_table(tmp_path) == read_table(smoke)
    for p in layout(smoke)["cache"].rglob("feats.npy"):
        np.testing.assert_array_equal(np.load(p), np.load(tmp_path / "cache" / p.relative_to(layout(smoke)["cache"])))


def test_unknown_dataset_or_resolution_lists_the_valid_ones(smoke, capsys):
    assert run.main(args(smoke, "train", "--resolution", "64")) == 2
    assert "valid resolutions: 32" in capsys.readouterr().err
    assert run.main(args(smoke, "train", "--dataset", "mnist")) == 2
    assert "valid datasets: asl_alphabet, synthetic_asl_alphabet, asl_photos" in capsys.readouterr().err
    with pytest.raises(ValueError, match="model resolution 16"):
        dataclasses.replace(SMOKE, train_resolutions=(16,))


def test_finetune_mode_through_the_runner(smoke, tmp_path):
    """Fine-tuning block 5 (full VGG16, 32 px, one dataset, one epoch): trained, saved, scored
    from features of its own backbone."""
    ft = dataclasses.replace(SMOKE, train=dataclasses.replace(SMOKE.train, finetune=True, epochs=1)).restricted(
        ["asl_photos"]
    )
    ctx = context(smoke, ft)
    ctx.out_dir = tmp_path / "out-finetune"
    ctx.out_dir.mkdir()
    for name in ("datasets.json", "weights.json"):
        (ctx.out_dir / name).write_text((layout(smoke)["out"] / name).read_text())
    assert ctx.plan.feature_units == []
    train.run_stage(ctx)
    d = store.model_files(ctx, "asl_photos", 32, 0).root
    rec = json.loads((d / "unit.json").read_text())
    assert rec["spec"]["kind"] == "finetune" and (d / "block5.npz").is_file()
    assert rec["backbone_sha256"] != ctx.weights_record["converted_sha256"]
    with pytest.raises(
        FileNotFoundError, match=r"features of asl_photos/test.*python -m study.run features --preset smoke"
    ):
        evaluate.run_stage(ctx)  # the fine-tuned backbone's features are the features stage's
    features.run_finetuned(ctx)
    rows = evaluate.run_stage(ctx)
    assert {(r["eval_dataset"], r["eval_res"]) for r in rows} == {("asl_photos", 32), ("asl_photos", 16)}
    assert store.features_dir(ctx, Unit("asl_photos", "test", 32, 16, weights=rec["backbone_sha256"])).is_dir()
    # A damaged fine-tuned block is not a trained model: train redoes it.
    (d / "block5.npz").write_bytes(b"")
    train.run_stage(ctx)
    assert json.loads((d / "unit.json").read_text())["backbone_sha256"] == rec["backbone_sha256"]


def test_ablation_deals_the_same_images_at_random_into_splits_of_the_same_sizes(smoke):
    ctx = context(smoke)
    parts, _ = store.random_split(ctx, "asl_alphabet+random", 32)
    block = {s: store.load_features(ctx, Unit("asl_alphabet", s, 32, 32)) for s in ("train", "validation", "test")}
    assert {s: len(parts[s][1]) for s in parts} == {s: len(block[s][1]) for s in block}
    pooled = np.concatenate([block[s][0] for s in block])
    dealt = np.concatenate([parts[s][0] for s in parts])
    assert sorted(map(bytes, pooled)) == sorted(map(bytes, dealt))  # a permutation of the same rows
    assert not np.array_equal(parts["test"][0], block["test"][0])


def _markers(tmp: Path) -> dict[str, int]:
    """mtime of every unit marker (features, models, evaluations, report) of a run."""
    p = layout(tmp)
    found = list(p["cache"].rglob("unit.json")) + list((p["out"] / "models").rglob("unit.json"))
    found += list((p["out"] / "eval").rglob("*.json")) + [p["out"] / "report.json"]
    found += list((p["out"] / "gradcam").rglob("*.json"))
    return {str(f.relative_to(tmp)): f.stat().st_mtime_ns for f in found}


@pytest.mark.parametrize("kind", ["features", "maps", "head", "evaluation", "evaluation marker", "figure", "grad-cam"])
def test_a_damaged_artefact_is_redone_and_nothing_else(smoke, kind):
    """A marker whose files are missing or changed is not done: the next run redoes exactly
    that unit (its outputs come back identical: the computation is deterministic)."""
    p = layout(smoke)
    ctx = context(smoke)
    victim, marker = {
        "features": lambda: (
            store.features_dir(ctx, Unit("asl_photos", "test", 32, 16)) / "feats.npy",
            store.features_dir(ctx, Unit("asl_photos", "test", 32, 16)) / "unit.json",
        ),
        "maps": lambda: (
            store.features_dir(ctx, Unit("asl_photos", "test", 32, 16)) / "maps.npy",
            store.features_dir(ctx, Unit("asl_photos", "test", 32, 16)) / "unit.json",
        ),
        "grad-cam": lambda: (
            p["out"] / "gradcam/asl_photos-ft5@32/asl_alphabet.png",
            p["out"] / "gradcam/asl_photos-ft5@32/asl_alphabet.json",
        ),
        "head": lambda: (
            store.model_files(ctx, "asl_photos", 32, 0).root / "head.npz",
            store.model_files(ctx, "asl_photos", 32, 0).root / "unit.json",
        ),
        "evaluation": lambda: (
            p["out"] / "eval/asl_photos@32/seed0/asl_alphabet.test.r16.txt",
            p["out"] / "eval/asl_photos@32/seed0/asl_alphabet.test.r16.json",
        ),
        "evaluation marker": lambda: (p["out"] / "eval/asl_photos@32/seed0/asl_alphabet.test.r16.json",) * 2,
        "figure": lambda: (p["paper"] / "figures" / "per_letter_f1.png", p["out"] / "report.json"),
    }[kind]()
    original = victim.read_bytes()
    before = _markers(smoke)
    if kind == "head":
        victim.write_bytes(original[:-10] + b"0123456789")  # same size, other bytes
    elif kind == "evaluation marker":
        victim.write_bytes(b"\x00garbage")  # a marker that is not JSON: named, and its unit redone
    else:
        victim.unlink()
    assert run.main(args(smoke)) == 0
    after = _markers(smoke)
    redone = sorted(k for k in after if after[k] != before.get(k))
    # A retrained head is identical, but its history records new epoch times, which the
    # report's training-curves figure reads: the report follows.
    downstream = [str((p["out"] / "report.json").relative_to(smoke))] if kind == "head" else []
    assert redone == sorted([str(marker.relative_to(smoke))] + downstream)
    if kind not in (
        "figure",
        "grad-cam",
    ):  # a PNG carries no timestamp, but matplotlib's output is not promised identical
        assert victim.read_bytes() == original
    assert git_status(smoke) == ""


def test_a_missing_input_names_the_file_and_the_command_that_makes_it(smoke, tmp_path, capsys):
    work = tmp_path / "copy"
    p = layout(smoke)
    shutil.copytree(p["out"], work / "out")
    shutil.copytree(p["cache"], work / "cache")
    cmd = [
        "--preset",
        "smoke",
        "--data-dir",
        str(p["data"]),
        "--out",
        str(work / "out"),
        "--tfds-dir",
        str(p["tfds"]),
        "--cache-dir",
        str(work / "cache"),
        "--weights-dir",
        str(p["weights"]),
        "--paper-dir",
        str(work / "paper"),
    ]
    ctx = context(smoke)
    ctx.out_dir, ctx.cache_dir = work / "out", work / "cache"
    head = store.model_files(ctx, "asl_photos", 32, 0).root / "head.npz"
    head.unlink()
    capsys.readouterr()
    assert run.main(["evaluate", *cmd, "--force"]) == 2
    err = capsys.readouterr().err
    assert str(head) in err and f"python -m study.run train --preset smoke --out {work / 'out'}" in err
    feats = store.features_dir(ctx, Unit("asl_alphabet", "train", 32, 32)) / "feats.npy"
    feats.unlink()
    assert run.main(["train", *cmd]) == 2
    err = capsys.readouterr().err
    assert str(feats) in err and "python -m study.run features --preset smoke" in err


def test_two_runs_at_once_never_collide(smoke, tmp_path):
    """A second run on the same results folder stops at once and names the first; a run that
    shares only the prepared datasets waits for them; the first run's results are whole."""
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    first = subprocess.Popen(
        [sys.executable, "-m", "study.run", *args(tmp_path)],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    holder = layout(tmp_path)["out"] / ".run.lock.holder"
    deadline = time.time() + 60
    while time.time() < deadline and not holder.exists():
        time.sleep(0.05)
    other = args(tmp_path, "prepare")
    other[other.index("--out") + 1] = str(tmp_path / "out-other")
    third = subprocess.Popen(
        [sys.executable, "-m", "study.run", *other],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    second = subprocess.run(
        [sys.executable, "-m", "study.run", *args(tmp_path)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    third_out, _ = third.communicate(timeout=300)
    out, _ = first.communicate(timeout=600)
    assert first.returncode == 0, out[-3000:]
    assert second.returncode == 2
    assert f"is in use by run {first.pid}" in second.stderr and "study.run all --preset smoke" in second.stderr
    assert third.returncode == 0, third_out[-3000:]
    a = json.loads((layout(tmp_path)["out"] / "datasets.json").read_text())["datasets"]
    b = json.loads((tmp_path / "out-other" / "datasets.json").read_text())["datasets"]
    assert {n: {k: v for k, v in d.items() if k != "hands"} for n, d in a.items()} == b  # prepare alone finds no hands
    assert read_table(tmp_path) == read_table(smoke)
    assert not holder.exists()


def test_remedies_augmented_views_and_block5_fine_tuned_on_cached_maps(smoke):
    """The remedies through the runner: augmented views are features units of their own, drawn
    per image; the features pass keeps block-4 maps at the block-5 resolutions, and block 5 on
    them gives back the features; a fine-tuned block 5 is trained from the frozen model's head,
    saved, and scored from features of its own block 5, computed from the cached maps."""
    from study.datasets import augment
    from study.network.model import Block5

    ctx = context(smoke)
    x, y, _ = store.load_features(ctx, Unit("asl_photos", "train", 32, 32))
    maps, labels = store.load_maps(ctx, Unit("asl_photos", "train", 32, 32))
    assert maps.shape == (len(y), 2, 2, 512) and np.array_equal(labels, y)
    backbone = weights.imagenet_backbone(weights.prepared(ctx))
    np.testing.assert_allclose(np.asarray(Block5.of(backbone)(np.asarray(maps[:16]))), x[:16], rtol=1e-4, atol=1e-5)
    # Augmented views: units of their own, each image's view drawn from (seed, view, index).
    views = [store.load_features(ctx, Unit("asl_photos", "train", 32, 32, view=v))[0] for v in (1, 2)]
    assert all(v.shape == x.shape and not np.allclose(v, x) for v in views) and not np.allclose(*views)
    src = open_builder(ctx, "asl_photos").as_data_source()["train"]
    idx = np.array([3, 7])
    imgs = np.stack([model_input(src[int(i)]["image"], 32, 32) for i in idx])
    again = extract.Extractor(weights.prepared(ctx), 16)(augment.view(imgs, idx, 2, SMOKE.augment, store.AUGMENT_SEED))
    np.testing.assert_allclose(again, views[1][idx], rtol=1e-3, atol=1e-3)
    # Block 5 fine-tuned: from the frozen model's head, saved, its own backbone, scored from maps.
    d = store.model_files(ctx, "asl_photos/ft5", 32, 0).root
    rec = json.loads((d / "unit.json").read_text())
    assert (
        rec["spec"]["kind"] == "block5"
        and rec["spec"]["baseline"] == store.model_record(ctx, "asl_photos", 32, 0)["fingerprint"]
    )
    assert (d / "block5.npz").is_file() and rec["backbone_sha256"] != ctx.weights_record["converted_sha256"]
    unit = store.features_dir(ctx, Unit("asl_alphabet", "test", 32, 16, weights=rec["backbone_sha256"]))
    assert json.loads((unit / "unit.json").read_text())["from_maps"] is True
    tuned = Block5.of(backbone)
    for conv, (k, b) in zip(tuned.convs, store.block5_arrays(ctx, "asl_photos/ft5", 32, 0).values()):
        conv.kernel[...], conv.bias[...] = k, b
    test_maps, _ = store.load_maps(ctx, Unit("asl_alphabet", "test", 32, 16))
    np.testing.assert_allclose(
        np.asarray(tuned(np.asarray(test_maps[:8]))), np.load(unit / "feats.npy")[:8], rtol=1e-4, atol=1e-5
    )
    # Grad-CAM of every model but the few-shot ones, the ablation and those on landmarks, on every
    # test split: the hand-crop models on its crops.
    cams = sorted(p.parent.name for p in (layout(smoke)["out"] / "gradcam").glob("*/asl_photos.json"))
    assert (
        len(cams) == 16
        and "asl_photos-hand@32" in cams
        and "asl_photos-ft5@32" in cams
        and not any("shot(" in c or "random" in c for c in cams)
    )
    g = json.loads((layout(smoke)["out"] / "gradcam/asl_photos-ft5@32/asl_alphabet.json").read_text())
    assert np.array(g["cams"]).shape == (len(g["true"]), 2, 2) and 0 <= np.min(g["cams"]) and np.max(g["cams"]) <= 1
    assert g["in_domain"] is False and len(g["images"]) == len(g["pred"]) == len(g["true"])
