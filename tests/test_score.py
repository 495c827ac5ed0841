"""`score` on a folder of one's own photos, through the command line, with the smoke run's models:
awkward files skipped with their reasons, a folder without class folders refused."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from smoke import args, layout
from study import run

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
