"""Which files under a folder are candidate DICOM files (inference/dicom_files.py): the one rule for the loader,
the report writers, the height registry and the C-STORE SCU."""

from __future__ import annotations

from pathlib import Path

from sarcoscreen.inference.dicom_files import find_dicom_files


def _touch(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"\0")
    return path


def test_a_folder_is_searched_recursively_in_path_order(tmp_path: Path) -> None:
    b = _touch(tmp_path / "b" / "IM0001")
    a2 = _touch(tmp_path / "a" / "deeper" / "IM0002")
    a1 = _touch(tmp_path / "a" / "IM0001")
    top = _touch(tmp_path / "z.dcm")
    assert find_dicom_files(tmp_path) == [a1, a2, b, top]
    assert find_dicom_files(str(tmp_path)) == [a1, a2, b, top]


def test_dicomdir_and_hidden_files_and_folders_are_left_out(tmp_path: Path) -> None:
    kept = _touch(tmp_path / "PT0" / "ST0" / "IM0")
    for name in ("DICOMDIR", "PT0/dicomdir", ".DS_Store", "PT0/._IM0", ".git/objects/IM9", "PT0/.IM0.1a2b3c4d.tmp"):
        _touch(tmp_path / name)
    assert find_dicom_files(tmp_path) == [kept]


def test_files_are_not_read_so_non_dicom_files_are_candidates(tmp_path: Path) -> None:
    """The readers decide and report what a file that is not DICOM is; the finder only applies the name rule."""
    notes = tmp_path / "notes.txt"
    notes.write_text("not DICOM", encoding="utf-8")
    assert find_dicom_files(tmp_path) == [notes]


def test_the_folder_given_may_itself_be_hidden(tmp_path: Path) -> None:
    inside = _touch(tmp_path / ".cache" / "series" / "IM1")
    assert find_dicom_files(tmp_path / ".cache" / "series") == [inside]
    assert find_dicom_files(tmp_path) == []


def test_paths_that_are_not_folders_are_taken_as_given_in_order(tmp_path: Path) -> None:
    folder_file = _touch(tmp_path / "series" / "IM1")
    dicomdir = _touch(tmp_path / "DICOMDIR")
    hidden = _touch(tmp_path / ".IM2")
    missing = tmp_path / "nowhere"
    assert find_dicom_files([hidden, tmp_path / "series", missing, dicomdir]) == [
        hidden, folder_file, missing, dicomdir]
    assert find_dicom_files(missing) == [missing]
    assert find_dicom_files([]) == []


def test_links_to_folders_are_not_followed(tmp_path: Path) -> None:
    kept = _touch(tmp_path / "series" / "IM1")
    (tmp_path / "series" / "loop").symlink_to(tmp_path, target_is_directory=True)
    assert find_dicom_files(tmp_path) == [kept]
