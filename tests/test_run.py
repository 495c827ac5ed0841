"""The command line (study.run): every command's stage calls exist, a context returned by one
call reaches the next, the study's errors become one line and exit status 2, and a bug keeps
its traceback."""

from __future__ import annotations

import importlib
import subprocess
from pathlib import Path

import pytest

from conftest import REPO
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
    monkeypatch.setitem(
        run.COMMANDS, "try", run.Command("", (f"{__name__}:_returns_a_new_context", f"{__name__}:_sees_the_context"))
    )
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


@pytest.mark.parametrize("option", [["--workers", "-3"], ["--workers", "two"]])
def test_a_bad_number_is_refused_in_one_line_with_exit_status_2(option, capsys):
    with pytest.raises(SystemExit) as e:
        run.main(["features", *option])
    assert e.value.code == 2
    assert "expected a whole number of at least 0" in capsys.readouterr().err


def test_an_out_folder_that_cannot_hold_results_is_refused_before_any_work(tmp_path, capsys):
    (tmp_path / "a_file").write_text("x")
    assert run.main(["report", "--preset", "smoke", "--out", str(tmp_path / "a_file")]) == 2
    assert capsys.readouterr().err == f"error: --out {tmp_path / 'a_file'} is a file, not a folder\n"
    assert run.main(["report", "--preset", "smoke", "--out", "/sys/kernel"]) == 2  # not writable, even for root
    assert "error: --out /sys/kernel is not writable" in capsys.readouterr().err


def test_ctrl_c_is_one_line_and_says_how_to_resume(tmp_path, monkeypatch, capsys):
    from study.stages import train

    def interrupted(ctx):
        raise KeyboardInterrupt

    monkeypatch.setattr(train, "run_stage", interrupted)
    assert run.main(argv(tmp_path)) == 130
    assert capsys.readouterr().err == "interrupted; run the same command again to resume\n"


def test_bench_in_the_record_folder_writes_a_file_git_ignores_unless_record():
    """Timing one's machine must not change the committed bench.json (which the docs quote)."""

    def ctx(*a):
        return run.context(run.parser().parse_args(["bench", *a]))

    assert ctx().bench_path == Path("results/cpu/bench.local.json")
    assert ctx("--record").bench_path == Path("results/cpu/bench.json")
    assert ctx("--out", "elsewhere").bench_path == Path("elsewhere/bench.json")
    assert ctx("--preset", "smoke").bench_path == Path("results/smoke/bench.json")
    ignored = subprocess.run(["git", "check-ignore", "-q", "results/cpu/bench.local.json"], cwd=REPO)
    assert ignored.returncode == 0
