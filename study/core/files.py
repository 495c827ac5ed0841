"""Writing result files: atomically, with the provenance every result carries; and the locks
that keep two runs from writing the same files at once."""

from __future__ import annotations

import contextlib
import csv
import datetime
import importlib.metadata
import io
import json
import os
import platform
import shlex
import socket
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from filelock import FileLock, Timeout

from study.core.errors import FolderBusy

_PACKAGES = (
    "jax",
    "flax",
    "optax",
    "numpy",
    "tensorflow-datasets",
    "array-record",
    "pillow",
    "scikit-learn",
    "pandas",
    "matplotlib",
)


def write_text_atomic(path: Path, text: str) -> None:
    """Write `text` to `path` via a temporary file in the same folder and a rename."""
    write_bytes_atomic(path, text.encode())


def write_bytes_atomic(path: Path, data: bytes) -> None:
    """Write `data` to `path` via a temporary file in the same folder and a rename. The file
    gets the mode `open()` would give it (0666 less the umask): mkstemp's private 0600 would
    keep a results folder or cache shared between users or hosts from being read."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            os.fchmod(f.fileno(), 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def csv_text(columns: list[str], rows: list[dict[str, Any]]) -> str:
    """A CSV with a header of `columns`, floats with 4 decimals."""
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=columns, lineterminator="\n")
    w.writeheader()
    for row in rows:
        w.writerow({k: (f"{v:.4f}" if isinstance(v, float) else v) for k, v in row.items()})
    return buf.getvalue()


def write_csv_atomic(path: Path, columns: list[str], rows: list[dict[str, Any]]) -> None:
    """`csv_text`, written atomically."""
    write_text_atomic(path, csv_text(columns, rows))


def write_csv_unless_same(path: Path, columns: list[str], rows: list[dict[str, Any]]) -> bool:
    """`write_csv_atomic` unless the file already holds exactly that text. True if written."""
    text = csv_text(columns, rows)
    with contextlib.suppress(OSError, UnicodeDecodeError):
        if Path(path).read_text() == text:
            return False
    write_text_atomic(path, text)
    return True


def read_csv(path: Path, ints: tuple[str, ...] = (), floats: tuple[str, ...] = ()) -> list[dict[str, Any]]:
    """The rows of a CSV that `write_csv_atomic` wrote, the named columns as numbers."""
    with open(path) as f:
        rows = list(csv.DictReader(f))
    for r in rows:
        r.update({k: int(r[k]) for k in ints} | {k: float(r[k]) for k in floats})
    return rows


def _umask() -> int:
    """The process's umask (read by setting it and setting it back: there is no other portable way)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def write_json_atomic(path: Path, obj: Any) -> None:
    """Write `obj` as indented JSON with a trailing newline to `path`, atomically."""
    write_text_atomic(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")


def write_json_unless_same(path: Path, obj: dict[str, Any], ignore: tuple[str, ...] = ("provenance",)) -> bool:
    """Write `obj` as JSON unless the file already says the same apart from the keys `ignore`
    (the code's commit, say): running `prepare` again changes no file, tracked or not. True if written."""
    path = Path(path)
    try:
        old = json.loads(path.read_text())
    except (OSError, ValueError):
        old = None
    if isinstance(old, dict) and {k: v for k, v in old.items() if k not in ignore} == json.loads(
        json.dumps({k: v for k, v in obj.items() if k not in ignore})
    ):
        return False
    write_json_atomic(path, obj)
    return True


def git_commit() -> dict[str, Any]:
    """The code's git commit and whether the code (the package, pyproject.toml) had uncommitted
    changes; None outside a checkout. Results files changing do not make the code dirty."""
    here = Path(__file__).resolve().parent
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no", "--", ".", "../pyproject.toml"],
            cwd=here,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return {"commit": None, "dirty": None}
    return {"commit": commit, "dirty": bool(dirty)}


def provenance() -> dict[str, Any]:
    """Code commit, Python and library versions: recorded in every result file."""
    versions = {}
    for name in _PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    return {"git": git_commit(), "python": platform.python_version(), "packages": versions}


def _holder_file(lock: Path) -> Path:
    return lock.with_name(lock.name + ".holder")


def _describe_holder(lock: Path) -> str:
    try:
        h = json.loads(_holder_file(lock).read_text())
        return f"run {h['pid']} on {h['host']} (`{h['command']}`, started {h['started']})"
    except (OSError, ValueError, KeyError):
        return "another run"


def _command() -> str:
    """This process's command line, as typed (without the path of the module it runs)."""
    if sys.argv and sys.argv[0].endswith(os.path.join("study", "run.py")):
        return shlex.join(["python", "-m", "study.run", *sys.argv[1:]])
    return shlex.join([Path(sys.argv[0]).name if sys.argv else "python", *sys.argv[1:]])


@contextlib.contextmanager
def held(lock: Path, what: str, echo: Callable[[str], None] = print, *, wait: bool = True) -> Iterator[None]:
    """Hold the file lock `lock` while doing `what`. When another run holds it, wait for it to
    finish (saying so), or with `wait=False` stop with FolderBusy naming that run. The lock is
    the operating system's (filelock), so a run that is killed releases it."""
    lock = Path(lock)
    lock.parent.mkdir(parents=True, exist_ok=True)
    flock = FileLock(lock)
    try:
        flock.acquire(timeout=0)
    except Timeout:
        holder = _describe_holder(lock)
        if not wait:
            raise FolderBusy(
                f"{what} is in use by {holder}. Wait for it to finish, or use another --out folder."
            ) from None
        echo(f"waiting for {holder} to finish with {what} ...")
        flock.acquire()
    try:
        if flock.lock_counter == 1:  # the outermost hold says who holds it
            write_json_atomic(
                _holder_file(lock),
                {
                    "pid": os.getpid(),
                    "host": socket.gethostname(),
                    "command": _command(),
                    "started": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
                },
            )
        yield
    finally:
        if flock.lock_counter == 1:
            _holder_file(lock).unlink(missing_ok=True)
        flock.release()
