"""Ctrl-C: a command stops, says how to resume and nothing else (no traceback, no worker's
noise, no leaked shared memory), and the same command then finishes; an interrupt that lands
in a finalizer is not lost (study.runtime.keep_interrupts)."""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import sys
import threading
import time

import pytest

from conftest import REPO, in_clone
from study import runtime

RESUME = "interrupted; run the same command again to resume"


@pytest.fixture(autouse=True)
def _ctrl_c_handled():
    """Ctrl-C handled as Python handles it at start, in this process and so in the commands it
    starts (a signal ignored here stays ignored in a child; a handled one is reset to its
    default there). In the whole suite an earlier test left SIGINT ignored in pytest's process
    (grain's worker set-up, study.datasets.pipeline._ignore_interrupts, is the suspect), and
    then no interrupt reached these tests."""
    before = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, before)


class _RaisesWhenDropped:
    """An object whose finalizer raises `exc`: Python reports that to sys.unraisablehook."""

    def __init__(self, exc: BaseException):
        self.exc = exc

    def __del__(self):
        raise self.exc


def test_an_interrupt_raised_in_a_finalizer_stops_the_main_thread(monkeypatch):
    reported = []
    monkeypatch.setattr(sys, "unraisablehook", reported.append)
    runtime.keep_interrupts()
    runtime.keep_interrupts()  # once is enough: a second call adds nothing
    _RaisesWhenDropped(ValueError("not an interrupt"))
    assert [type(u.exc_value) for u in reported] == [ValueError]  # to the hook there was before
    with pytest.raises(KeyboardInterrupt):
        _RaisesWhenDropped(KeyboardInterrupt())
        for _ in range(500):  # raised again here, within 50 ms
            time.sleep(0.01)
    assert len(reported) == 1  # and not reported


def _start(repo, *argv: str) -> subprocess.Popen:
    """`python -m study.run ARGV` in the clone, as `in_clone` runs it, in a process group of
    its own (the terminal's Ctrl-C reaches the whole group); stdout and stderr in one pipe."""
    env = dict(os.environ, PYTHONPATH=str(REPO), PYTHONSAFEPATH="1", PYTHONUNBUFFERED="1")
    return subprocess.Popen(
        [sys.executable, "-m", "study.run", *argv],
        cwd=repo,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )


def _lines(proc: subprocess.Popen) -> queue.Queue:
    """The process's output lines as they come, then None."""
    out: queue.Queue = queue.Queue()

    def read():
        for line in proc.stdout:
            out.put(line)
        out.put(None)

    threading.Thread(target=read, daemon=True).start()
    return out


@pytest.mark.slow
def test_ctrl_c_during_the_features_of_score_says_how_to_resume_and_nothing_else(smoke, tmp_path):
    """Ctrl-C (SIGINT to the process group, workers included) while `score` computes features
    in 2 worker processes (grain's): exit status 130, the last line says how to resume, and no
    traceback, no "Exception ignored" and no leaked shared memory; run again, it finishes."""
    from study.datasets import fake

    photos = tmp_path / "ctrl_c"  # a name of its own: score keeps a folder's results under its name
    fake.write_asl_folder(photos, split_dir=None, per_class=4, seed=3)
    argv = ("score", "--preset", "smoke", "--folder", str(photos), "--workers", "2")
    proc = _start(smoke, *argv)
    lines, printed = _lines(proc), []
    try:
        while (line := lines.get(timeout=900)) is not None:
            printed.append(line)
            if line.startswith("features ") and "landmark vectors" not in line:  # a unit done, the next under way
                os.killpg(proc.pid, signal.SIGINT)
                done = line.split(":")[0]
                break
        else:
            pytest.fail(f"score ended (exit {proc.wait()}) before computing features:\n{''.join(printed)[-3000:]}")
        while (line := lines.get(timeout=300)) is not None:
            printed.append(line)
        status = proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    output = "".join(printed)
    assert status != 0, f"score finished before the interrupt reached it:\n{output[-3000:]}"
    assert status == 130, output[-3000:]
    assert [x for x in output.splitlines() if x.strip()][-1] == RESUME, output[-3000:]
    for noise in ("Traceback", "Exception ignored", "leaked"):
        assert noise not in output, output[-3000:]
    again = in_clone(smoke, *argv, timeout=900)
    assert again.returncode == 0, again.stderr[-3000:]
    assert f"{done}:" not in again.stdout  # the unit finished before Ctrl-C was kept, the others computed
    assert "features " in again.stdout
