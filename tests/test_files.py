"""Files the study writes (study.core.files): atomic, readable as the umask allows, CSV round trips."""

from __future__ import annotations

import os
import stat

import pytest

from study.core.files import read_csv, write_bytes_atomic, write_csv_atomic


@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o002, 0o664), (0o077, 0o600)])
def test_written_files_get_the_mode_open_would_give(tmp_path, umask, mode):
    old = os.umask(umask)
    try:
        write_bytes_atomic(tmp_path / "a" / "x.json", b"{}")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "a" / "x.json").stat().st_mode) == mode
    assert [p.name for p in (tmp_path / "a").iterdir()] == ["x.json"]  # no temporary file left


def test_csv_round_trip_with_missing_cells(tmp_path):
    write_csv_atomic(
        tmp_path / "t.csv", ["file", "n", "p"], [{"file": "a.jpg", "n": 3, "p": 0.123456}, {"file": "b.jpg"}]
    )
    assert (tmp_path / "t.csv").read_text() == "file,n,p\na.jpg,3,0.1235\nb.jpg,,\n"
    assert read_csv(tmp_path / "t.csv") == [
        {"file": "a.jpg", "n": "3", "p": "0.1235"},
        {"file": "b.jpg", "n": "", "p": ""},
    ]
