"""Where units live and how they are read back (study.core.store): cache paths and specs, a
missing or damaged input named with the command that makes it, the tables as CSV."""

from __future__ import annotations

import numpy as np
import pytest

from conftest import tiny_results, write_features
from study.core import store
from study.core.config import CPU
from study.core.errors import MissingArtefact, StaleResultError
from study.core.plan import Unit
from study.core.units import mark_done

DATASETS = {
    "asl_alphabet": {"train": ["A", "B"], "validation": ["A", "B"], "test": ["A", "B"]},
    "asl_photos": {"train": ["A", "B"], "validation": ["A", "B"], "test": ["A", "B"]},
}


@pytest.fixture
def ctx(tmp_path):
    return tiny_results(tmp_path / "out", CPU, DATASETS)


def test_features_units_live_by_weights_dataset_split_and_resolutions(ctx):
    d = store.features_dir(ctx, Unit("asl_photos", "test", 128, 32))
    assert d.relative_to(ctx.cache_dir).parts[:2] == ("features", "0123456789abcdef")
    assert d.parts[-2:] == ("test", "R128_r32") and d.parent.parent.name == ctx.dataset_fingerprint("asl_photos")
    assert store.features_dir(ctx, Unit("asl_photos", "train", 64, 64, view=2)).name == "R64_r64_aug2"
    assert store.features_dir(ctx, Unit("asl_photos", "train", 64, 64, flip=True)).name == "R64_r64_flip"
    # block-4 maps only at the resolutions block 5 is fine-tuned (cpu: 64), augmentation only in views
    assert store.features_spec(ctx, Unit("asl_photos", "train", 64, 64))["block4_maps"] is True
    assert "block4_maps" not in store.features_spec(ctx, Unit("asl_photos", "train", 128, 128))
    assert store.features_spec(ctx, Unit("asl_photos", "train", 64, 64, view=2))["augment"]["view"] == 2
    assert "augment" not in store.features_spec(ctx, Unit("asl_photos", "train", 64, 64))


def test_features_read_back_or_named_with_the_command_that_makes_them(ctx, tmp_path):
    with pytest.raises(
        MissingArtefact,
        match=rf"features of asl_photos/test at R=128, r=32 .*python -m study.run "
        rf"features --preset cpu --out {ctx.out_dir}",
    ):
        store.load_features(ctx, Unit("asl_photos", "test", 128, 32))
    u = Unit("asl_photos", "test", 128, 32)
    write_features(ctx, u, np.ones((20, 4)), np.repeat([0, 1], 10))
    x, y, fp = store.load_features(ctx, u)
    assert x.shape == (20, 4) and list(y[:11]) == [0] * 10 + [1] and len(fp) == 16
    (store.features_dir(ctx, u) / "feats.npy").write_bytes(b"")  # damaged: named, never read
    with pytest.raises(MissingArtefact, match="feats.npy"):
        store.load_features(ctx, u)
    prepared = ctx.out_dir / "datasets.json"
    prepared.write_text(prepared.read_text().replace("listing of asl_photos", "another listing"))
    from study.core.context import Context

    again = Context(ctx.preset, ctx.data_dir, ctx.out_dir, ctx.tfds_dir, ctx.cache_dir, ctx.weights_dir)
    with pytest.raises(MissingArtefact):  # another archive: another folder, so not there
        store.load_features(again, u)
    write_features(again, u, np.ones((20, 4)), np.repeat([0, 1], 10))
    d = store.features_dir(again, u)  # made by an older feature computation: refused, naming the change
    mark_done(d / "unit.json", store.features_spec(again, u) | {"version": 1}, [d / "feats.npy", d / "labels.npy"])
    with pytest.raises(StaleResultError, match="changed: version"):
        store.load_features(again, u)


def test_models_a_folder_is_scored_with_leave_out_a_head_or_block_5_that_is_not_there(ctx):
    assert store.scorable(ctx) == [] and store.absent_scorable(ctx) == ctx.plan.scorable()  # nothing trained
    d = store.model_files(ctx, "asl_photos/ft5", 64, 0).root
    d.mkdir(parents=True)
    (d / "head.npz").write_bytes(b"x")
    assert ("asl_photos/ft5", 64, 0) in store.absent_scorable(ctx)  # its head, but no block 5
    (d / "block5.npz").write_bytes(b"x")
    assert store.scorable(ctx) == [("asl_photos/ft5", 64, 0)]
    assert set(store.absent_scorable(ctx)) == set(ctx.plan.scorable()) - {("asl_photos/ft5", 64, 0)}
    assert d.name == "seed0" and d.parent.name == "asl_photos-ft5@64"
    with pytest.raises(MissingArtefact, match=r"model asl_photos/ft5@64 seed 0 .*python -m study.run train"):
        store.model_record(ctx, "asl_photos/ft5", 64, 0)


def test_tables_round_trip_through_csv(ctx):
    rows = [
        {
            "train_dataset": "a",
            "train_res": 64,
            "eval_dataset": "b:kaggle_test",
            "eval_res": 16,
            "n": 28,
            "accuracy": 0.123456,
            "accuracy_sd": 0.0,
            "accuracy_ci_low": 0.1,
            "accuracy_ci_high": 0.2,
            "macro_f1": 0.3,
            "macro_f1_sd": 0.01,
        }
    ]
    store.write_table(rows, ctx.out_dir / "table.csv")
    assert (ctx.out_dir / "table.csv").read_text().splitlines()[
        1
    ] == "a,64,b:kaggle_test,16,28,0.1235,0.0000,0.1000,0.2000,0.3000,0.0100"
    back = store.read_table(ctx.out_dir / "table.csv")
    assert back[0]["accuracy"] == 0.1235 and back[0]["n"] == 28 and list(back[0]) == store.TABLE_COLUMNS
    assert store.read_separability(ctx.out_dir / "separability.csv") == []
    assert store.score_files(ctx, "photos").root == ctx.out_dir / "score" / "photos"


def _strings_and_joins(tree):
    """Every string literal of a module but its docstrings, and every `path / "literal"` join
    (except onto the package's own folder, `Path(__file__)...`, whose files are package data)."""
    import ast

    docs = {
        id(n.body[0].value)
        for n in ast.walk(tree)
        if isinstance(n, (ast.Module, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))
        and n.body
        and isinstance(n.body[0], ast.Expr)
        and isinstance(n.body[0].value, ast.Constant)
    }
    for n in ast.walk(tree):
        if isinstance(n, ast.Constant) and isinstance(n.value, str) and id(n) not in docs:
            yield "string", n.lineno, n.value
        if isinstance(n, ast.BinOp) and isinstance(n.op, ast.Div) and isinstance(n.right, ast.Constant):
            if isinstance(n.right.value, str) and "__file__" not in ast.unparse(n.left):
                yield "join", n.lineno, n.right.value


def test_no_module_but_the_store_spells_a_file_or_folder_of_the_study():
    """The store owns every path (docs/code.md): no other module of the package spells the name
    of a file the study reads or writes, nor joins one of the store's names onto a path."""
    import ast
    import re

    from conftest import REPO

    files = {n for n in store.NAMES if "." in n.strip(".")}
    assert {"table.csv", "cues.csv", "hand_share.csv", "datasets.json", "unit.json", "feats.npy"} <= files
    spelled = re.compile(r"(?<![\w.])(" + "|".join(map(re.escape, sorted(files))) + r")(?!\w)")
    found = []
    for path in sorted((REPO / "study").rglob("*.py")):
        if path.parent == REPO / "study" / "core" / "store":
            continue
        for how, line, text in _strings_and_joins(ast.parse(path.read_text())):
            if (how == "string" and spelled.search(text)) or (how == "join" and text in store.NAMES):
                found.append(f"{path.relative_to(REPO)}:{line}: {text[:60]!r}")
    assert not found, "\n".join(found)


def test_the_layouts_name_the_files_where_the_study_has_always_written_them(tmp_path):
    r = store.Results(tmp_path)
    assert r.table == tmp_path / "table.csv" and r.hand_share == tmp_path / "gradcam" / "hand_share.csv"
    assert r.model("asl_photos/hand", 64, 2).head == tmp_path / "models" / "asl_photos-hand@64" / "seed2" / "head.npz"
    assert r.evaluation("asl_photos", 64, 0, "asl_alphabet", "test", 32) == (
        tmp_path / "eval" / "asl_photos@64" / "seed0" / "asl_alphabet.test.r32.json"
    )
    assert r.score("mine").predictions == tmp_path / "score" / "mine" / "predictions.csv"
    assert r.cue_unit("a", "b", "no 2-pixel border") == tmp_path / "cues" / "a~b" / "no_2-pixel_border.json"
    assert store.default_out("cpu") == store.RESULTS / "cpu"


def _checkout(path, name="study"):
    """A folder with the pyproject.toml of a project called `name`."""
    path.mkdir(parents=True, exist_ok=True)
    (path / "pyproject.toml").write_text(f'[project]\nname = "{name}"\n\n[tool.other]\nname = "x"\n')
    return path


def test_a_checkout_is_a_pyproject_naming_the_study(tmp_path):
    from conftest import REPO

    assert store.is_checkout(REPO) and store.is_checkout(_checkout(tmp_path / "a"))
    assert not store.is_checkout(_checkout(tmp_path / "b", name="other"))
    assert not store.is_checkout(tmp_path / "missing") and not store.is_checkout(tmp_path)
    (tmp_path / "pyproject.toml").write_text('[tool.x]\nname = "study"\n[project\n')  # not TOML
    assert not store.is_checkout(tmp_path)


def test_home_is_study_home_then_a_checkout_worked_in_then_the_package_s(tmp_path, monkeypatch):
    """The defaults are relative to HOME: $STUDY_HOME, else the working folder if it is a
    checkout, else the checkout the package is imported from, else the working folder."""
    from conftest import REPO

    here, package, plain = _checkout(tmp_path / "here"), _checkout(tmp_path / "package"), tmp_path / "plain"
    plain.mkdir()
    monkeypatch.setenv("STUDY_HOME", str(tmp_path / "chosen"))
    assert store.find_home(here, package) == tmp_path / "chosen"
    monkeypatch.delenv("STUDY_HOME")
    assert store.find_home(here, package) == here
    assert store.find_home(plain, package) == package
    assert store.find_home(plain, plain / "site-packages") == plain
    assert store.find_home(plain) == REPO  # this package's own checkout
    assert store.HOME == store.find_home() and store.default_out("cpu").resolve() == store.HOME / "results" / "cpu"
