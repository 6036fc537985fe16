"""All DICOM outputs of one analysis - SEG, SR and key image - written into one folder.

Used by ``sarcoscreen analyze --dicom-out DIR`` and by the node's worker. The objects share the source's
patient and study, reference the source series, and get deterministic UIDs (`sarcoscreen.reports.dicom_uids`)
from (source series, engine name + version, settings digest) and digests of their content, and the source's
date and time (`sarcoscreen.reports.output_dates`): a re-run with the same inputs writes the same bytes under the
same UIDs, and any change of an object's content gives it new UIDs.

Files: ``seg.dcm``, ``sr.dcm`` and ``key_image.dcm`` in the output folder, each written to a temporary name and
renamed, so a reader never sees half a file; folder and files are created with `modes` (0700/0600 unless the
node's ``storage`` settings say otherwise). A file that cannot be written (a full disk) raises `FileWriteError`
naming it, and leaves no temporary file. What is not written is listed with the reason in
`DicomOutputs.omitted` (and a stale file of that name from an earlier run is removed):

* no SEG when the engine labelled nothing (a SEG needs at least one segment); the SR is still written and says
  for every group that it is not in the scan;
* no key image when ``key_image = none``.

A source that cannot be referenced (no StudyInstanceUID, SeriesInstanceUID or FrameOfReferenceUID; instances
missing) raises `DicomOutputError` and nothing is written.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
from PIL import Image
from pydicom import Dataset

from sarcoscreen.inference.engines.base import Segmentation
from sarcoscreen.inference.file_modes import PRIVATE, FileModes
from sarcoscreen.inference.measure import MeasurementReport
from sarcoscreen.inference.version import software_version
from sarcoscreen.inference.volume import Volume
from sarcoscreen.reports.dicom_uids import (
    DEFAULT_ROOT,
    OutputContent,
    OutputUids,
    content_digest,
    output_uids,
    source_identity,
)
from sarcoscreen.reports.key_image import KeyImageKind, KeyImageOptions, build_key_image, patient_orientation
from sarcoscreen.reports.output_dates import output_datetime
from sarcoscreen.reports.overlay import choose_slices, render_overlay
from sarcoscreen.reports.seg import NoSegmentsError, SegOptions, SegSegment, build_seg
from sarcoscreen.reports.source_attributes import SourceReferenceError, read_source_instances
from sarcoscreen.reports.sr import SrOptions, build_sr

__all__ = [
    "FILE_NAMES",
    "DicomOutputError",
    "DicomOutputOptions",
    "DicomOutputs",
    "WrittenObject",
    "write_dicom_outputs",
]

FILE_NAMES = {"seg": "seg.dcm", "sr": "sr.dcm", "key_image": "key_image.dcm"}


class DicomOutputError(Exception):
    """The DICOM outputs could not be written; the message says why in words."""


@dataclass(frozen=True)
class DicomOutputOptions:
    uid_root: str = DEFAULT_ROOT
    seg: SegOptions = field(default_factory=SegOptions)
    sr: SrOptions = field(default_factory=SrOptions)
    key_image: KeyImageOptions = field(default_factory=KeyImageOptions)


@dataclass(frozen=True)
class WrittenObject:
    """One object written: its kind (``seg``, ``sr`` or ``key_image``), file and identity (PS3.3 C.12.1 SOP Common,
    C.7.3 General Series) - what the node stores and delivers, without reading the file again."""

    kind: str
    path: Path
    sop_class_uid: str
    sop_instance_uid: str
    series_instance_uid: str

    @classmethod
    def of(cls, kind: str, path: Path, dataset: Dataset) -> WrittenObject:
        return cls(kind, path, str(dataset.SOPClassUID), str(dataset.SOPInstanceUID), str(dataset.SeriesInstanceUID))


@dataclass(frozen=True)
class DicomOutputs:
    folder: Path
    uids: OutputUids
    sr: Path
    seg: Path | None = None
    key_image: Path | None = None
    segments: tuple[SegSegment, ...] = ()
    omitted: tuple[tuple[str, str], ...] = ()
    """(object, reason) for each object not written."""
    notes: tuple[str, ...] = ()
    """Malformed source attributes repaired or left out in the copies (`SourceInstances.notes`; names, no values)."""
    objects: tuple[WrittenObject, ...] = ()
    """Every object written, in the order SEG, SR, key image."""

    @property
    def files(self) -> tuple[Path, ...]:
        return tuple(p for p in (self.seg, self.sr, self.key_image) if p is not None)


def _software_version() -> str:
    return f"sarcoscreen {software_version()}"


def _save(ds: Dataset, path: Path, modes: FileModes) -> Path:
    with modes.atomic(path) as handle:
        ds.save_as(handle, enforce_file_format=True)
    return path


def write_dicom_outputs(
    source: Path | Sequence[Path],
    volume: Volume,
    segmentation: Segmentation,
    report: MeasurementReport,
    out_dir: Path,
    *,
    settings_digest: str,
    options: DicomOutputOptions = DicomOutputOptions(),
    picture: Image.Image | None = None,
    modes: FileModes = PRIVATE,
) -> DicomOutputs:
    """Write the SEG, SR and key image of one analysis into `out_dir`.

    `source` is the series folder (or its files) that `volume` was loaded from; `settings_digest` identifies the
    settings the analysis ran with (part of the UIDs); `picture` is the overlay if already rendered; `modes` are the
    permission bits of the folder and the files.

    highdicom warns about person names it finds unusual, quoting them; such warnings would put patient names in
    logs, so they are silenced while writing.
    """
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*person name.*", category=UserWarning)
        return _write(source, volume, segmentation, report, out_dir, settings_digest, options, picture, modes)


def _write(source: Path | Sequence[Path], volume: Volume, segmentation: Segmentation, report: MeasurementReport,
           out_dir: Path, settings_digest: str, options: DicomOutputOptions,
           picture: Image.Image | None, modes: FileModes) -> DicomOutputs:
    try:
        instances = read_source_instances(source, volume)
    except SourceReferenceError as exc:
        raise DicomOutputError(str(exc)) from None
    version = _software_version()
    seg_options = replace(options.seg, software_version=options.seg.software_version or version)
    sr_options = replace(options.sr, software_version=options.sr.software_version or version)
    key_options = replace(options.key_image, software_version=options.key_image.software_version or version)
    writer = (version, repr(replace(options, seg=seg_options, sr=sr_options, key_image=key_options)))
    uids = output_uids(
        options.uid_root,
        source_identity(instances.series_instance_uid, [s.sop_instance_uid for s in volume.slices]),
        segmentation.engine_name, segmentation.engine_version, settings_digest,
        _content(volume, segmentation, report, writer),
    )
    created = output_datetime(instances.datasets)
    modes.make_dirs(out_dir)
    paths = {kind: out_dir / name for kind, name in FILE_NAMES.items()}
    omitted: list[tuple[str, str]] = []
    objects: list[WrittenObject] = []

    seg_path: Path | None = None
    seg = None
    segments: tuple[SegSegment, ...] = ()
    try:
        seg, segments = build_seg(
            instances, volume, segmentation, series_instance_uid=uids.seg_series,
            sop_instance_uid=uids.seg_instance,
            tracking_uids={s.key: uids.tracking_uid(s.key) for s in segmentation.structures},
            options=seg_options, dimension_organization_uid=uids.dimension_organization, created=created,
        )
        seg_path = _save(seg, paths["seg"], modes)
        objects.append(WrittenObject.of("seg", seg_path, seg))
    except NoSegmentsError as exc:
        omitted.append(("seg", str(exc)))
    except SourceReferenceError as exc:
        raise DicomOutputError(str(exc)) from None

    sr = build_sr(instances, report, uids, seg=seg, segments=segments,
                  uncertainty_threshold=segmentation.uncertainty_threshold, options=sr_options, created=created)
    sr_path = _save(sr, paths["sr"], modes)
    objects.append(WrittenObject.of("sr", sr_path, sr))

    key_path: Path | None = None
    if key_options.kind is KeyImageKind.NONE:
        omitted.append(("key_image", "disabled by the configuration (outputs.key_image = none)"))
    else:
        shown_slices = choose_slices(volume, segmentation)
        picture = picture if picture is not None else render_overlay(volume, segmentation, report)
        shown = [instances.datasets[i] for i in dict.fromkeys(_instance_index(volume, k) for k, _ in shown_slices)]
        key = build_key_image(picture, instances, shown, series_instance_uid=uids.key_image_series,
                              sop_instance_uid=uids.key_image_instance,
                              orientation=patient_orientation(volume.row_direction, volume.column_direction),
                              options=key_options, created=created)
        if key is not None:
            key_path = _save(key, paths["key_image"], modes)
            objects.append(WrittenObject.of("key_image", key_path, key))
    for kind, _ in omitted:
        paths[kind].unlink(missing_ok=True)
    return DicomOutputs(out_dir, uids, sr_path, seg_path, key_path, segments, tuple(omitted), instances.notes,
                        tuple(objects))


def _content(volume: Volume, segmentation: Segmentation, report: MeasurementReport,
             writer: tuple[str, str]) -> OutputContent:
    """Digests of what the objects are made of (`dicom_uids.OutputContent`): the SEG of the label map on the source
    instances, the SR and key image also of every measured value and the uncertainty threshold; both of the
    writer (sarcoscreen's version and the output options)."""
    labels = np.ascontiguousarray(segmentation.labels)
    instances = "\n".join(s.sop_instance_uid for s in volume.slices)
    seg = content_digest(*writer, instances, str(labels.shape), labels.reshape(-1).data)
    measured = json.dumps(report.to_dict(), sort_keys=True, default=str)
    return OutputContent(seg=seg, report=content_digest(*writer, measured, repr(segmentation.uncertainty_threshold)))


def _instance_index(volume: Volume, slice_index: int) -> int:
    """Index into the source instances (one per instance, volume order) of the instance holding a slice."""
    uids = list(dict.fromkeys(s.sop_instance_uid for s in volume.slices))
    return uids.index(volume.slices[slice_index].sop_instance_uid)
