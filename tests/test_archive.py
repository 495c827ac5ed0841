import zipfile

import pytest

from study.datasets.archive import Archive, DatasetError, find_archive


def make_tree(root):
    for name, data in {"top/a/x.jpg": b"12", "top/a/y.jpg": b"345", "top/b/z.png": b"", "README": b"r"}.items():
        p = root / name
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)


def test_folder_and_zip_list_and_read_the_same(tmp_path):
    make_tree(tmp_path / "d")
    with zipfile.ZipFile(tmp_path / "z.zip", "w") as zf:
        for p in sorted((tmp_path / "d").rglob("*")):
            if p.is_file():
                zf.write(p, p.relative_to(tmp_path / "d").as_posix())
    a, b = Archive(tmp_path / "d"), Archive(tmp_path / "z.zip")
    assert a.files == b.files == ["README", "top/a/x.jpg", "top/a/y.jpg", "top/b/z.png"]
    assert a.fingerprint() == b.fingerprint()
    assert a.read("top/a/y.jpg") == b.read("top/a/y.jpg") == b"345"
    assert a.size("top/b/z.png") == 0


def test_fingerprint_changes_with_the_listing(tmp_path):
    make_tree(tmp_path)
    before = Archive(tmp_path).fingerprint()
    (tmp_path / "top/a/x.jpg").write_bytes(b"1234")
    assert Archive(tmp_path).fingerprint() != before


def test_find_archive_by_marker_in_place_one_down_or_zipped(tmp_path):
    make_tree(tmp_path / "in_place")
    assert find_archive(tmp_path / "in_place", "top/a", ()).prefix == ""
    make_tree(tmp_path / "down" / "inner")
    arch = find_archive(tmp_path / "down", "top/a/", ())
    assert arch.prefix == "inner/" and "top/a/x.jpg" in arch.files
    (tmp_path / "z").mkdir()
    with zipfile.ZipFile(tmp_path / "z" / "data.zip", "w") as zf:
        zf.writestr("wrap/top/a/x.jpg", b"12")
        zf.writestr("__MACOSX/wrap/._x.jpg", b"junk")
    arch = find_archive(tmp_path / "z", "top/a", ("named.zip",))
    assert arch.kind == "zip" and arch.files == ["top/a/x.jpg"]
    assert find_archive(tmp_path / "nowhere", "top/a", ()) is None
    assert find_archive(tmp_path / "z", "other", ()) is None


def test_broken_zip_is_refused(tmp_path):
    (tmp_path / "asl-alphabet.zip").write_bytes(b"PK\x03\x04 truncated")
    with pytest.raises(DatasetError, match="not a readable zip"):
        find_archive(tmp_path, "x", ("asl-alphabet.zip",))
