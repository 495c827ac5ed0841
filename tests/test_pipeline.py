"""The runner end to end on the smoke preset, run as a user does in a clone of the repository:
outputs, nothing tracked touched, no work twice, damaged artefacts redone and nothing else,
stale refusal, resume after a kill, two runs at once, and sharded features equal to
single-device ones."""

from __future__ import annotations

import csv
import dataclasses
import re
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

from conftest import REPO, clone, git_status, in_clone
from study import evaluate, features, run, store, train
from study.config import SMOKE
from study.context import Context
from study.datasets.images import model_input
from study.units import StaleResultError

# Where a run puts things: the defaults inside a clone (`in_clone`), or folders of a temporary
# directory named by options (`in_tmp`).
LAYOUT_CLONE = {"data": "data/smoke", "out": "results/smoke", "tfds": "data/tfds", "cache": "data/cache",
                "weights": "data/weights", "paper": "results/smoke/paper"}
LAYOUT_TMP = {"data": "data", "out": "out", "tfds": "tfds", "cache": "cache", "weights": "weights", "paper": "paper"}


def layout(tmp: Path) -> dict[str, Path]:
    return {k: tmp / v for k, v in (LAYOUT_CLONE if (tmp / ".git").exists() else LAYOUT_TMP).items()}


def args(tmp: Path, stage: str = "all", *extra: str) -> list[str]:
    p = layout(tmp)
    return [stage, "--preset", "smoke", "--data-dir", str(p["data"]), "--out", str(p["out"]),
            "--tfds-dir", str(p["tfds"]), "--cache-dir", str(p["cache"]),
            "--weights-dir", str(p["weights"]), "--paper-dir", str(p["paper"]), *extra]


def context(tmp: Path, preset=SMOKE, force=False) -> Context:
    p = layout(tmp)
    return Context(preset, p["data"], p["out"], p["tfds"], p["cache"], p["weights"], force, lambda s: None)


def outputs(tmp: Path) -> dict[str, int]:
    p = layout(tmp)
    return {str(f.relative_to(tmp)): f.stat().st_mtime_ns for d in ("out", "cache") for f in p[d].rglob("*") if f.is_file()}


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    """`python -m study.run all --preset smoke`, as the README says, in a fresh clone."""
    repo = clone(tmp_path_factory.mktemp("pipeline") / "repo")
    proc = in_clone(repo, "all", "--preset", "smoke")
    assert proc.returncode == 0, proc.stderr[-3000:]
    return repo


def test_smoke_all_in_a_clone_leaves_git_status_clean(smoke):
    """The study of record (paper/, results/cpu/) is never touched by another preset."""
    assert git_status(smoke) == ""
    assert (smoke / "results" / "smoke" / "paper" / "paper.md").is_file()


def read_table(tmp: Path) -> list[dict]:
    with open(layout(tmp)["out"] / "table.csv") as f:
        return list(csv.DictReader(f))


def test_all_writes_models_evaluations_and_the_table(smoke):
    out = layout(smoke)["out"]
    rows = read_table(smoke)
    assert list(rows[0]) == evaluate.TABLE_COLUMNS
    names = {"asl_alphabet", "synthetic_asl_alphabet", "asl_photos"}
    unions = {"asl_alphabet+synthetic_asl_alphabet+asl_photos", "asl_alphabet+synthetic_asl_alphabet",
              "asl_alphabet+asl_photos", "synthetic_asl_alphabet+asl_photos"}
    shots = {f"{a}+2shot({b})" for a in names for b in names if a != b}
    remedies = {f"{a}/{x}" for a in names for x in ("aug2", "ft5")}
    assert {r["train_dataset"] for r in rows} == names | unions | shots | remedies | {"asl_alphabet+random"}
    assert {r["eval_dataset"] for r in rows} == names | {"asl_alphabet:kaggle_test", "asl_alphabet+random"}
    assert {r["eval_res"] for r in rows} == {"32", "16"}
    # 3 + 4 + 6 models x (3 test splits + kaggle_test) x 2 degradations; each few-shot model on
    # its target's test splits (asl_alphabet's two, the others' one) x 2; the ablation's one row
    assert len(rows) == 13 * 4 * 2 + (2 * 2 + 4 * 1) * 2 + 1
    for r in rows:
        if "shot(" in r["train_dataset"]:
            assert r["eval_dataset"].split(":")[0] == r["train_dataset"].split("(")[1].rstrip(")")
    # the few-shot draw is saved with the model: k images per label of the target's training split
    draw = json.loads((out / "models/asl_photos+2shot(asl_alphabet)@32/seed0/draw.json").read_text())
    assert draw["k"] == 2 and set(draw["per_label"].values()) == {2} and len(draw["files"]) == 2 * 29
    train_files = json.loads((out / "datasets.json").read_text())["datasets"]["asl_alphabet"]["splits"]["train"]["images"]
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
    changed = [k for k in after if before.get(k) != after[k] and not k.endswith(("table.csv", "separability.csv", "features.json", "features_finetuned.json", "datasets.json", "weights.json"))]
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
    for p in layout(smoke)["cache"].rglob("feats.npy"):
        np.testing.assert_array_equal(np.load(p), np.load(tmp_path / "cache" / p.relative_to(layout(smoke)["cache"])))


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
    x = np.stack([model_input(src[i]["image"], 32, 32) for i in range(40)])  # 40: a padded last batch
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
    cached = np.load(store.features_dir(ctx, "asl_alphabet", "test", 32, 32) / "feats.npy")
    labels = np.load(store.features_dir(ctx, "asl_alphabet", "test", 32, 32) / "labels.npy")
    assert np.abs(cached[:40] - one).max() / scale < 1e-5
    assert list(labels[:40]) == [src[i]["label"] for i in range(40)]


def _awkward_photos(photos: Path, outside: Path) -> dict[str, str]:
    """What a user's folder holds besides clean JPEGs: path -> "ok" or the reason it is skipped."""
    import io

    from PIL import Image

    from test_images import huge_png_header

    def save(rel: str, im: Image.Image, fmt: str, **kw) -> None:
        buf = io.BytesIO()
        im.save(buf, format=fmt, **kw)
        (photos / rel).write_bytes(buf.getvalue())

    rng = np.random.default_rng(11)
    noise = Image.fromarray((rng.random((48, 64, 3)) * 255).astype(np.uint8))
    save("B/rgba.png", noise.convert("RGBA"), "PNG")
    save("C/cmyk.jpg", noise.convert("CMYK"), "JPEG")
    save("E/palette.gif", noise.convert("P"), "GIF")
    save("F/tiny.jpg", noise.resize((1, 1)), "JPEG")
    save("G/camera.jpg", Image.new("RGB", (6000, 4000), (120, 90, 60)), "JPEG")
    phone = noise.resize((400, 300))
    exif = phone.getexif()
    exif[0x0112] = 6
    save("H/phone.jpg", phone, "JPEG", exif=exif)
    (photos / "K" / "huge.png").write_bytes(huge_png_header(15000, 15000))
    (photos / "L" / "empty.jpg").write_bytes(b"")
    (photos / "M" / "notes.txt").write_text("not a photo")
    outside.write_bytes((photos / "A" / "A0.jpg").read_bytes())
    (photos / "N" / "link.jpg").symlink_to(outside)
    (photos / "holiday").mkdir()
    (photos / "holiday" / "beach.jpg").write_bytes((photos / "A" / "A0.jpg").read_bytes())
    return {"B/rgba.png": "ok", "C/cmyk.jpg": "ok", "E/palette.gif": "ok", "F/tiny.jpg": "ok", "G/camera.jpg": "ok",
            "H/phone.jpg": "ok", "K/huge.png": "image too large to decode safely", "L/empty.jpg": "empty file",
            "M/notes.txt": "not an image file", "N/link.jpg": "link to a file outside the folder (not read)",
            "holiday/": "unknown class folder"}


def test_score_a_folder_of_own_photos(smoke, tmp_path, capsys):
    from study.datasets import fake

    photos = tmp_path / "My Photos"
    fake.write_asl_folder(photos, split_dir=None, per_class=2, seed=7)
    expected = _awkward_photos(photos, tmp_path / "private.jpg")
    capsys.readouterr()
    assert run.main(args(smoke, "score", "--folder", str(photos))) == 0
    printed = capsys.readouterr().out
    out = layout(smoke)["out"] / "score" / "my_photos"
    rows = list(csv.DictReader(open(out / "table.csv")))
    # every model but the few-shot ones and the ablation, which belong to the study's datasets
    singles = {"asl_alphabet", "synthetic_asl_alphabet", "asl_photos"}
    assert {r["train_dataset"] for r in rows} == singles | {
        "asl_alphabet+synthetic_asl_alphabet+asl_photos", "asl_alphabet+synthetic_asl_alphabet", "asl_alphabet+asl_photos",
        "synthetic_asl_alphabet+asl_photos"} | {f"{d}/{x}" for d in singles for x in ("aug2", "ft5")}
    assert {r["eval_dataset"] for r in rows} == {"my_photos"} and {r["eval_res"] for r in rows} == {"32", "16"}
    ds = json.loads((out / "dataset.json").read_text())
    ok = sum(v == "ok" for v in expected.values())
    # + the planted frameless image (scoring needs no frames) and the decodable awkward ones
    assert ds["splits"]["test"]["images"] == 29 * 2 + 1 + ok
    skipped = {s["path"]: s["reason"] for s in ds["skipped"]}
    for path, reason in expected.items():
        if reason != "ok":
            assert skipped[path].startswith(reason), (path, skipped.get(path))
    assert ds["accounting"]["archive_files"] == ds["accounting"]["in_splits"] + ds["accounting"]["skipped_files"]
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


def test_finetune_mode_through_the_runner(smoke, tmp_path):
    """Fine-tuning block 5 (full VGG16, 32 px, one dataset, one epoch): trained, saved, scored
    from features of its own backbone."""
    ft = dataclasses.replace(SMOKE, train=dataclasses.replace(SMOKE.train, finetune=True, epochs=1)).restricted(["asl_photos"])
    ctx = context(smoke, ft)
    ctx.out_dir = tmp_path / "out-finetune"
    ctx.out_dir.mkdir()
    for name in ("datasets.json", "weights.json"):
        (ctx.out_dir / name).write_text((layout(smoke)["out"] / name).read_text())
    assert features.units(ctx) == []
    train.run_stage(ctx)
    d = store.model_dir(ctx, "asl_photos", 32, 0)
    rec = json.loads((d / "unit.json").read_text())
    assert rec["spec"]["kind"] == "finetune" and (d / "block5.npz").is_file()
    assert rec["backbone_sha256"] != ctx.weights_record["converted_sha256"]
    with pytest.raises(FileNotFoundError, match=r"features of asl_photos/test.*python -m study.run features --preset smoke"):
        evaluate.run_stage(ctx)  # the fine-tuned backbone's features are the features stage's
    features.run_stage(ctx, features.finetuned_units(ctx))
    rows = evaluate.run_stage(ctx)
    assert {(r["eval_dataset"], r["eval_res"]) for r in rows} == {("asl_photos", 32), ("asl_photos", 16)}
    assert store.features_dir(ctx, "asl_photos", "test", 32, 16, weights=rec["backbone_sha256"]).is_dir()
    # A damaged fine-tuned block is not a trained model: train redoes it.
    (d / "block5.npz").write_bytes(b"")
    train.run_stage(ctx)
    assert json.loads((d / "unit.json").read_text())["backbone_sha256"] == rec["backbone_sha256"]


def test_ablation_deals_the_same_images_at_random_into_splits_of_the_same_sizes(smoke):
    ctx = context(smoke)
    parts, _ = store.random_split(ctx, "asl_alphabet+random", 32)
    block = {s: store.load_features(ctx, "asl_alphabet", s, 32, 32) for s in ("train", "validation", "test")}
    assert {s: len(parts[s][1]) for s in parts} == {s: len(block[s][1]) for s in block}
    pooled = np.concatenate([block[s][0] for s in block])
    dealt = np.concatenate([parts[s][0] for s in parts])
    assert sorted(map(bytes, pooled)) == sorted(map(bytes, dealt))  # a permutation of the same rows
    assert not np.array_equal(parts["test"][0], block["test"][0])


def test_report_writes_every_table_and_figure_from_the_results(smoke):
    paper = layout(smoke)["paper"]
    for name in ("training_curves", "accuracy_vs_resolution", "cross_domain_heatmap", "per_letter_f1", "cross_domain_confusions",
                 "few_shot", "effects", "gradcam"):
        for ext in ("png", "pdf"):
            assert (paper / "figures" / f"{name}.{ext}").stat().st_size > 1000, name
    assert (paper / "tables" / "comparison.tex").read_text().count(r"\\") >= 4
    md = (layout(smoke)["out"] / "table.md").read_text()
    assert "asl_alphabet@32" in md and "Leakage ablation" in md
    text = (paper / "paper.md").read_text()
    assert "{" not in text  # every placeholder filled
    assert "from asl_photos@32 to asl_alphabet:" in text and "figures/few_shot.png" in text  # the remedies
    for question in ("Does the transfer fail, and how badly?", "What recovers it?", "What does downsizing the pixels do?",
                     "The largest effects", "All effects, ranked"):
        assert question in text, question
    effects = json.loads((layout(smoke)["out"] / "paper_numbers.json").read_text())["effects"]
    ranked = [e for e in effects if e["verdict"] != "no clear difference"]
    assert ranked == effects[: len(ranked)] and [abs(e["difference"]) for e in ranked] == sorted((abs(e["difference"]) for e in ranked), reverse=True)
    for e in effects:  # the verdict is the interval's
        assert e["ci"][0] <= e["difference"] <= e["ci"][1]
        assert e["verdict"] == ("higher" if e["ci"][0] > 0 else "lower" if e["ci"][1] < 0 else "no clear difference")
    # Every decimal number in the paper is one that a result file holds.
    results = "".join(p.read_text() for p in layout(smoke)["out"].glob("*.*") if p.suffix in (".json", ".csv"))
    numbers = set(re.findall(r"(?<![\w.])\d+\.\d+", text))
    assert numbers
    missing = [n for n in numbers if n not in results and f"{float(n):.4f}" not in results and not _rounded_in(n, results)]
    assert missing == []


def _rounded_in(number: str, results: str) -> bool:
    """`number` (3 decimals) is a rounding of a value with more decimals in the results."""
    decimals = len(number.split(".")[1])
    return any(f"{float(v):.{decimals}f}" == number for v in re.findall(r"\d+\.\d+", results))


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


def test_report_imports_no_jax():
    code = "import sys, study.report; assert 'jax' not in sys.modules, 'report imported jax'; " \
           "from study.datasets.labels import CANONICAL; assert study.report.CANONICAL == CANONICAL"
    subprocess.run([sys.executable, "-c", code], cwd=REPO, check=True)


def _markers(tmp: Path) -> dict[str, int]:
    """mtime of every unit marker (features, models, evaluations, report) of a run."""
    p = layout(tmp)
    found = list(p["cache"].rglob("unit.json")) + list((p["out"] / "models").rglob("unit.json"))
    found += list((p["out"] / "eval").rglob("*.json")) + [p["out"] / "report.json"]
    found += list((p["out"] / "gradcam").rglob("*.json"))
    return {str(f.relative_to(tmp)): f.stat().st_mtime_ns for f in found}


@pytest.mark.parametrize("kind", ["features", "maps", "head", "evaluation", "figure", "grad-cam"])
def test_a_damaged_artefact_is_redone_and_nothing_else(smoke, kind):
    """A marker whose files are missing or changed is not done: the next run redoes exactly
    that unit (its outputs come back identical: the computation is deterministic)."""
    p = layout(smoke)
    ctx = context(smoke)
    victim, marker = {
        "features": lambda: (store.features_dir(ctx, "asl_photos", "test", 32, 16) / "feats.npy",
                             store.features_dir(ctx, "asl_photos", "test", 32, 16) / "unit.json"),
        "maps": lambda: (store.features_dir(ctx, "asl_photos", "test", 32, 16) / "maps.npy",
                         store.features_dir(ctx, "asl_photos", "test", 32, 16) / "unit.json"),
        "grad-cam": lambda: (p["out"] / "gradcam/asl_photos-ft5@32/asl_alphabet.png", p["out"] / "gradcam/asl_photos-ft5@32/asl_alphabet.json"),
        "head": lambda: (store.model_dir(ctx, "asl_photos", 32, 0) / "head.npz", store.model_dir(ctx, "asl_photos", 32, 0) / "unit.json"),
        "evaluation": lambda: (p["out"] / "eval/asl_photos@32/seed0/asl_alphabet.test.r16.txt",
                               p["out"] / "eval/asl_photos@32/seed0/asl_alphabet.test.r16.json"),
        "figure": lambda: (p["paper"] / "figures" / "per_letter_f1.png", p["out"] / "report.json"),
    }[kind]()
    original = victim.read_bytes()
    before = _markers(smoke)
    if kind == "head":
        victim.write_bytes(original[:-10] + b"0123456789")  # same size, other bytes
    else:
        victim.unlink()
    assert run.main(args(smoke)) == 0
    after = _markers(smoke)
    redone = sorted(k for k in after if after[k] != before.get(k))
    # A retrained head is identical, but its history records new epoch times, which the
    # report's training-curves figure reads: the report follows.
    downstream = [str((p["out"] / "report.json").relative_to(smoke))] if kind == "head" else []
    assert redone == sorted([str(marker.relative_to(smoke))] + downstream)
    if kind not in ("figure", "grad-cam"):  # a PNG carries no timestamp, but matplotlib's output is not promised identical
        assert victim.read_bytes() == original
    assert git_status(smoke) == ""


def test_a_missing_input_names_the_file_and_the_command_that_makes_it(smoke, tmp_path, capsys):
    work = tmp_path / "copy"
    p = layout(smoke)
    shutil.copytree(p["out"], work / "out")
    shutil.copytree(p["cache"], work / "cache")
    cmd = ["--preset", "smoke", "--data-dir", str(p["data"]), "--out", str(work / "out"), "--tfds-dir", str(p["tfds"]),
           "--cache-dir", str(work / "cache"), "--weights-dir", str(p["weights"]), "--paper-dir", str(work / "paper")]
    ctx = context(smoke)
    ctx.out_dir, ctx.cache_dir = work / "out", work / "cache"
    head = store.model_dir(ctx, "asl_photos", 32, 0) / "head.npz"
    head.unlink()
    capsys.readouterr()
    assert run.main(["evaluate", *cmd, "--force"]) == 2
    err = capsys.readouterr().err
    assert str(head) in err and f"python -m study.run train --preset smoke --out {work / 'out'}" in err
    feats = store.features_dir(ctx, "asl_alphabet", "train", 32, 32) / "feats.npy"
    feats.unlink()
    assert run.main(["train", *cmd]) == 2
    err = capsys.readouterr().err
    assert str(feats) in err and "python -m study.run features --preset smoke" in err


def test_domain_separability_is_balanced_leak_free_and_in_the_report(smoke):
    from study.report import read_separability
    from study.separability import balanced

    rows = read_separability(layout(smoke)["out"] / "separability.csv")
    assert {(r["dataset_a"], r["dataset_b"]) for r in rows} == {
        ("asl_alphabet", "synthetic_asl_alphabet"), ("asl_alphabet", "asl_photos"), ("synthetic_asl_alphabet", "asl_photos")}
    assert {(r["R"], r["r"]) for r in rows} == {(32, 32), (32, 16)}
    for r in rows:
        assert r["n_test"] % 2 == 0 and r["n_train"] % 2 == 0  # as many images from each side
        assert 0 <= r["accuracy_ci_low"] <= r["accuracy"] <= r["accuracy_ci_high"] <= 1
    y_a, y_b = np.array([0, 0, 0, 1, 2, 2]), np.array([0, 1, 1, 1, 3])
    ia, ib = balanced(y_a, y_b, [0, 1], seed=0)
    assert sorted(y_a[ia]) == sorted(y_b[ib]) == [0, 1]
    assert "Domain separability" in (layout(smoke)["out"] / "table.md").read_text()
    assert "tells the datasets' test images apart" in (layout(smoke)["paper"] / "paper.md").read_text()


def test_two_runs_at_once_never_collide(smoke, tmp_path):
    """A second run on the same results folder stops at once and names the first; a run that
    shares only the prepared datasets waits for them; the first run's results are whole."""
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    first = subprocess.Popen([sys.executable, "-m", "study.run", *args(tmp_path)], cwd=REPO, env=env,
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    holder = layout(tmp_path)["out"] / ".run.lock.holder"
    deadline = time.time() + 60
    while time.time() < deadline and not holder.exists():
        time.sleep(0.05)
    other = args(tmp_path, "prepare")
    other[other.index("--out") + 1] = str(tmp_path / "out-other")
    third = subprocess.Popen([sys.executable, "-m", "study.run", *other], cwd=REPO, env=env,
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    second = subprocess.run([sys.executable, "-m", "study.run", *args(tmp_path)], cwd=REPO, env=env,
                            capture_output=True, text=True, timeout=120)
    third_out, _ = third.communicate(timeout=300)
    out, _ = first.communicate(timeout=600)
    assert first.returncode == 0, out[-3000:]
    assert second.returncode == 2
    assert f"is in use by run {first.pid}" in second.stderr and "study.run all --preset smoke" in second.stderr
    assert third.returncode == 0, third_out[-3000:]
    a = json.loads((layout(tmp_path)["out"] / "datasets.json").read_text())["datasets"]
    b = json.loads((tmp_path / "out-other" / "datasets.json").read_text())["datasets"]
    assert a == b
    assert read_table(tmp_path) == read_table(smoke)
    assert not holder.exists()


def test_only_the_record_preset_writes_the_paper_of_record(tmp_path):
    from study.config import RECORD

    def paper(*argv):
        a = run.parser().parse_args(["report", *argv])
        return run.paper_dir(run._context(a), a)

    assert paper() == Path("paper") and RECORD == "cpu"
    assert paper("--preset", "cpu") == Path("paper")
    assert paper("--preset", "cpu", "--out", str(tmp_path)) == tmp_path / "paper"
    assert paper("--preset", "smoke") == Path("results/smoke/paper")
    assert paper("--preset", "paper") == Path("results/paper/paper")
    assert paper("--preset", "smoke", "--paper-dir", str(tmp_path / "p")) == tmp_path / "p"


def test_remedies_augmented_views_and_block5_fine_tuned_on_cached_maps(smoke):
    """The remedies through the runner: augmented views are features units of their own, drawn
    per image; the features pass keeps block-4 maps at the block-5 resolutions, and block 5 on
    them gives back the features; a fine-tuned block 5 is trained from the frozen model's head,
    saved, and scored from features of its own block 5, computed from the cached maps."""
    from flax import nnx

    from study import augment, weights
    from study.model import Block5, VGG16Backbone

    ctx = context(smoke)
    x, y, _ = store.load_features(ctx, "asl_photos", "train", 32, 32)
    maps, labels = store.load_maps(ctx, "asl_photos", "train", 32)
    assert maps.shape == (len(y), 2, 2, 512) and np.array_equal(labels, y)
    backbone = weights.apply(nnx.eval_shape(lambda: VGG16Backbone(rngs=nnx.Rngs(0))), ctx.load_weights())
    np.testing.assert_allclose(np.asarray(Block5.of(backbone)(np.asarray(maps[:16]))), x[:16], rtol=1e-4, atol=1e-5)
    # Augmented views: units of their own, each image's view drawn from (seed, view, index).
    views = [store.load_features(ctx, "asl_photos", "train", 32, 32, view=v)[0] for v in (1, 2)]
    assert all(v.shape == x.shape and not np.allclose(v, x) for v in views) and not np.allclose(*views)
    src = ctx.builder("asl_photos").as_data_source()["train"]
    idx = np.array([3, 7])
    imgs = np.stack([model_input(src[int(i)]["image"], 32, 32) for i in idx])
    again = features.Extractor(ctx.load_weights(), 16)(augment.view(imgs, idx, 2, SMOKE.augment, store.AUGMENT_SEED))
    np.testing.assert_allclose(again, views[1][idx], rtol=1e-3, atol=1e-3)
    # Block 5 fine-tuned: from the frozen model's head, saved, its own backbone, scored from maps.
    d = store.model_dir(ctx, "asl_photos/ft5", 32, 0)
    rec = json.loads((d / "unit.json").read_text())
    assert rec["spec"]["kind"] == "block5" and rec["spec"]["baseline"] == store.model_record(ctx, "asl_photos", 32, 0)["fingerprint"]
    assert (d / "block5.npz").is_file() and rec["backbone_sha256"] != ctx.weights_record["converted_sha256"]
    unit = store.features_dir(ctx, "asl_alphabet", "test", 32, 16, weights=rec["backbone_sha256"])
    assert json.loads((unit / "unit.json").read_text())["from_maps"] is True
    tuned = Block5.of(backbone)
    for conv, (k, b) in zip(tuned.convs, store.block5_arrays(ctx, "asl_photos/ft5", 32, 0).values()):
        conv.kernel[...], conv.bias[...] = k, b
    test_maps, _ = store.load_maps(ctx, "asl_alphabet", "test", 32, 16)
    np.testing.assert_allclose(np.asarray(tuned(np.asarray(test_maps[:8]))), np.load(unit / "feats.npy")[:8], rtol=1e-4, atol=1e-5)
    # Grad-CAM of every model but the few-shot ones and the ablation, on every test split.
    cams = sorted(p.parent.name for p in (layout(smoke)["out"] / "gradcam").glob("*/asl_photos.json"))
    assert len(cams) == 13 and "asl_photos-ft5@32" in cams and not any("shot(" in c or "random" in c for c in cams)
    g = json.loads((layout(smoke)["out"] / "gradcam/asl_photos-ft5@32/asl_alphabet.json").read_text())
    assert np.array(g["cams"]).shape == (len(g["true"]), 2, 2) and 0 <= np.min(g["cams"]) and np.max(g["cams"]) <= 1
    assert g["in_domain"] is False and len(g["images"]) == len(g["pred"]) == len(g["true"])


def test_bench_times_every_path_against_the_matmul_rate(smoke, tmp_path, monkeypatch):
    """`bench` on the smoke preset (timings cut to one repeat): every plan, layer and path is
    there, the counts are VGG16's, and the table shows them."""
    from study import bench, conv

    monkeypatch.setattr(bench, "MATMUL_N", 256)
    monkeypatch.setattr(bench, "MIN_SECONDS", 0.0)
    monkeypatch.setattr(bench, "MIN_REPEATS", 1)
    ctx = context(smoke)
    b = bench.run(ctx, images=40, out=tmp_path / "bench.json")
    assert json.loads((tmp_path / "bench.json").read_text()) == b
    assert b["matmul"]["gflops"] > 0 and list(b["resolutions"]) == ["32"]
    r = b["resolutions"]["32"]
    # VGG16's 13 convolutions: 30.7 GFLOP at 224 px (DESIGN.md section 7), 1/49 of it at 32
    vgg = features.Extractor(ctx.load_weights(), 16).backbone
    assert round(bench.direct_gflop(vgg.layer_shapes(224)), 1) == 30.7
    assert r["direct_gflop_per_image"] == round(bench.direct_gflop(vgg.layer_shapes(224)) / 49, 3)
    assert set(r["model"]) == set(bench.PLANS)
    assert r["model"]["direct"]["paths"] == ["xla"] * 10 + ["matmul"] * 3  # block 5 of 32 px is 2x2
    assert r["model"]["chosen"]["paths"][-1] == "f2" and "f4" in r["model"]["chosen"]["paths"]
    for m in r["model"].values():
        # (computed before rounding: the rounded numbers agree to rounding)
        assert m["images_per_second"] > 0 and abs(m["share_of_matmul"] - m["gflops"] / b["matmul"]["gflops"]) < 0.011
    assert [x["layer"] for x in r["layers"]] == list(range(13))
    assert all(set(x["gflops"]) == set(conv.PATHS) for x in r["layers"])  # im2col of 32 px fits
    assert [x["workers"] for x in r["input"]] == [0, 1, 2] and all(x["images_per_second"] > 0 for x in r["input"])
    assert all(x["start_seconds"] >= 0 and x["stop_seconds"] >= 0 for x in r["input"])
    assert abs(r["speedup"]["input_2_over_1"] - r["input"][2]["images_per_second"] / r["input"][1]["images_per_second"]) < 0.011
    assert r["features"]["chosen"]["images"] == r["features"]["direct"]["images"] == 40
    assert all(len(e["rounds"]) == bench.ROUNDS for e in r["features"].values())
    table = bench.format_table(b)
    assert "model, chosen" in table and "| 32 | 12 | 2 | 512 -> 512 |" in table


def _same_as_smoke(cache: Path, smoke: Path) -> list[str]:
    """The arrays of `cache` (features of asl_photos, feature maps included), each checked to
    be byte for byte the file at the same place in the smoke run's cache; their names."""
    names = sorted(str(p.relative_to(cache)) for p in cache.rglob("*.npy"))
    assert any(n.endswith("/feats.npy") for n in names) and any(n.endswith("/maps.npy") for n in names), names
    reference = layout(smoke)["cache"]
    for n in names:
        assert (cache / n).read_bytes() == (reference / n).read_bytes(), n
    return names


def test_input_workers_give_the_same_feature_bytes(smoke, tmp_path):
    """The features of asl_photos decoded in 1 and in 2 grain worker processes are the bytes
    the smoke run cached with 0 (decoded in the main process)."""
    names = {}
    for workers in (1, 2):
        cache = tmp_path / f"cache{workers}"
        assert run.main(args(smoke, "features", "--dataset", "asl_photos", "--workers", str(workers),
                             "--cache-dir", str(cache))) == 0
        names[workers] = _same_as_smoke(cache, smoke)
    assert names[1] == names[2] and len(names[1]) >= 5


@pytest.mark.parametrize("workers", [0, 2])
def test_one_feed_decodes_a_stages_units_in_one_set_of_workers(smoke, workers):
    """A Feed gives each announced load's batches, as the load makes them, from one set of
    worker processes for all (the same processes from the first load to the last), drops the
    batches of a load that is skipped, and serves a load it was not told of from its own."""
    import multiprocessing

    from study import pipeline

    ctx = context(smoke)
    source = ctx.builder("asl_photos").as_data_source()["train"]
    loads = [pipeline.LoadBatch(source, 40, 16, 32, 32), pipeline.LoadBatch(source, 24, 16, 32, 16),
             pipeline.LoadBatch(source, 96, 16, 32, 32, flip=True)]
    other = pipeline.LoadBatch(source, 20, 16, 32, 16, flip=True)

    def check(got, load):
        assert [g["start"] for g in got] == list(range(0, load.n, load.batch))
        for g in got:
            want = load(g["start"] // load.batch)
            assert np.array_equal(g["pixels"], want["pixels"]) and np.array_equal(g["labels"], want["labels"])

    with pipeline.Feed(loads, workers) as feed:
        first = []
        for g in feed.batches(loads[0]):
            first.append(g)
            pids = {p.pid for p in multiprocessing.active_children()}
        check(first, loads[0])
        check(list(feed.batches(other)), other)
        last = []
        for g in feed.batches(loads[2]):  # loads[1] skipped: its batches dropped
            if not last:  # (a worker whose jobs are done exits: ask at the first of 6 batches)
                assert {p.pid for p in multiprocessing.active_children()} == pids and len(pids) == workers
            last.append(g)
        check(last, loads[2])
        check(list(feed.batches(loads[1])), loads[1])  # passed: served apart
    assert not multiprocessing.active_children()


def test_two_processes_write_the_cache_one_process_writes(smoke, tmp_path):
    """`features` started as 2 processes (jax.distributed on 2 local CPU processes, each half of
    every unit's batches) writes the bytes of the single-process smoke run."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cache = tmp_path / "cache"
    env = dict(os.environ, JAX_PLATFORMS="cpu", PYTHONUNBUFFERED="1")
    procs = [subprocess.Popen([sys.executable, "-m", "study.run", *args(smoke, "features", "--dataset", "asl_photos",
                                                                        "--cache-dir", str(cache), "--processes", "2",
                                                                        "--process-id", str(i), "--coordinator", f"127.0.0.1:{port}")],
                              cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for i in range(2)]
    outs = [p.communicate(timeout=600)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], "\n".join(o[-2000:] for o in outs)
    assert len(_same_as_smoke(cache, smoke)) >= 5
    markers = [json.loads(p.read_text()) for p in cache.rglob("unit.json")]
    assert markers and all(m["processes"] == 2 for m in markers if not m.get("from_maps"))
