"""The malformed-series set: series a broken or hostile site sends, each over its own association.

Every item is a small CT series (64 x 64, `ct_series_factory.write_ct_series`) with one thing wrong - geometry the
loader must refuse, pixel attributes that do not fit the pixel data, values the routing must judge, UIDs the SCP
must refuse, patient values that break their VR, a data set nested deeper than a parser's recursion, a second
series reusing the first one's SOP Instance UIDs - and one of the fake patients of `chaos.phi`. Files are sent
as written (pynetdicom's chunked mode), so nothing is repaired on the way.

Checked per item: the node stays up, every acknowledged instance is indexed with its file, every refused one is
quarantined, the series ends in a decided state (``processed``, ``skipped`` with a reason, ``failed`` with the
job's error) within the deadline, and an item's own check where it has one (e.g. the content of an acknowledged
instance must be the one kept). An ``internal error`` (an exception the node did not classify) is reported.
"""

from __future__ import annotations

import re
import time
import warnings
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from io import BytesIO
from pathlib import Path

import numpy as np
import pydicom
from ct_series_factory import write_ct_series
from node_support import NodeConfig
from pydicom import Dataset
from pydicom.datadict import dictionary_VR
from pydicom.dataelem import RawDataElement
from pydicom.tag import Tag
from pydicom.uid import EnhancedCTImageStorage, generate_uid
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from chaos.databases import Backend, fresh_database
from chaos.dicom_io import store
from chaos.fuzz import fuzz_sections, refused
from chaos.node_control import NodeUnderTest
from chaos.phi import (
    MALFORMED,
    PATIENTS,
    WELL_FORMED,
    FakePatient,
    stamp,
)
from chaos.settle import NodeRunRecord, node_session, quarantine_folder, scan_everything, settled_database
from sarcoscreen.db.models import Job, Series

__all__ = ["ITEMS", "MalformedItem", "MalformedResult", "run_malformed"]

N, ROWS, COLUMNS = 5, 64, 64
_UID = re.compile(r"\b\d+(?:\.\d+){4,}\b")


@dataclass(frozen=True)
class Written:
    """What an item wrote: the files to send (in order) and the series it is about."""

    files: list[Path]
    series_uids: list[str]
    check: Callable[[Engine, list[dict[str, int | None]]], str | None] | None = None
    """An item's own check, given the database and each association's statuses (SOP Instance UID -> status)."""


Builder = Callable[[Path, FakePatient], Written]


@dataclass(frozen=True)
class MalformedItem:
    name: str
    build: Builder


def _series(folder: Path, patient: FakePatient, n: int = N, transform: Callable[[Dataset, int], None] | None = None,
            **kwargs: object) -> Written:
    def both(ds: Dataset, number: int) -> None:
        stamp(ds, patient)
        if transform is not None:
            transform(ds, number)

    with warnings.catch_warnings():  # pydicom warns about the values made invalid on purpose
        warnings.simplefilter("ignore")
        series = write_ct_series(folder, n, ROWS, COLUMNS, shuffle=False, transform=both,
                                 **kwargs)  # type: ignore[arg-type]
    return Written(series.files, [series.series_instance_uid])


def _on(number: int, change: Callable[[Dataset], None]) -> Callable[[Dataset, int], None]:
    def transform(ds: Dataset, n: int) -> None:
        if n == number:
            change(ds)

    return transform


def _several(*changes: Callable[[Dataset], None]) -> Callable[[Dataset], None]:
    def change(ds: Dataset) -> None:
        for one in changes:
            one(ds)

    return change


def _every(change: Callable[[Dataset], None]) -> Callable[[Dataset, int], None]:
    return lambda ds, _n: change(ds)


def _set(**values: object) -> Callable[[Dataset], None]:
    def change(ds: Dataset) -> None:
        for keyword, value in values.items():
            setattr(ds, keyword, value)

    return change


def _raw(keyword: str, text: str) -> Callable[[Dataset], None]:
    """Set `keyword` to `text` exactly as written (no conversion, so not-a-number values survive)."""

    def change(ds: Dataset) -> None:
        tag = Tag(keyword)
        value = text.encode("latin-1")
        value += b" " * (len(value) % 2)
        ds._dict[tag] = RawDataElement(tag, dictionary_VR(tag), len(value), value, 0, False, True)

    return change


def _delete(*keywords: str) -> Callable[[Dataset], None]:
    def change(ds: Dataset) -> None:
        for keyword in keywords:
            if keyword in ds:
                delattr(ds, keyword)

    return change


def _rows_32(ds: Dataset) -> None:
    ds.Rows = 32
    ds.PixelData = np.zeros((32, COLUMNS), np.uint16).tobytes()


def _short_pixels(ds: Dataset) -> None:
    ds.PixelData = ds.PixelData[: len(ds.PixelData) // 2]


def _rgb(ds: Dataset) -> None:
    ds.SamplesPerPixel, ds.PhotometricInterpretation, ds.PlanarConfiguration = 3, "RGB", 0
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = 8, 8, 7
    ds.PixelData = np.zeros((ROWS, COLUMNS, 3), np.uint8).tobytes()


def _rewrite(path: Path, change: Callable[[bytes, bytes], tuple[bytes, bytes]]) -> None:
    """Edit the File Meta bytes and the data set bytes of a written file."""
    data = path.read_bytes()
    fp = BytesIO(data)
    fp.seek(132)
    pydicom.filereader.read_dataset(fp, False, True, stop_when=lambda tag, _vr, _length: tag.group != 2)
    head, body = change(data[:fp.tell()], data[fp.tell():])
    path.write_bytes(head + body)


def _nested(depth: int) -> Builder:
    """A Content Sequence nested `depth` items deep (undefined lengths) before the Pixel Data."""

    def build(folder: Path, patient: FakePatient) -> Written:
        written = _series(folder, patient)
        sequence = b"\x40\x00\x30\xa7SQ\x00\x00\xff\xff\xff\xff"
        item, item_end = b"\xfe\xff\x00\xe0\xff\xff\xff\xff", b"\xfe\xff\x0d\xe0\x00\x00\x00\x00"
        sequence_end = b"\xfe\xff\xdd\xe0\x00\x00\x00\x00"
        nest = (sequence + item) * depth + (item_end + sequence_end) * depth
        for path in written.files:
            def insert(head: bytes, body: bytes) -> tuple[bytes, bytes]:
                at = body.rfind(b"\xe0\x7f\x10\x00")  # (7FE0,0010) is the last element
                return head, body[:at] + nest + body[at:]

            _rewrite(path, insert)
        return written

    return build


def _meta_uid_differs(folder: Path, patient: FakePatient) -> Written:
    """The File Meta's SOP Instance UID (the request's Affected SOP Instance UID) one digit off the data set's."""
    written = _series(folder, patient)
    for path in written.files:
        uid = str(pydicom.dcmread(path, stop_before_pixels=True).SOPInstanceUID)
        other = uid[:-1] + ("1" if uid[-1] != "1" else "2")
        _rewrite(path, lambda head, body, u=uid, o=other: (head.replace(u.encode(), o.encode()), body))
    return written


def _enhanced_without_frames(folder: Path, patient: FakePatient) -> Written:
    written = _series(folder, patient, n=1, transform=_every(_set(NumberOfFrames=3)))
    for path in written.files:
        ds = pydicom.dcmread(path)
        ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = EnhancedCTImageStorage
        ds.PixelData = ds.PixelData * 3
        ds.save_as(path, enforce_file_format=True)
    return written


def _unknown_charset(folder: Path, patient: FakePatient) -> Written:
    def change(ds: Dataset) -> None:
        ds.SpecificCharacterSet = "ISO_IR 999"
        ds.add_new(0x00100010, "PN", "Zqxphi^Wölhelmina".encode("latin-1"))

    return _series(folder, patient, transform=_every(change))


def _reused_sop_uids(folder: Path, patient: FakePatient) -> Written:
    """A second series whose instances reuse the first one's SOP Instance UIDs (different pixels, other series)."""
    first = write_ct_series(folder / "first", N, ROWS, COLUMNS, shuffle=False, seed=1,
                            transform=lambda ds, _n: stamp(ds, patient))
    uids = iter(first.sop_instance_uids)

    def reuse(ds: Dataset, _n: int) -> None:
        stamp(ds, patient)
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = next(uids)

    second = write_ct_series(folder / "second", N, ROWS, COLUMNS, shuffle=False, seed=2, transform=reuse)

    def check(engine: Engine, associations: list[dict[str, int | None]]) -> str | None:
        acknowledged = sum(1 for status in associations[-1].values() if status == 0x0000)
        with Session(engine) as session:
            kept = session.execute(select(Series.instance_count).where(
                Series.series_instance_uid == second.series_instance_uid)).scalar_one_or_none() or 0
        if kept >= acknowledged:
            return None  # refused (a SOP Instance UID names one instance), or kept
        return (f"{acknowledged} instances of the second series were acknowledged, {kept} kept (their SOP Instance "
                "UIDs were the first series')")

    # The second series' files are sent in a second association (see run_malformed: files in order).
    return Written([*first.files, *second.files], [first.series_instance_uid, second.series_instance_uid], check)


def _tilt_positions() -> list[tuple[float, float, float]]:
    return [(-12.0, -30.0 + n * 0.9, 100.0 + n * 2.5) for n in range(N)]


ITEMS: tuple[MalformedItem, ...] = (
    MalformedItem("gantry tilt 20 degrees (sheared positions)",
                  lambda f, p: _series(f, p, positions=_tilt_positions(), GantryDetectorTilt="20")),
    MalformedItem("a gap (slice missing in the middle)",
                  lambda f, p: _series(f, p, positions=[(-12.0, -30.0, 100.0 + z) for z in (0, 2.5, 5, 10, 12.5)])),
    MalformedItem("non-uniform spacing",
                  lambda f, p: _series(f, p, positions=[(-12.0, -30.0, 100.0 + z) for z in (0, 2.5, 5, 9, 11.5)])),
    MalformedItem("mixed orientations",
                  lambda f, p: _series(f, p, transform=_on(2, _set(ImageOrientationPatient=[1, 0, 0, 0, 0, -1])))),
    MalformedItem("duplicate position", lambda f, p: _series(
        f, p, positions=[(-12.0, -30.0, 100.0 + z) for z in (0, 2.5, 5, 5, 7.5)])),
    MalformedItem("ImagePositionPatient missing in one slice",
                  lambda f, p: _series(f, p, transform=_on(1, _delete("ImagePositionPatient")))),
    MalformedItem("ImageOrientationPatient missing",
                  lambda f, p: _series(f, p, transform=_every(_delete("ImageOrientationPatient")))),
    MalformedItem("PixelSpacing 0\\0", lambda f, p: _series(f, p, transform=_every(_raw("PixelSpacing", "0\\0")))),
    MalformedItem("NaN in a position",
                  lambda f, p: _series(f, p, transform=_on(2, _raw("ImagePositionPatient", "nan\\0\\105")))),
    MalformedItem("pixel data half as long as Rows x Columns",
                  lambda f, p: _series(f, p, transform=_on(2, _short_pixels))),
    MalformedItem("Rows differ between slices", lambda f, p: _series(f, p, transform=_on(2, _rows_32))),
    MalformedItem("BitsStored 20 > BitsAllocated 16",
                  lambda f, p: _series(f, p, transform=_every(_set(BitsStored=20, HighBit=19)))),
    MalformedItem("RGB samples in a CT", lambda f, p: _series(f, p, transform=_every(_rgb))),
    MalformedItem("RescaleSlope 0", lambda f, p: _series(f, p, transform=_every(_raw("RescaleSlope", "0")))),
    MalformedItem("RescaleSlope not a number",
                  lambda f, p: _series(f, p, transform=_every(_raw("RescaleSlope", "abc")))),
    MalformedItem("localizers only", lambda f, p: _series(
        f, p, transform=_every(_set(ImageType=["ORIGINAL", "PRIMARY", "LOCALIZER"])))),
    MalformedItem("a single slice", lambda f, p: _series(f, p, n=1)),
    MalformedItem("Rows x Columns 65535 x 65535 declared, 64 x 64 sent",
                  lambda f, p: _series(f, p, transform=_every(_set(Rows=65535, Columns=65535)))),
    MalformedItem("NumberOfFrames 1000 in a single-frame CT",
                  lambda f, p: _series(f, p, transform=_every(_set(NumberOfFrames=1000)))),
    MalformedItem("PixelData missing", lambda f, p: _series(f, p, transform=_every(_delete("PixelData")))),
    MalformedItem("a frame of reference per slice",
                  lambda f, p: _series(f, p, transform=lambda ds, _n: setattr(ds, "FrameOfReferenceUID",
                                                                              generate_uid()))),
    MalformedItem("SOP Instance UID differs from the request's", _meta_uid_differs),
    MalformedItem("StudyInstanceUID missing",
                  lambda f, p: _series(f, p, transform=_every(_delete("StudyInstanceUID")))),
    MalformedItem("SeriesInstanceUID not a valid UID", lambda f, p: _series(
        f, p, transform=_every(_set(SeriesInstanceUID="1.2.abc.3")))),
    MalformedItem("over-long patient values", lambda f, p: _series(f, MALFORMED[1])),
    MalformedItem("malformed dates", lambda f, p: _series(f, MALFORMED[0], transform=_every(_several(
        _raw("StudyDate", "2024-13-45"), _raw("SeriesDate", "20241345"), _raw("AcquisitionDate", "yesterday"),
        _raw("StudyTime", "25:61"))))),
    MalformedItem("several values where one is allowed", lambda f, p: _series(f, MALFORMED[2])),
    MalformedItem("unknown character set with latin-1 bytes", _unknown_charset),
    MalformedItem("control characters in patient values", lambda f, p: _series(f, MALFORMED[4])),
    MalformedItem("modality MR in a CT Image Storage instance",
                  lambda f, p: _series(f, p, transform=_every(_set(Modality="MR")))),
    MalformedItem("slice thickness 10 mm", lambda f, p: _series(f, p, transform=_every(_set(SliceThickness="10")))),
    MalformedItem("a sequence nested 600 items deep", _nested(600)),
    MalformedItem("Enhanced CT with 3 frames and no functional groups", _enhanced_without_frames),
    MalformedItem("a second series reusing the first one's SOP Instance UIDs", _reused_sop_uids),
)


@dataclass
class ItemOutcome:
    name: str
    statuses: Counter[str]
    states: list[str]
    reason: str
    problem: str | None = None


@dataclass
class MalformedResult(NodeRunRecord):
    backend: str
    items: list[ItemOutcome] = field(default_factory=list)
    unquarantined: int = 0
    internal_errors: list[str] = field(default_factory=list)

    @property
    def lost(self) -> int:
        return len(self.instances.lost if self.instances else []) + sum(1 for i in self.items if i.problem)


def _reason(engine: Engine, series_uid: str) -> tuple[str, str]:
    """(state, why) of a series: the skip reason or the latest job's error; UIDs shortened."""
    with Session(engine) as session:
        series = session.execute(select(Series).where(Series.series_instance_uid == series_uid)).scalar_one_or_none()
        if series is None:
            return "not indexed", ""
        job = session.execute(select(Job).where(Job.series_id == series.id).order_by(Job.id.desc())).scalars().first()
        why = series.skip_reason or (job.error if job is not None and job.error else "")
        return str(series.state), _UID.sub("<uid>", why)


def run_malformed(backend: Backend, work: Path, *, items: tuple[MalformedItem, ...] = ITEMS,
                  settle_s: float = 180.0) -> MalformedResult:
    """Send every item to one node on a fresh database and judge what became of it (see the module)."""
    started = time.monotonic()
    result = MalformedResult(backend.label)
    with fresh_database(backend, work) as url:
        config = NodeConfig(work / "node", url, sections=fuzz_sections())
        node = NodeUnderTest(config)
        acknowledged: set[str] = set()
        refusals: list[str] = []
        sent: list[tuple[MalformedItem, Written, list[dict[str, int | None]], Counter[str]]] = []
        with node_session(node, result):
            node.start()
            for number, item in enumerate(items):
                patient = WELL_FORMED[number % len(WELL_FORMED)] if number % 3 else PATIENTS[number % len(PATIENTS)]
                written = item.build(work / "items" / f"{number:02d}", patient)
                statuses: list[dict[str, int | None]] = []
                counts: Counter[str] = Counter()
                for group in _associations(written):
                    outcome = store(config.port, group, timeout=20.0)
                    if not outcome.connected:
                        result.unfinished.append(f"{item.name}: no association")
                    statuses.append(outcome.statuses)
                    counts.update("none" if s is None else f"0x{s:04X}" for s in outcome.statuses.values())
                    acknowledged |= outcome.acknowledged
                    refusals += [uid for uid, status in outcome.statuses.items() if refused(status)]
                sent.append((item, written, statuses, counts))
                if not node.alive():
                    result.crashes.append(f"the node ended after {item.name}")
                    node.start()
            with settled_database(node, config, result, settle_s=settle_s, after="the malformed series",
                                  acknowledged=acknowledged) as engine:
                for item, written, statuses, counts in sent:
                    states, reasons = [], []
                    for uid in written.series_uids:
                        state, why = _reason(engine, uid)
                        states.append(state)
                        reasons.append(why)
                    problem = written.check(engine, statuses) if written.check is not None else None
                    result.items.append(ItemOutcome(item.name, counts, states, "; ".join(r for r in reasons if r),
                                                    problem))
                    result.internal_errors += [f"{item.name}: {r}" for r in reasons if "internal error" in r]
            quarantined = _quarantine_count(quarantine_folder(config))
            result.unquarantined = max(0, len(refusals) - quarantined)
            result.phi = scan_everything(node, config, url, quarantine=True)
    result.seconds = time.monotonic() - started
    return result


def _associations(written: Written) -> list[list[Path]]:
    """One association per series of the item (files grouped by their folder)."""
    groups: dict[Path, list[Path]] = {}
    for path in written.files:
        groups.setdefault(path.parent, []).append(path)
    return list(groups.values())


def _quarantine_count(folder: Path) -> int:
    return sum(1 for _ in folder.rglob("*.json"))

