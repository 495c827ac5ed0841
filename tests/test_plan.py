"""The plan of the work (study.core.plan): which units, models, evaluations and diagnostics a
preset needs on the datasets prepared; pure, so checked on summaries alone and against the
committed study of record."""

from __future__ import annotations

import dataclasses
import json

import pytest

from conftest import REPO
from study.core.config import CPU, SMOKE
from study.core.labels import CANONICAL
from study.core.names import LANDMARKS_R, parse
from study.core.plan import Evaluation, Plan, Unit
from study.core.store import read_separability, read_table

LETTERS = list(CANONICAL)


def summary(splits: dict[str, list[str]]) -> dict:
    """A dataset as datasets.json describes it: per split, its images and count per class."""
    return {"splits": {s: {"images": 10 * len(c), "per_class": {x: 10 for x in c}} for s, c in splits.items()}}


def two_datasets() -> dict:
    return {
        "asl_alphabet": summary(
            {"train": LETTERS, "validation": LETTERS, "test": LETTERS, "kaggle_test": LETTERS[:28]}
        ),
        "asl_photos": summary({"train": LETTERS[:27], "validation": LETTERS[:27], "test": LETTERS[:27]}),
    }


def test_feature_units_training_splits_views_then_test_splits_at_every_r():
    plan = Plan(CPU, two_datasets())
    units = plan.feature_units
    assert units[:6] == [Unit("asl_alphabet", "train", 64, 64)] + [
        Unit("asl_alphabet", "train", 64, 64, view=v) for v in (1, 2, 3, 4)
    ] + [Unit("asl_alphabet", "validation", 64, 64)]
    assert (
        Unit("asl_alphabet", "kaggle_test", 64, 16) in units and Unit("asl_photos", "kaggle_test", 64, 64) not in units
    )
    # augmented views only at the resolutions the preset augments; every r <= R for test splits
    assert not [u for u in units if u.view and u.R != 64 and u.hand != "landmarks"]
    assert sorted({u.r for u in units if u.split == "test" and u.R == 128}) == [16, 32, 64, 128]
    assert len(units) == len(set(units))
    image_level = dataclasses.replace(CPU, train=dataclasses.replace(CPU.train, finetune=True))
    assert Plan(image_level, two_datasets()).feature_units == []


def test_hand_crops_are_units_at_every_R_and_r_and_landmarks_one_unit_per_split():
    plan = Plan(CPU, two_datasets())
    crops = [u for u in plan.feature_units if u.hand == "crop"]
    whole = [u._replace(hand="") for u in plan.feature_units if not u.hand and not u.view and not u.trim]
    assert sorted(u._replace(hand="") for u in crops) == sorted(whole)  # the same splits, R and r as the whole images
    assert [u for u in plan.feature_units if u.hand == "landmarks" and not u.view] == [
        Unit(d, s, LANDMARKS_R, LANDMARKS_R, hand="landmarks")
        for d, ss in (
            ("asl_alphabet", ("train", "validation", "test", "kaggle_test")),
            ("asl_photos", ("train", "validation", "test")),
        )
        for s in ss
    ]
    views = [u for u in plan.feature_units if u.hand == "landmarks" and u.view]
    assert views == [
        Unit(d, "train", 0, 0, view=v, hand="landmarks") for d in ("asl_alphabet", "asl_photos") for v in range(1, 9)
    ]
    assert not plan.holds_maps(Unit("asl_photos", "train", 64, 64, hand="crop"))
    assert plan.holds_maps(Unit("asl_photos", "train", 64, 64))
    evals = plan.evaluations()
    hand = [e for e in evals if e.model == "asl_alphabet/hand" and e.R == 128 and e.seed == 0 and e.split == "test"]
    assert [(e.dataset, e.r) for e in hand] == [
        (d, r) for d in ("asl_alphabet", "asl_photos") for r in (128, 64, 32, 16)
    ]
    marks = [e for e in evals if e.model == "asl_photos/landmarks" and e.seed == 0]
    assert [(e.dataset, e.split, e.R, e.r) for e in marks] == [
        ("asl_alphabet", "test", 0, 0),
        ("asl_alphabet", "kaggle_test", 0, 0),
        ("asl_photos", "test", 0, 0),
    ]

    # landmark models only where the hands stage found a hand in the training and validation images
    def found(n):
        return {"splits": {"train": {"found": n}, "validation": {"found": n}}}

    datasets = two_datasets()
    datasets["asl_alphabet"]["hands"], datasets["asl_photos"]["hands"] = found(0), found(3)
    assert [n for n, R in Plan(CPU, datasets).models if R == LANDMARKS_R] == [
        "asl_photos/landmarks",
        "asl_photos/landmarks/aug8",
    ]
    both = [e for e in evals if e.model == "asl_photos/hand+landmarks" and e.R == 64 and e.seed == 0]
    assert [(e.dataset, e.split, e.r) for e in both] == [
        (d, s, r)
        for d, ss in (("asl_alphabet", ("test", "kaggle_test")), ("asl_photos", ("test",)))
        for s in ss
        for r in (64, 32, 16)
    ]


def test_models_and_their_evaluations():
    plan = Plan(CPU, two_datasets())
    names = [n for n, R in plan.models if R == 64]
    assert names[:3] == ["asl_alphabet", "asl_photos", "asl_alphabet+asl_photos"]
    assert "asl_alphabet/aug4" in names and "asl_photos/ft5" in names and "asl_alphabet+random" in names
    assert len(plan.model_seeds) == len(plan.models) * len(CPU.seeds)
    evals = plan.evaluations()
    # a few-shot model is scored on its target only; the ablation on its own random split at R
    shot = [e for e in evals if e.model == "asl_alphabet+5shot(asl_photos)" and e.R == 64 and e.seed == 0]
    assert {e.dataset for e in shot} == {"asl_photos"} and [e.r for e in shot] == [64, 32, 16]
    assert [e for e in evals if e.model == "asl_alphabet+random" and e.seed == 0 and e.R == 64] == [
        Evaluation("asl_alphabet+random", 64, 0, "asl_alphabet+random", "test", 64)
    ]
    # fine-tuned models need features of their own backbone; the plan lists their evaluations
    tuned = plan.finetuned_evaluations()
    assert {e.model for e in tuned} == {"asl_alphabet/ft5", "asl_photos/ft5"} and {e.R for e in tuned} == {64}
    assert plan.shared_classes("asl_alphabet", "asl_photos") == list(range(27))
    assert plan.classes("asl_alphabet+asl_photos") == list(range(27))


def test_a_folder_is_scored_by_every_kind_of_model_but_few_shot_adapted_and_ablation_at_r_equal_R():
    datasets = two_datasets() | {"my_photos": summary({"test": ["A", "B", "Y"]})}
    plan = Plan(CPU, datasets)
    assert "my_photos" not in plan.dataset_names  # not a dataset of the preset
    assert plan.folder_units("my_photos") == [
        Unit("my_photos", "test", R, R, hand=h) for R in (64, 128) for h in ("", "crop")
    ] + [Unit("my_photos", "test", 0, 0, hand="landmarks")]
    assert plan.folder_units("my_photos", every_r=True) == [
        Unit("my_photos", "test", R, r, hand=h)
        for R in (64, 128)
        for h in ("", "crop")
        for r in CPU.eval_resolutions_for(R)
    ] + [Unit("my_photos", "test", 0, 0, hand="landmarks")]
    scorable = plan.scorable()
    kinds = {parse(n).kind for n, _, _ in scorable}
    assert kinds == {parse(n).kind for n, _ in plan.models} - {"few-shot", "adapted", "ablation"}
    assert {"both views", "fine-tuned", "augmented", "hand crop", "single", "multi-source"} <= kinds
    assert {n for n, _, _ in scorable if "/hand" in n or "/landmarks" in n} == {
        f"{d}/{x}"
        for d in ("asl_alphabet", "asl_photos")
        for x in ("hand", "landmarks", "hand+landmarks", "landmarks/aug8")
    }
    evals = plan.evaluations(scorable, ["my_photos"], every_r=False)
    assert {e.dataset for e in evals} == {"my_photos"} and all(e.r == e.R for e in evals)
    assert len(evals) == len(scorable)
    evals = plan.evaluations(scorable, ["my_photos"])  # the resolution sweep (score --every-r)
    assert len(evals) == sum(len(CPU.eval_resolutions_for(R)) for _, R, _ in scorable)  # every r <= R


def test_separability_pairs_and_the_gradcam_sample():
    plan = Plan(SMOKE, two_datasets())
    assert [(a, b) for a, b, _ in plan.separability_pairs] == [("asl_alphabet", "asl_photos")]
    assert plan.separability_rows == [("asl_alphabet", "asl_photos", 32, 32), ("asl_alphabet", "asl_photos", 32, 16)]
    labels, rng = plan.gradcam_labels()
    again, _ = plan.gradcam_labels()
    assert labels == again and len(labels) == 6 and set(labels) <= set(range(27))
    assert rng.integers(1 << 30) == Plan(SMOKE, two_datasets()).gradcam_labels()[1].integers(1 << 30)
    assert {m[0] for m in plan.gradcam_models()} == {
        n for n, _ in plan.models if parse(n).kind not in ("few-shot", "adapted", "ablation", "landmarks", "both views")
    }


@pytest.mark.parametrize("what", ["table", "separability"])
def test_the_plan_is_the_committed_study_of_record(what):
    """The plan of the cpu preset on its committed datasets.json lists exactly the rows of the
    committed table.csv and separability.csv, in their order."""
    out = REPO / "results" / "cpu"
    prepared = json.loads((out / "datasets.json").read_text())
    plan = Plan(CPU, prepared["datasets"])
    if what == "table":
        rows = read_table(out / "table.csv")
        assert [(r["train_dataset"], r["train_res"], r["eval_dataset"], r["eval_res"]) for r in rows] == plan.table_rows
    else:
        rows = read_separability(out / "separability.csv")
        assert [(r["dataset_a"], r["dataset_b"], r["R"], r["r"]) for r in rows] == plan.separability_rows
