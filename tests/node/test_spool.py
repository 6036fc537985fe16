"""The spool: atomic durable writes, duplicates stored once, UIDs validated, disk reserve, quarantine, a read-only
disk (a real tmpfs remounted read-only: binds for root too), damaged files told from the file alone."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from ct_series_factory import write_ct_series
from filesystems import read_only, small_filesystem

from sarcoscreen.node.spool import (
    InsufficientStorageError,
    InvalidUidError,
    Spool,
    SpoolNotWritableError,
    file_damage,
    is_valid_uid,
)

SERIES = "1.2.826.0.1.3680043.10.543.1"
SOP = "1.2.826.0.1.3680043.10.543.1.7"


def _spool(tmp_path: Path, reserve: int = 0) -> Spool:
    return Spool(tmp_path / "spool", tmp_path / "quarantine", reserve)


def test_store_writes_the_bytes_under_series_and_sop_uid(tmp_path: Path) -> None:
    spool = _spool(tmp_path)
    stored = spool.store(b"DICM-bytes", SERIES, SOP)
    assert stored.relative_path == f"{SERIES}/{SOP}.dcm"
    assert stored.path.read_bytes() == b"DICM-bytes"
    assert not stored.duplicate
    assert stored.size == 10
    assert list(spool.walk()) == [(SERIES, SOP, stored.relative_path)]
    assert not any((tmp_path / "spool" / ".incoming").iterdir())


def test_a_duplicate_is_stored_once_and_the_first_copy_kept(tmp_path: Path) -> None:
    spool = _spool(tmp_path)
    first = spool.store(b"first", SERIES, SOP)
    again = spool.store(b"second", SERIES, SOP)
    assert again.duplicate
    assert again.sha256 == first.sha256
    assert first.path.read_bytes() == b"first"
    assert len(list(spool.walk())) == 1


@pytest.mark.parametrize("uid", ["../../etc/passwd", "1.2.03", "1..2", "abc", "1." + "2" * 70, ""])
def test_invalid_uids_are_never_used_as_file_names(tmp_path: Path, uid: str) -> None:
    assert not is_valid_uid(uid)
    spool = _spool(tmp_path)
    with pytest.raises(InvalidUidError, match="not a valid DICOM UID"):
        spool.store(b"x", SERIES, uid)
    with pytest.raises(InvalidUidError):
        spool.store(b"x", uid, SOP)
    assert list(spool.walk()) == []


def test_below_the_disk_reserve_nothing_is_written(tmp_path: Path) -> None:
    spool = _spool(tmp_path)
    reserve = spool.free_bytes() + 1  # more than is free: the spool must refuse
    spool.min_free_bytes = reserve
    with pytest.raises(InsufficientStorageError, match="MiB free on the spool's disk"):
        spool.store(b"x", SERIES, SOP)
    assert list(spool.walk()) == []


def test_quarantine_keeps_the_bytes_and_the_reason(tmp_path: Path) -> None:
    spool = _spool(tmp_path)
    path = spool.quarantine(b"garbage", "not a DICOM file", calling_ae="SCANNER1")
    assert path.read_bytes() == b"garbage"
    note = json.loads(path.with_suffix(".json").read_text(encoding="utf-8"))
    assert note["reason"] == "not a DICOM file"
    assert note["calling_ae"] == "SCANNER1"


def test_incomplete_writes_from_a_crash_are_discarded(tmp_path: Path) -> None:
    spool = _spool(tmp_path)
    (tmp_path / "spool" / ".incoming" / "dead.part").write_bytes(b"half")
    assert spool.discard_incomplete() == 1
    assert list(spool.walk()) == []


def test_a_read_only_spool_refuses_with_the_reason_and_keeps_its_files(tmp_path: Path) -> None:
    with small_filesystem(tmp_path / "disk") as disk:
        spool = Spool(disk / "spool", disk / "quarantine")
        kept = spool.store(b"first", SERIES, SOP)
        (disk / "spool" / ".incoming" / "dead.part").write_bytes(b"half")
        assert spool.writable()
        read_only(disk)  # EROFS, as when the kernel remounts a failing disk: binds for root too
        assert not spool.writable()
        with pytest.raises(SpoolNotWritableError, match="read-only file system"):
            spool.store(b"second", SERIES, SOP + "1")
        with pytest.raises(SpoolNotWritableError, match="read-only file system"):
            spool.quarantine(b"junk", "not DICOM (test)")
        assert spool.discard_incomplete() == 0  # cannot be removed now; logged, left for the next start
        again = spool.store(b"first", SERIES, SOP)  # what was kept is still a duplicate, not an error
        assert again.duplicate
        assert kept.path.read_bytes() == b"first"
        # A spool folder that cannot be created is an error of its own, not a crash elsewhere later.
        with pytest.raises(SpoolNotWritableError, match="cannot create"):
            Spool(disk / "other", disk / "quarantine")


def test_damage_is_told_from_the_file_alone(tmp_path: Path) -> None:
    series = write_ct_series(tmp_path / "ct", 1, rows=8, columns=8)
    data = series.files[0].read_bytes()
    pixels = data.index(b"\xe0\x7f\x10\x00")
    cases = {b"": "empty (0 bytes)", data: None, data[:-1]: "truncated", data[:pixels]: "truncated",
             data[:pixels + 6]: "truncated", b"\0" * 132: "not readable as DICOM"}
    for content, expected in cases.items():
        path = tmp_path / "file.dcm"
        path.write_bytes(content)
        found = file_damage(path)
        assert (found is None) if expected is None else (expected in (found or "")), (len(content), found)
