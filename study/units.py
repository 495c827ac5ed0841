"""Units of work shared by the stages: skipped when done, refused when stale, resumable.

A unit is one piece of a stage (the features of one split at one resolution, one trained
head, one evaluation). Its `spec` holds everything its output depends on: the config it uses
and the fingerprints of its inputs. When the unit's marker file exists with the same
fingerprint the unit is skipped; with another fingerprint the stage stops and asks for
`--force` rather than mix results of two configurations. Markers are written last and
atomically, so a unit killed half-way has none and runs again (or resumes, for training).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from study.files import provenance, write_json_atomic


class StaleResultError(RuntimeError):
    """Existing results were made from another configuration or other inputs."""


def fingerprint(spec: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(spec, sort_keys=True, default=str).encode()).hexdigest()[:16]


def is_done(marker: Path, spec: dict[str, Any], *, force: bool) -> bool:
    """True if `marker` records this spec's fingerprint; False if the unit must run."""
    marker = Path(marker)
    if not marker.is_file():
        return False
    record = json.loads(marker.read_text())
    if record.get("fingerprint") == fingerprint(spec):
        return True
    if force:
        return False
    old = record.get("spec", {})
    changed = sorted(k for k in set(old) | set(spec) if json.dumps(old.get(k), sort_keys=True, default=str) != json.dumps(spec.get(k), sort_keys=True, default=str))
    raise StaleResultError(
        f"{'/'.join(marker.parts[-4:])}: existing results were made with another "
        f"configuration or other inputs (changed: {', '.join(changed) or 'unknown'}). Run "
        "with --force to recompute them, or use another --out folder."
    )


def mark_done(marker: Path, spec: dict[str, Any], **extra: Any) -> None:
    write_json_atomic(Path(marker), {"fingerprint": fingerprint(spec), "spec": spec, **extra, "provenance": provenance()})


def read_marker(marker: Path) -> dict[str, Any]:
    return json.loads(Path(marker).read_text())
