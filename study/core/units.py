"""Units of work shared by the stages: skipped when done, refused when stale, resumable.

A unit is one piece of a stage (the features of one split at one resolution, one trained
head, one evaluation, the report). Its `spec` holds everything its output depends on: the
config it uses and the fingerprints of its inputs. Its marker file records that fingerprint
and a manifest of the files the unit made (size and sha256 of each). A unit is done when its
marker has the same fingerprint *and* every file of the manifest is there with the same size
and sha256: a marker whose artefacts are missing or changed never counts as done, so the next
run redoes exactly that unit. A marker with another fingerprint stops the stage, which asks
for `--force` rather than mix results of two configurations. Markers are written last and
atomically, so a unit killed half-way has none and runs again (or resumes, for training).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from study.core.errors import MissingArtefact, StaleResultError
from study.core.files import provenance, write_json_atomic

log = logging.getLogger(__name__)


def fingerprint(spec: dict[str, Any]) -> str:
    """Short (16 hex digits) sha256 of the spec as sorted JSON."""
    return hashlib.sha256(json.dumps(spec, sort_keys=True, default=str).encode()).hexdigest()[:16]


def dataset_fingerprint(summary: dict[str, Any]) -> str:
    """Names a prepared dataset by what `datasets.json` says of it: its TFDS name (which holds
    the preset's storage settings) and its archive's listing."""
    return fingerprint({"tfds_name": summary["tfds_name"], "archive": summary["archive"]["listing_sha256"]})


# sha256 of files already hashed by this process, by (path, inode, size, mtime): a stage asks
# about the same cached features many times.
_hashed: dict[tuple, str] = {}


def file_sha256(path: Path) -> str:
    """sha256 hex digest of the file's bytes, cached per path, inode, size and mtime."""
    st = os.stat(path)
    key = (str(Path(path).resolve()), st.st_ino, st.st_size, st.st_mtime_ns)
    if key not in _hashed:
        h = hashlib.sha256()
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
        _hashed[key] = h.hexdigest()
    return _hashed[key]


def manifest(marker: Path, files: Iterable[Path]) -> dict[str, dict[str, Any]]:
    """Size and sha256 of each file, by its path relative to the marker's folder."""
    base = Path(marker).parent
    return {
        Path(os.path.relpath(f, base)).as_posix(): {"bytes": os.stat(f).st_size, "sha256": file_sha256(Path(f))}
        for f in files
    }


def listed(marker: Path) -> set[Path]:
    """The files of a unit's manifest, as resolved paths."""
    marker = Path(marker)
    record = readable_record(marker)
    return {(marker.parent / rel).resolve() for rel in record.get("files", {})} if record else set()


def damaged(marker: Path, record: dict[str, Any] | None = None) -> list[str]:
    """The files of a unit's manifest that are missing or differ; ["(no manifest)"] for a
    marker that lists none (written before manifests existed): it cannot be checked."""
    marker = Path(marker)
    record = record if record is not None else read_marker(marker)
    if "files" not in record:
        return ["(no manifest)"]
    bad = []
    for rel, want in record["files"].items():
        p = marker.parent / rel
        try:
            ok = os.stat(p).st_size == want["bytes"] and file_sha256(p) == want["sha256"]
        except OSError:
            ok = False
        if not ok:
            bad.append(str(p))
    return bad


def is_done(marker: Path, spec: dict[str, Any], *, force: bool) -> bool:
    """True if `marker` records this spec's fingerprint and its files are intact; False if the
    unit must run; StaleResultError if it was made from another spec (unless `force`)."""
    marker = Path(marker)
    if not marker.is_file():
        return False
    record = readable_record(marker)
    if record is None:  # damaged (a crash, a disk filling up, an editor): redone, and said so
        log.warning("%s is damaged (not a JSON object); its unit is done again", marker)
        return False
    if record.get("fingerprint") == fingerprint(spec):
        return not damaged(marker, record)
    if force:
        return False
    old = record.get("spec", {})
    changed = sorted(
        k
        for k in set(old) | set(spec)
        if json.dumps(old.get(k), sort_keys=True, default=str) != json.dumps(spec.get(k), sort_keys=True, default=str)
    )
    raise StaleResultError(
        f"{'/'.join(marker.parts[-4:])}: existing results were made with another "
        f"configuration or other inputs (changed: {', '.join(changed) or 'unknown'}). Run "
        "with --force to recompute them, or use another --out folder."
    )


def require(marker: Path, spec: dict[str, Any], what: str, command: str) -> dict[str, Any]:
    """The marker of a unit another stage needs; MissingArtefact naming the first missing file
    and `command` if it is not done, StaleResultError if it was made from another spec."""
    marker = Path(marker)
    record = readable_record(marker) if marker.is_file() else None
    if record is None:
        raise MissingArtefact(what, marker, command)
    if record.get("fingerprint") != fingerprint(spec):
        is_done(marker, spec, force=False)  # raises, naming what changed
    bad = damaged(marker, record)
    if bad:
        raise MissingArtefact(what, marker if bad == ["(no manifest)"] else bad[0], command)
    return record


def mark_done(marker: Path, spec: dict[str, Any], files: Iterable[Path] = (), **extra: Any) -> None:
    """Record the unit as done: its fingerprint, spec, the manifest of `files`, `extra`."""
    write_json_atomic(
        Path(marker),
        {
            "fingerprint": fingerprint(spec),
            "spec": spec,
            "files": manifest(marker, files),
            **extra,
            "provenance": provenance(),
        },
    )


def readable_record(marker: Path) -> dict[str, Any] | None:
    """A marker's record; None if it cannot be read as a JSON object (damaged)."""
    try:
        record = json.loads(Path(marker).read_text())
    except (OSError, UnicodeDecodeError, ValueError):
        return None
    return record if isinstance(record, dict) else None


def read_marker(marker: Path) -> dict[str, Any]:
    """The JSON content of a unit's marker file."""
    return json.loads(Path(marker).read_text())
