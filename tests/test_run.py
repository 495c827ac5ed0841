"""The command line (study.run): every command's stage calls exist, a context returned by one
call reaches the next, the study's errors become one line and exit status 2, and a bug keeps
its traceback."""

from __future__ import annotations

import importlib

import pytest

from study import run
from study.core.errors import DatasetError

SEEN: list = []


def test_every_command_lists_stage_calls_that_exist():
    for name, command in run.COMMANDS.items():
        assert command.steps, name
        for step in command.steps:
            module, _, function = step.partition(":")
            assert callable(getattr(importlib.import_module(module), function)), step
    assert set(run.ALL) <= set(run.COMMANDS)


def _returns_a_new_context(ctx):
    return ctx.with_folder("photos", None, {"splits": {}})


def _sees_the_context(ctx):
    SEEN.append(ctx.scoring)


def test_a_context_returned_by_a_stage_call_reaches_the_next(tmp_path, monkeypatch):
    monkeypatch.setitem(run.COMMANDS, "try", run.Command("", (f"{__name__}:_returns_a_new_context", f"{__name__}:_sees_the_context")))
    ctx = run.context(run.parser().parse_args(["report", "--out", str(tmp_path)]))
    after = run.run(ctx, "try")
    assert SEEN[-1] == "photos" == after.scoring and ctx.scoring is None  # the first context is not changed


def argv(tmp_path, command="train"):
    return [command, "--preset", "smoke", "--out", str(tmp_path / "out"), "--data-dir", str(tmp_path / "data")]


def test_the_studys_errors_are_one_line_and_exit_status_2(tmp_path, monkeypatch, capsys):
    from study.stages import train

    def fails(ctx):
        raise DatasetError("the archive asl-alphabet/ is not there")

    monkeypatch.setattr(train, "run_stage", fails)
    assert run.main(argv(tmp_path)) == 2
    assert capsys.readouterr().err == "error: the archive asl-alphabet/ is not there\n"
    assert run.main(["train", "--preset", "huge"]) == 2 and "unknown preset 'huge'" in capsys.readouterr().err


def test_a_bug_inside_a_stage_keeps_its_traceback(tmp_path, monkeypatch):
    from study.stages import train

    def bug(ctx):
        return {}["no such key"]

    monkeypatch.setattr(train, "run_stage", bug)
    with pytest.raises(KeyError, match="no such key"):
        run.main(argv(tmp_path))
