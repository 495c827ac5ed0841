"""Model names say what a model saw, and the preset's list of models."""

import dataclasses

import pytest
from hypothesis import given
from hypothesis import strategies as st

from study.core.config import CPU, SMOKE
from study.core.names import (
    FOLDER_NAME_RULE,
    LANDMARKS_R,
    Model,
    dataset_pairs,
    folder,
    folder_results_name,
    model_names,
    parse,
    preset_models,
    skipped,
)

ASL = set("ABCDEFGHIJKLMNOPQRSTUVWXYZ") | {"del", "nothing", "space"}
LEX = set("ABCDEFGHIJKLMNOPQRSTUVWXYZ") | {"nothing"}
dataset = st.sampled_from(["asl_alphabet", "asl_photos", "synthetic_asl_alphabet", "my_2nd_set"])


@given(dataset, dataset, st.integers(1, 500))
def test_names_parse_back_to_what_the_model_saw(a, b, k):
    for m in (
        Model((a,)),
        Model((a, b)),
        Model((a,), b, k),
        Model((a,), random=True),
        Model((a,), remedy=f"aug{k}"),
        Model((a,), remedy="ft5"),
    ):
        assert parse(str(m)) == m
    assert str(Model((a,), remedy=f"aug{k}")) == f"{a}/aug{k}" and parse(f"{a}/aug{k}").views == k
    assert folder(f"{a}/ft5", 64) == f"{a}-ft5@64" and "/" not in folder(f"{a}/aug{k}", 32)
    assert str(Model((a,), b, k)) == f"{a}+{k}shot({b})"
    assert parse(f"{a}+{k}shot({b})").datasets == (a, b)


def test_two_datasets_give_singles_a_union_few_shot_pairs_and_the_ablation():
    names = model_names(
        {"asl_alphabet": ASL, "asl_photos": ASL}, multi_source=True, few_shot=(1, 5), ablation=("asl_alphabet",)
    )
    assert names == [
        "asl_alphabet",
        "asl_photos",
        "asl_alphabet+asl_photos",
        "asl_alphabet+1shot(asl_photos)",
        "asl_alphabet+5shot(asl_photos)",
        "asl_photos+1shot(asl_alphabet)",
        "asl_photos+5shot(asl_alphabet)",
        "asl_alphabet+random",
    ]
    assert [parse(n).kind for n in names] == ["single", "single", "multi-source"] + ["few-shot"] * 4 + ["ablation"]


def test_three_datasets_add_every_leave_one_out_union():
    names = model_names({"a": ASL, "b": LEX, "c": ASL}, multi_source=True, few_shot=(), ablation=())
    assert names == ["a", "b", "c", "a+b+c", "a+b", "a+c", "b+c"]


def test_datasets_without_a_shared_label_make_no_model_together():
    labels = {"a": {"A", "B"}, "b": {"C"}}
    assert model_names(labels, multi_source=True, few_shot=(2,), ablation=()) == ["a", "b"]
    assert skipped(labels, multi_source=True, few_shot=(2,)) == ["a+b", "a+2shot(b)", "b+2shot(a)"]


def test_fine_tuning_trains_single_dataset_models_only():
    assert model_names({"a": ASL, "b": ASL}, multi_source=True, few_shot=(1,), ablation=("a",), finetune=True) == [
        "a",
        "b",
    ]


def test_dataset_pairs_share_labels_or_are_left_out():
    pairs = dataset_pairs({"a": {"A", "B"}, "b": {"B", "C"}, "c": {"D"}})
    assert pairs == [("a", "b", ["B"])]


def test_remedies_are_single_dataset_models_at_the_preset_remedy_resolutions():
    labels = {"asl_alphabet": ASL, "asl_photos": ASL}
    models = preset_models(CPU, labels)
    remedies = [(n, R) for n, R in models if "/" in n]

    def both(x):
        return [f"asl_alphabet/{x}", f"asl_photos/{x}"]

    assert [n for n, R in remedies if R == 64] == both("aug4") + both("ft5") + both("hand") + both("hand+landmarks")
    assert [n for n, R in remedies if R == 128] == both("hand") + both("hand+landmarks")
    assert [n for n, R in remedies if R == LANDMARKS_R] == both("landmarks") + both("landmarks/aug8")
    assert [parse(n).kind for n, R in remedies if R == 64] == (
        ["augmented"] * 2 + ["fine-tuned"] * 2 + ["hand crop"] * 2 + ["both views"] * 2
    )
    assert [parse(n).input for n, R in remedies if R == 64] == [""] * 4 + ["crop"] * 2 + ["both"] * 2
    assert {parse(n).input for n, R in remedies if R == LANDMARKS_R} == {"landmarks"}
    assert [parse(n).landmark_views for n, R in remedies if R == LANDMARKS_R] == [0, 0, 8, 8]
    assert (
        len(models)
        == 2
        * len(
            model_names(
                labels, multi_source=True, few_shot=CPU.few_shot, ablation=CPU.ablation, adapt=CPU.adapt.methods
            )
        )
        + 16
    )
    # landmark models only for the datasets with a hand found in their training and validation images
    assert [n for n, R in preset_models(CPU, labels, ["asl_photos"]) if R == LANDMARKS_R] == [
        "asl_photos/landmarks",
        "asl_photos/landmarks/aug8",
    ]
    adapted = [n for n, R in models if parse(n).kind == "adapted" and R == 64]
    assert adapted == [
        f"{s}+{a}({t})"
        for s, t in (("asl_alphabet", "asl_photos"), ("asl_photos", "asl_alphabet"))
        for a in ("std", "coral", "self")
    ]
    # each remedy after the baseline it starts from (block 5 starts from the frozen model's head)
    assert models.index(("asl_alphabet/ft5", 64)) > models.index(("asl_alphabet", 64))
    no_aug = dataclasses.replace(
        SMOKE,
        augment=dataclasses.replace(SMOKE.augment, views=0),
        hands=dataclasses.replace(SMOKE.hands, crops=False, landmarks=False),
    )
    assert [n for n, _ in preset_models(no_aug, labels) if "/" in n] == ["asl_alphabet/ft5", "asl_photos/ft5"]
    image_mode = dataclasses.replace(SMOKE, train=dataclasses.replace(SMOKE.train, finetune=True))
    assert [n for n, _ in preset_models(image_mode, labels)] == ["asl_alphabet", "asl_photos"]


def test_names_that_say_nothing_known_are_refused():
    for bad in ("a/aug0", "a/ft4", "a/b/ft5", "a+b/ft5"):
        with pytest.raises(ValueError, match="not a model name"):
            parse(bad)


def test_remedy_resolutions_must_be_model_resolutions():
    with pytest.raises(ValueError, match="remedy resolution 32"):
        dataclasses.replace(CPU, block5=dataclasses.replace(CPU.block5, resolutions=(32,)))


def test_one_rule_for_a_scored_folders_name_given_or_derived():
    assert "lower-case letters, digits, - and _" in FOLDER_NAME_RULE
    for good in ("six-flo", "my_photos", "2024-a"):
        assert folder_results_name("whatever", good) == good
    for bad in ("Six", "a/b", "-x", "_x", "../up", "", "café"):
        assert folder_results_name("whatever", bad) is None
    assert folder_results_name("My Photos-2024") == "my_photos-2024"
    assert folder_results_name("Ünïcode !") == "n_code" and folder_results_name("!!!") == "photos"
    for derived in ("My Photos-2024", "x__y", "A B C"):  # a derived name follows the rule a given one must
        assert folder_results_name("x", folder_results_name(derived)) == folder_results_name(derived)
