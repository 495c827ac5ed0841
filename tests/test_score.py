"""`score` on a folder of one's own photos, through the command line, with the smoke run's models:
awkward files skipped with their reasons, a folder without class folders refused."""

from __future__ import annotations

import csv
import json
import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest

from smoke import args, context, layout
from study import run
from study.core.labels import CANONICAL
from study.core.names import parse

pytestmark = pytest.mark.slow  # every test here uses the smoke run


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
    return {
        "B/rgba.png": "ok",
        "C/cmyk.jpg": "ok",
        "E/palette.gif": "ok",
        "F/tiny.jpg": "ok",
        "G/camera.jpg": "ok",
        "H/phone.jpg": "ok",
        "K/huge.png": "image too large to decode safely",
        "L/empty.jpg": "empty file",
        "M/notes.txt": "not an image file",
        "N/link.jpg": "link to a file outside the folder (not read)",
        "holiday/": "unknown class folder",
    }


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
    plan = context(smoke).plan
    # every kind of model but the few-shot and adapted ones and the ablation, which belong to the study's datasets
    scorable = {(n, R) for n, R in plan.models if parse(n).kind not in ("few-shot", "adapted", "ablation")}
    assert {"asl_alphabet/hand+landmarks", "asl_alphabet/ft5"} <= {n for n, _ in scorable}
    assert {(r["train_dataset"], int(r["train_res"])) for r in rows} == scorable
    assert {r["eval_dataset"] for r in rows} == {"my_photos"}
    assert all(r["eval_res"] == r["train_res"] for r in rows)  # each model at its own R: no sweep by default
    ds = json.loads((out / "dataset.json").read_text())
    ok = sum(v == "ok" for v in expected.values())
    # + the planted frameless image (scoring needs no frames) and the decodable awkward ones
    assert ds["splits"]["test"]["images"] == 29 * 2 + 1 + ok
    skipped = {s["path"]: s["reason"] for s in ds["skipped"]}
    for path, reason in expected.items():
        if reason != "ok":
            assert skipped[path].startswith(reason), (path, skipped.get(path))
    assert ds["accounting"]["archive_files"] == ds["accounting"]["in_splits"] + ds["accounting"]["skipped_files"]
    _check_answers(smoke, out, printed, scorable)
    # Lexset has no del/space: those photos are not scored against its model.
    lex = [r for r in rows if r["train_dataset"] == "synthetic_asl_alphabet"][0]
    assert (
        int(lex["n"])
        == ds["splits"]["test"]["images"]
        - ds["splits"]["test"]["per_class"]["del"]
        - ds["splits"]["test"]["per_class"]["space"]
    )
    # one row per photo: its letter, each model's answer (the seeds' mean), each seed's (r = R)
    preds = list(csv.DictReader(open(out / "predictions.csv")))
    columns = list(preds[0])
    assert columns.index("asl_photos@32") < columns.index("asl_photos@32 p") < columns.index("asl_photos@32 seed 0")
    assert max(columns.index(f"{n}@{R}") for n, R in scorable) < min(i for i, c in enumerate(columns) if " seed " in c)
    assert len(preds) == ds["splits"]["test"]["images"] and len({p["file"] for p in preds}) == len(preds)
    assert "A/A0.jpg" in {p["file"] for p in preds} and "asl_photos@32 seed 0" in preds[0]
    assert all(p["asl_photos@32 seed 0"] in CANONICAL and 0 < float(p["asl_photos@32 seed 0 p"]) <= 1 for p in preds)
    # each photo's hand detection: the try that found a hand, or none (generated photos: mostly none)
    assert {p["hand"] for p in preds} <= {"plain", "none"} and "none" in {p["hand"] for p in preds}
    assert all(p["asl_photos/hand@32 seed 0"] in CANONICAL for p in preds)
    lex_del = [p for p in preds if p["label"] == "del"]
    assert lex_del and all(p["synthetic_asl_alphabet@32 seed 0"] == "" for p in lex_del)  # not scored: unknown letter
    skipped_csv = {r["file"]: r["reason"] for r in csv.DictReader(open(out / "skipped.csv"))}
    assert skipped_csv == skipped
    # every file written is named, and which letters the models choose among
    for name in ("predictions.csv", "answers.csv", "table.csv", "skipped.csv", "dataset.json"):
        assert str(out / name) in printed, name
    assert "the models choose among every label they know" in printed
    assert f"none of the {len(preds)} photos is an image of the study's datasets" in printed
    assert {p["study image"] for p in preds} == {""}


def _check_answers(smoke: Path, out: Path, printed: str, scorable: set) -> None:
    """answers.csv and the printed table: one row per model, each photo's answer the label of the
    highest probability averaged over its seeds (recomputed here from the evaluation records),
    the best model by the study's table first, one line saying what the numbers are."""
    answers = list(csv.DictReader(open(out / "answers.csv")))
    assert list(answers[0]) == ["model", "R", "seeds", "photos", "accuracy", "ci_low", "ci_high", "study_across"]
    assert {(a["model"], int(a["R"])) for a in answers} == scorable and len(answers) == len(scorable)
    across = [float(a["study_across"]) for a in answers if a["study_across"]]
    assert across == sorted(across, reverse=True) and all(a["study_across"] for a in answers[: len(across)])
    study = list(csv.DictReader(open(layout(smoke)["out"] / "table.csv")))
    for a in answers:  # the mean of its rows on the datasets it never trained on, at r = R
        mine = [
            float(r["accuracy"])
            for r in study
            if (r["train_dataset"], r["train_res"], r["eval_res"]) == (a["model"], a["R"], a["R"])
            and ":" not in r["eval_dataset"]
            and r["eval_dataset"] not in parse(a["model"]).sources
        ]
        assert a["study_across"] == ("" if not mine else f"{np.mean(mine):.4f}"), a
    preds = {p["file"]: p for p in csv.DictReader(open(out / "predictions.csv"))}
    for a in answers:
        col, seeds = f"{a['model']}@{a['R']}", range(int(a["seeds"]))
        folder = out / "eval" / f"{a['model'].replace('/', '-')}@{a['R']}"
        recs = [json.loads((folder / f"seed{k}" / f"my_photos.test.r{a['R']}.json").read_text()) for k in seeds]
        right = 0
        for i, f in enumerate(recs[0]["photos"]):
            rows = [r["probabilities"][i] for r in recs]
            if rows[0] is None:
                expected = "nothing" if "nothing" in recs[0]["choose_from"] else "(no hand)"
            else:
                expected = recs[0]["choose_from"][int(np.argmax(np.mean(rows, axis=0)))]
            assert preds[f][col] == expected, (col, f)
            right += expected == preds[f]["label"]
        assert int(a["photos"]) == len(recs[0]["photos"]) and float(a["accuracy"]) == round(right / int(a["photos"]), 4)
        assert float(a["ci_low"]) <= float(a["accuracy"]) <= float(a["ci_high"])  # 59 photos and more: an interval
    lines = printed.splitlines()
    head = next(i for i, line in enumerate(lines) if line.startswith("model "))
    assert "averaged over its seeds" in lines[head - 1] and "study across" in lines[head]
    assert [line.split()[0] for line in lines[head + 1 : head + 1 + len(answers)]] == [a["model"] for a in answers]


def test_photos_that_are_the_studys_own_images_are_named_with_the_models_that_saw_them(smoke, tmp_path, capsys):
    """prepare lists every image with its split and sha256 (images.csv); score names a user's
    photo that is one of them, byte for byte, and warns that the models trained on its dataset saw it."""
    import hashlib

    p = layout(smoke)
    listed = list(csv.DictReader(open(p["out"] / "images.csv")))
    summary = json.loads((p["out"] / "datasets.json").read_text())["datasets"]
    for name, d in summary.items():  # every image in a split or left out by the guard band, once
        rows = [r for r in listed if r["dataset"] == name]
        assert len(rows) == d["accounting"]["in_splits"] + d["accounting"]["left_out_by_guard_band"]
        assert len({r["file"] for r in rows}) == len(rows)
        assert {r["split"] for r in rows} == set(d["splits"]) | (
            {"left_out"} if d["left_out_by_guard_band"]["images"] else set()
        )
    photos = [r for r in listed if r["dataset"] == "asl_photos"]
    chosen = [r for r in photos if r["split"] == "train"][:3] + [r for r in photos if r["split"] == "test"][:1]
    folder = tmp_path / "mine"
    for r in chosen:
        data = (p["data"] / "asl-photos" / r["file"]).read_bytes()
        assert hashlib.sha256(data).hexdigest() == r["sha256"]
        target = folder / Path(r["file"]).parent.name / Path(r["file"]).name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
    capsys.readouterr()
    assert run.main(args(smoke, "score", "--folder", str(folder))) == 0
    printed = capsys.readouterr().out
    assert (
        "warning: 4 of the 4 photos are images of the study's own datasets (1 test images of asl_photos, "
        "3 train images of asl_photos)" in printed
    )
    assert "asl_photos@32" in printed.split("warning:")[-1] and "asl_alphabet@32," not in printed.split("warning:")[-1]
    preds = {r["file"]: r["study image"] for r in csv.DictReader(open(p["out"] / "score" / "mine" / "predictions.csv"))}
    assert sorted(preds.values()) == ["asl_photos test"] + ["asl_photos train"] * 3


def test_score_refuses_a_folder_without_class_folders(smoke, tmp_path, capsys):
    (tmp_path / "x" / "holiday").mkdir(parents=True)
    (tmp_path / "x" / "holiday" / "a.jpg").write_bytes(b"x")
    assert run.main(args(smoke, "score", "--folder", str(tmp_path / "x"))) == 2
    assert "no recognisable class folders" in capsys.readouterr().err


def test_a_folder_of_one_letter_is_not_a_perfect_score(smoke, tmp_path, capsys):
    """The models choose among every letter they know: three photos of Y score what the models
    say of them, not 1.000 (choosing among the folder's one letter always would). With
    --folder-labels-only a folder of two letters is scored on those two alone."""
    from study.datasets import fake

    full = tmp_path / "all"
    fake.write_asl_folder(full, split_dir=None, per_class=3, seed=5)
    one = tmp_path / "only_y"
    shutil.copytree(full / "Y", one / "Y")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert run.main(args(smoke, "score", "--folder", str(one))) == 0
    assert not [w for w in caught if "sklearn" in w.filename], [str(w.message) for w in caught]  # none reach the user
    printed = capsys.readouterr().out
    out = layout(smoke)["out"] / "score" / "only_y"
    rows = list(csv.DictReader(open(out / "table.csv")))
    assert {r["n"] for r in rows} == {"3"} and min(float(r["accuracy"]) for r in rows) < 1
    e = json.loads((out / "eval/asl_photos@32/seed0/only_y.test.r32.json").read_text())
    assert len(e["choose_from"]) == 29 and e["labels"] == ["Y"]  # scored on Y, choosing among all it knows
    assert "choose among every label they know; the folder has one" in printed
    assert "--folder-labels-only" not in printed  # the flag would change nothing here: not suggested
    answers = list(csv.DictReader(open(out / "answers.csv")))
    assert {a["photos"] for a in answers} == {"3"} and {(a["ci_low"], a["ci_high"]) for a in answers} == {("", "")}
    assert run.main(args(smoke, "score", "--folder", str(one), "--folder-labels-only")) == 0
    assert "the folder has one label, so the models choose among every label they know" in capsys.readouterr().out
    two = tmp_path / "two"
    for c in ("A", "B"):
        shutil.copytree(full / c, two / c)
    assert run.main(args(smoke, "score", "--folder", str(two), "--folder-labels-only")) == 0
    assert "the folder's 2 labels only" in capsys.readouterr().out
    preds = list(csv.DictReader(open(layout(smoke)["out"] / "score" / "two" / "predictions.csv")))
    assert {p["asl_photos@32 seed 0"] for p in preds} <= {"A", "B"}


def test_one_rule_for_names_given_or_derived(smoke, tmp_path, capsys):
    from study.datasets import fake

    photos = tmp_path / "My Photos-2024"
    fake.write_asl_folder(photos, split_dir=None, per_class=1, seed=1)
    for bad in ("../../../escaped", "a/b", "Mine!", "_x"):
        assert run.main(args(smoke, "score", "--folder", str(photos), "--name", bad)) == 2
        assert f"--name {bad!r}: a name of lower-case letters, digits, - and _" in capsys.readouterr().err
    assert not (smoke / "escaped").exists() and not (smoke.parent / "escaped").exists()
    assert run.main(args(smoke, "score", "--folder", str(photos), "--name", "six-flo")) == 0
    assert (layout(smoke)["out"] / "score" / "six-flo" / "answers.csv").is_file()
    assert run.main(args(smoke, "score", "--folder", str(photos))) == 0  # the folder's own name, by the same rule
    assert (layout(smoke)["out"] / "score" / "my_photos-2024" / "answers.csv").is_file()
    capsys.readouterr()
    with pytest.raises(SystemExit):
        run.main(["score", "--help"])
    assert "lower-case letters, digits, - and _" in " ".join(capsys.readouterr().out.split())


def test_every_r_scores_the_resolution_sweep(smoke, tmp_path, capsys):
    from study.datasets import fake

    photos = tmp_path / "sweep"
    fake.write_asl_folder(photos, split_dir=None, per_class=1, seed=4)
    assert run.main(args(smoke, "score", "--folder", str(photos), "--every-r")) == 0
    rows = list(csv.DictReader(open(layout(smoke)["out"] / "score" / "sweep" / "table.csv")))
    assert {(r["train_res"], r["eval_res"]) for r in rows} == {("32", "32"), ("32", "16"), ("0", "0")}
    assert "   16 " in capsys.readouterr().out  # the sweep is printed as table.csv holds it


def test_a_folder_without_a_usable_image_is_refused_in_one_line_and_leaves_nothing(smoke, tmp_path, capsys):
    tfds_dir = layout(smoke)["tfds"]

    def datasets():
        return sorted(p.relative_to(tfds_dir) for p in tfds_dir.rglob("*") if ".locks" not in p.parts)

    before = datasets()
    (tmp_path / "empty").mkdir()
    assert run.main(args(smoke, "score", "--folder", str(tmp_path / "empty"))) == 2
    assert capsys.readouterr().err.startswith(f"error: {tmp_path / 'empty'} holds no files")
    bad = tmp_path / "bad"
    (bad / "A").mkdir(parents=True)
    (bad / "A" / "notes.txt").write_text("not a photo")
    (bad / "A" / "broken.jpg").write_bytes(b"\xff\xd8\xff not really a jpeg")
    assert run.main(args(smoke, "score", "--folder", str(bad))) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no usable image" in err and "A/notes.txt: not an image file" in err
    assert "A/broken.jpg: corrupt image" in err or "A/broken.jpg: not a readable image" in err
    assert datasets() == before  # no empty dataset folder left behind
    zero = tmp_path / "zero"
    (zero / "A").mkdir(parents=True)
    (zero / "A" / "photo.jpg").write_bytes(b"")
    assert run.main(args(smoke, "score", "--folder", str(zero))) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no usable image" in err and "A/photo.jpg: empty file" in err


def test_links_that_loop_and_names_that_are_not_utf8_are_skipped_with_a_reason(smoke, tmp_path):
    import os

    from study.datasets import fake

    photos = tmp_path / "odd"
    fake.write_asl_folder(photos, split_dir=None, per_class=1, seed=3)
    (photos / "B" / "loop.jpg").symlink_to(photos / "B" / "loop.jpg")
    with open(os.path.join(os.fsencode(photos / "C"), b"caf\xe9.jpg"), "wb") as f:
        f.write((photos / "A" / "A0.jpg").read_bytes())
    assert run.main(args(smoke, "score", "--folder", str(photos))) == 0
    skipped = {
        r["file"]: r["reason"] for r in csv.DictReader(open(layout(smoke)["out"] / "score" / "odd" / "skipped.csv"))
    }
    assert skipped["B/loop.jpg"].startswith("broken link, or a link that loops")
    assert skipped["C/caf\\xe9.jpg"].startswith("file name is not valid UTF-8")


def test_a_folder_is_its_path_and_its_photos_not_its_name(smoke, tmp_path, capsys):
    """Two folders of one name never share a prepared dataset or results; a photo added to a
    folder gets it scored again without --force, its old scores replaced."""
    from study.datasets import fake

    photos = tmp_path / "mine" / "photos"
    fake.write_asl_folder(photos, split_dir=None, per_class=1, seed=2)
    assert run.main(args(smoke, "score", "--folder", str(photos))) == 0
    out = layout(smoke)["out"] / "score" / "photos"
    n = int(list(csv.DictReader(open(out / "table.csv")))[0]["n"])
    other = tmp_path / "other" / "photos"
    shutil.copytree(photos, other)
    capsys.readouterr()
    assert run.main(args(smoke, "score", "--folder", str(other))) == 2
    assert "holds the scores of another folder" in capsys.readouterr().err
    assert run.main(args(smoke, "score", "--folder", str(other), "--name", "other_photos")) == 0
    assert (layout(smoke)["out"] / "score" / "other_photos" / "table.csv").is_file()
    shutil.copy(photos / "A" / "A0.jpg", photos / "A" / "A_new.jpg")
    assert run.main(args(smoke, "score", "--folder", str(photos))) == 0
    assert "its old scores" in capsys.readouterr().out
    rows = list(csv.DictReader(open(out / "table.csv")))
    assert {int(r["n"]) for r in rows if r["train_dataset"] == "asl_photos"} == {n + 1}
