"""`bench` on the smoke preset, its timings cut to one repeat."""

from __future__ import annotations

import json

import pytest

from smoke import context
from study.extraction import extract
from study.network import weights

pytestmark = pytest.mark.slow  # every test here uses the smoke run


def test_bench_times_every_path_against_the_matmul_rate(smoke, tmp_path, monkeypatch):
    """`bench` on the smoke preset (timings cut to one repeat): every plan, layer and path is
    there, the counts are VGG16's, and the table shows them."""
    from study.network import conv
    from study.stages import bench

    monkeypatch.setattr(bench, "MATMUL_N", 256)
    monkeypatch.setattr(bench, "MIN_SECONDS", 0.0)
    monkeypatch.setattr(bench, "MIN_REPEATS", 1)
    ctx = context(smoke)
    b = bench.run(ctx, images=40, out=tmp_path / "bench.json")
    assert json.loads((tmp_path / "bench.json").read_text()) == b
    assert b["matmul"]["gflops"] > 0 and list(b["resolutions"]) == ["32"]
    r = b["resolutions"]["32"]
    # VGG16's 13 convolutions: 30.7 GFLOP at 224 px (docs/speed.md), 1/49 of it at 32
    vgg = extract.Extractor(weights.prepared(ctx), 16).backbone
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
    assert (
        abs(r["speedup"]["input_2_over_1"] - r["input"][2]["images_per_second"] / r["input"][1]["images_per_second"])
        < 0.011
    )
    assert r["features"]["chosen"]["images"] == r["features"]["direct"]["images"] == 40
    assert all(len(e["rounds"]) == bench.ROUNDS for e in r["features"].values())
    table = bench.format_table(b)
    assert "model, chosen" in table and "| 32 | 12 | 2 | 512 -> 512 |" in table
    # training: one head against the preset's seeds together, and block 5 by every path
    h = b["training"]["heads"]
    assert h["mflop_per_example"] == round(6 * (512 * 256 + 256 * 29) / 1e6, 3)  # the 512 -> 256 -> 29 MLP
    assert [r["heads"] for r in h["runs"].values()] == [1, len(ctx.preset.seeds)]
    for r in h["runs"].values():
        assert r["examples_per_second"] == pytest.approx(r["heads"] * h["epochs"] * h["rows"] / r["seconds"], rel=0.01)
    b5 = b["training"]["block5"]
    assert [(r["R"], r["batch"]) for r in b5] == [(32, ctx.preset.block5.batch_size), (32, 64)][: len(b5)]
    for r in b5:
        assert r["map"] == 2 and r["chosen"] == "f2" and set(r["images_per_second"]) == {"chosen", *conv.PATHS}
    assert "chosen / matmul" in table and "heads together (fit_group)" in table
