"""Units of work (study.core.units): done only with the same fingerprint and intact files,
refused when made from another spec, required with a message that names the command."""

from __future__ import annotations

import json

import pytest

from study.core.errors import MissingArtefact, StaleResultError, StudyError
from study.core.units import damaged, file_sha256, fingerprint, is_done, listed, mark_done, require


def test_fingerprint_ignores_key_order_and_sees_every_value():
    assert fingerprint({"a": 1, "b": [1, 2]}) == fingerprint({"b": [1, 2], "a": 1})
    assert fingerprint({"a": 1}) != fingerprint({"a": 2}) and len(fingerprint({})) == 16


def test_a_unit_is_done_with_its_spec_and_intact_files(tmp_path):
    out = tmp_path / "unit"
    out.mkdir()
    (out / "x.npy").write_bytes(b"abc")
    spec = {"kind": "test", "n": 1}
    marker = out / "unit.json"
    assert not is_done(marker, spec, force=False)  # no marker: to run
    mark_done(marker, spec, [out / "x.npy"], images=3)
    rec = json.loads(marker.read_text())
    assert rec["files"] == {"x.npy": {"bytes": 3, "sha256": file_sha256(out / "x.npy")}} and rec["images"] == 3
    assert "git" in rec["provenance"] and is_done(marker, spec, force=False)
    assert listed(marker) == {(out / "x.npy").resolve()}
    (out / "x.npy").write_bytes(b"abd")  # same size, other bytes: damaged, so redone
    assert damaged(marker) == [str(out / "x.npy")] and not is_done(marker, spec, force=False)
    (out / "x.npy").unlink()
    assert not is_done(marker, spec, force=False)


def test_another_spec_is_refused_naming_what_changed_unless_forced(tmp_path):
    marker = tmp_path / "unit.json"
    mark_done(marker, {"kind": "test", "lr": 1e-3, "epochs": 5})
    with pytest.raises(StaleResultError, match=r"changed: lr\).*--force") as e:
        is_done(marker, {"kind": "test", "lr": 1e-2, "epochs": 5}, force=False)
    assert isinstance(e.value, StudyError)
    assert is_done(marker, {"kind": "test", "lr": 1e-2, "epochs": 5}, force=True) is False


def test_require_names_the_missing_file_and_the_command(tmp_path):
    spec = {"kind": "test"}
    with pytest.raises(MissingArtefact, match=r"features of x is missing or incomplete .*run `make it`"):
        require(tmp_path / "unit.json", spec, "features of x", "make it")
    (tmp_path / "a.bin").write_bytes(b"1")
    mark_done(tmp_path / "unit.json", spec, [tmp_path / "a.bin"])
    assert require(tmp_path / "unit.json", spec, "x", "y")["fingerprint"] == fingerprint(spec)
    (tmp_path / "a.bin").write_bytes(b"")
    with pytest.raises(MissingArtefact, match="a.bin"):
        require(tmp_path / "unit.json", spec, "x", "y")


def test_file_sha256_is_recomputed_when_the_file_changes(tmp_path):
    p = tmp_path / "f"
    p.write_bytes(b"one")
    first = file_sha256(p)
    p.write_bytes(b"two, longer")
    assert file_sha256(p) != first
