"""A read-only view of a dataset archive: an unzipped folder or the zip file Kaggle serves.

Both give the same relative POSIX paths (relative to the layout's root, found by a marker
path such as `asl_alphabet_train/asl_alphabet_train/`), so the builders never care which
form the user has. Zip members are read in place: nothing is extracted to disk. In a folder,
a symbolic link that leads outside the folder is listed (so that it is accounted for) but
never followed: `refused` names such files (and broken links) with the reason, and reading
one is refused.
"""

from __future__ import annotations

import hashlib
import os
import threading
import zipfile
from pathlib import Path

from study.core.errors import DatasetError


class Archive:
    """Files under `root` of a folder or a zip; paths are POSIX and relative to `prefix`."""

    def __init__(self, path: Path, prefix: str = ""):
        self.path = Path(path)
        self.prefix = prefix.strip("/") + "/" if prefix.strip("/") else ""
        self.kind = "zip" if self.path.is_file() else "directory"
        self._zip: zipfile.ZipFile | None = None
        self._lock = threading.Lock()
        # Links to somewhere outside the folder given, and broken links: listed, never read.
        self.refused: dict[str, str] = {}
        self._sizes = self._list()

    def _list(self) -> dict[str, int]:
        sizes: dict[str, int] = {}
        if self.kind == "zip":
            self._zip = zipfile.ZipFile(self.path)
            for info in self._zip.infolist():
                if not info.is_dir() and info.filename.startswith(self.prefix):
                    sizes[info.filename[len(self.prefix) :]] = info.file_size
        else:
            base = self.path / self.prefix if self.prefix else self.path
            root = self.path.resolve()
            for dirpath, dirnames, filenames in os.walk(base):  # does not descend into linked folders
                dirnames.sort()
                rel = Path(dirpath).relative_to(base).as_posix()
                for d in dirnames:
                    if os.path.islink(os.path.join(dirpath, d)):
                        name = _printable((d if rel == "." else f"{rel}/{d}") + "/")
                        self.refused[name], sizes[name] = "link to a folder (not followed)", 0
                for f in filenames:
                    name = f if rel == "." else f"{rel}/{f}"
                    path = os.path.join(dirpath, f)
                    if not _utf8(name):  # it could be neither read by name later nor written into a summary
                        name = _printable(name)
                        self.refused[name] = "file name is not valid UTF-8 (not read; rename it)"
                    elif os.path.islink(path):
                        try:
                            target = Path(path).resolve(strict=True)
                        except (OSError, RuntimeError):  # a link to nothing, or to itself
                            self.refused[name] = "broken link, or a link that loops (not read)"
                        else:
                            if not target.is_relative_to(root):
                                self.refused[name] = "link to a file outside the folder (not read)"
                            elif not target.is_file():
                                self.refused[name] = "link to something that is not a file (not read)"
                    sizes[name] = os.lstat(path).st_size if name in self.refused else os.stat(path).st_size
        return dict(sorted(sizes.items()))

    @property
    def files(self) -> list[str]:
        """Every file that may be read (the refused ones are counted, not listed here)."""
        return [n for n in self._sizes if n not in self.refused]

    def size(self, name: str) -> int:
        """Size in bytes of the member `name`."""
        return self._sizes[name]

    def read(self, name: str) -> bytes:
        """The bytes of one file; safe to call from several threads."""
        if name in self.refused:
            raise PermissionError(f"{name}: {self.refused[name]}")
        if self._zip is not None:
            with self._lock:  # one ZipFile handle; reads are short, decoding happens outside
                return self._zip.read(self.prefix + name)
        return (self.path / (self.prefix + name)).read_bytes()

    def fingerprint(self) -> str:
        """sha256 of the listing (names and sizes): changes when files are added, removed or resized."""
        h = hashlib.sha256()
        for name, size in self._sizes.items():
            h.update(f"{name}\t{size}\n".encode())
        return h.hexdigest()

    def describe(self) -> dict:
        """The archive's form, file count and listing fingerprint, for the prepare record."""
        return {"form": self.kind, "files": len(self._sizes), "listing_sha256": self.fingerprint()}

    def close(self) -> None:
        """Close the underlying zip file, if one is open."""
        if self._zip is not None:
            self._zip.close()
            self._zip = None


def _utf8(name: str) -> bool:
    """Whether a name read from the file system is valid UTF-8 (os.walk keeps other bytes as surrogates)."""
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _printable(name: str) -> str:
    """A name as it can be listed in a summary: bytes that are not UTF-8 written as \\xNN."""
    return name if _utf8(name) else os.fsencode(name).decode("utf-8", "backslashreplace")


def find_archive(manual_dir: Path, marker: str, zip_names: tuple[str, ...]) -> Archive | None:
    """The archive in `manual_dir`: an unzipped layout containing `marker`, or a zip holding it.

    The unzipped layout may sit directly in `manual_dir` or one folder down (an archive
    unzipped into a folder of its own name). Zips named in `zip_names` are tried first, then
    any other `*.zip` there. None if nothing matches.
    """
    manual_dir = Path(manual_dir)
    if not manual_dir.is_dir():
        return None
    marker = marker.strip("/")
    if (manual_dir / marker).is_dir():
        return Archive(manual_dir)
    for sub in sorted(p for p in manual_dir.iterdir() if p.is_dir()):
        if (sub / marker).is_dir():
            return Archive(manual_dir, prefix=sub.name)
    zips = [manual_dir / z for z in zip_names if (manual_dir / z).is_file()]
    zips += sorted(p for p in manual_dir.glob("*.zip") if p not in zips)
    for z in zips:
        try:
            with zipfile.ZipFile(z) as zf:
                names = zf.namelist()
        except zipfile.BadZipFile as e:
            raise DatasetError(
                f"{z.name} is not a readable zip ({e}); the download may be incomplete: delete it and download it again"
            ) from None
        for name in names:
            i = name.find(marker + "/")
            if i == 0 or (i > 0 and name[i - 1] == "/"):
                return Archive(z, prefix=name[:i])
    return None


def listed(skipped: list[dict], most: int = 8) -> str:
    """ "a.jpg: corrupt image; ...": the files skipped, a few of them, and how many more."""
    if not skipped:
        return "no image file found"
    text = "; ".join(f"{s['path']}: {s['reason']}" for s in skipped[:most])
    return f"{len(skipped)} skipped: {text}" + (f"; and {len(skipped) - most} more" if len(skipped) > most else "")
