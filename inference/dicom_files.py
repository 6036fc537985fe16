"""Which files under a folder are candidate DICOM files: the one rule for the loader, the report writers' source
headers, the height registry's patient look-up and the C-STORE SCU.

`find_dicom_files` takes paths - folders or files - and returns the files to read, in a stable order:

* a path that is **not a folder** is taken as given, whatever its name, and whether or not it exists: the caller
  named it, so the caller reports what it is (the loader skips it with a warning when it is not DICOM, the SCU
  reports it as not sent);
* a **folder** is searched recursively (a case folder with ``ct/`` and ``rtstruct/`` subfolders is one input),
  its files sorted by path. Left out are
  - files named ``DICOMDIR`` (any case): the directory of a File-set (PS3.10 8.6; the Basic Directory IOD, PS3.3
    F.3), which indexes the instances beside it and is not one of them;
  - files and folders whose name begins with ``.`` below the folder given: operating-system metadata
    (``.DS_Store``, AppleDouble ``._*`` files), version-control and trash folders, and the temporary files of
    writes in progress (``FileModes.atomic`` writes ``.<name>.<random>.tmp``). The folder given may itself be
    hidden or lie in a hidden folder;
  - links to folders are not followed (`pathlib.Path.rglob`), so a link cycle cannot make the search endless.

Nothing is read here: whether a file holds a DICOM data set - with the PS3.10 preamble and ``DICM`` prefix or, as
old exports have, a bare data set - is for the reader to find out, as is what to say about one that does not.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

__all__ = ["find_dicom_files"]

_DICOMDIR = "DICOMDIR"
"""The file name of a File-set's directory (PS3.10 8.6), compared without regard to case."""


def _left_out(relative: Path) -> bool:
    """Whether a file at `relative` (its path below the folder searched) is left out of a folder's files: a
    DICOMDIR, or the file or one of the folders it lies in is hidden (name beginning with ``.``)."""
    return relative.name.upper() == _DICOMDIR or any(part.startswith(".") for part in relative.parts)


def _files_in(folder: Path) -> list[Path]:
    return sorted(path for path in folder.rglob("*") if path.is_file() and not _left_out(path.relative_to(folder)))


def find_dicom_files(paths: Path | str | Iterable[Path | str]) -> list[Path]:
    """The candidate DICOM files of `paths` (one path, or several): every folder's files found by the rule of the
    module docstring, every other path as given, in the order of `paths`."""
    given = [Path(paths)] if isinstance(paths, str | Path) else [Path(p) for p in paths]
    files: list[Path] = []
    for path in given:
        files.extend(_files_in(path) if path.is_dir() else [path])
    return files
