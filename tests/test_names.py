"""Model names say what a model saw, and the preset's list of models."""

from hypothesis import given
from hypothesis import strategies as st

from study.names import Model, dataset_pairs, model_names, parse, skipped

ASL = set("ABCDEFGHIJKLMNOPQRSTUVWXYZ") | {"del", "nothing", "space"}
LEX = set("ABCDEFGHIJKLMNOPQRSTUVWXYZ") | {"nothing"}
dataset = st.sampled_from(["asl_alphabet", "asl_photos", "synthetic_asl_alphabet", "my_2nd_set"])


@given(dataset, dataset, st.integers(1, 500))
def test_names_parse_back_to_what_the_model_saw(a, b, k):
    for m in (Model((a,)), Model((a, b)), Model((a,), b, k), Model((a,), random=True)):
        assert parse(str(m)) == m
    assert str(Model((a,), b, k)) == f"{a}+{k}shot({b})"
    assert parse(f"{a}+{k}shot({b})").datasets == (a, b)


def test_two_datasets_give_singles_a_union_few_shot_pairs_and_the_ablation():
    names = model_names({"asl_alphabet": ASL, "asl_photos": ASL}, multi_source=True, few_shot=(1, 5),
                        ablation=("asl_alphabet",))
    assert names == ["asl_alphabet", "asl_photos", "asl_alphabet+asl_photos",
                     "asl_alphabet+1shot(asl_photos)", "asl_alphabet+5shot(asl_photos)",
                     "asl_photos+1shot(asl_alphabet)", "asl_photos+5shot(asl_alphabet)", "asl_alphabet+random"]
    assert [parse(n).kind for n in names] == ["single", "single", "multi-source"] + ["few-shot"] * 4 + ["ablation"]


def test_three_datasets_add_every_leave_one_out_union():
    names = model_names({"a": ASL, "b": LEX, "c": ASL}, multi_source=True, few_shot=(), ablation=())
    assert names == ["a", "b", "c", "a+b+c", "a+b", "a+c", "b+c"]


def test_datasets_without_a_shared_label_make_no_model_together():
    labels = {"a": {"A", "B"}, "b": {"C"}}
    assert model_names(labels, multi_source=True, few_shot=(2,), ablation=()) == ["a", "b"]
    assert skipped(labels, multi_source=True, few_shot=(2,)) == ["a+b", "a+2shot(b)", "b+2shot(a)"]


def test_fine_tuning_trains_single_dataset_models_only():
    assert model_names({"a": ASL, "b": ASL}, multi_source=True, few_shot=(1,), ablation=("a",), finetune=True) == ["a", "b"]


def test_dataset_pairs_share_labels_or_are_left_out():
    pairs = dataset_pairs({"a": {"A", "B"}, "b": {"B", "C"}, "c": {"D"}})
    assert pairs == [("a", "b", ["B"])]
