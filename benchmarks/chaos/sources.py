"""Series to send: the phantom (a CT the node analyses for real and delivers outputs of), copied under new UIDs
and with fake patient values for each use, and small crafted series (`ct_series_factory.write_ct_series`)."""

from __future__ import annotations

import copy
from collections.abc import Sequence
from pathlib import Path

import pydicom
from pydicom import Dataset
from pydicom.uid import generate_uid

from chaos.phi import FakePatient, stamp
from sarcoscreen.inference.phantom import PhantomParameters, make_phantom
from sarcoscreen.inference.phantom.parameters import Fov

__all__ = ["phantom_datasets", "renamed_copy"]


def phantom_datasets(folder: Path, seed: int = 3) -> list[Dataset]:
    """The abdomen-pelvis phantom (128 x 128, 5 mm: about 47 slices that reach the gluteal region), made once
    in `folder` and read into memory."""
    marker = folder / "COMPLETE"
    if not marker.is_file():
        make_phantom(PhantomParameters(matrix=128, slice_mm=5.0, seed=seed, fov=Fov.ABDOMEN), folder)
        marker.write_text("ok", encoding="utf-8")
    return [pydicom.dcmread(path) for path in sorted((folder / "dicom").glob("*.dcm"))]


def renamed_copy(datasets: Sequence[Dataset], patient: FakePatient) -> list[Dataset]:
    """`datasets` as a new study and series (new study, series, frame of reference and instance UIDs) of
    `patient`."""
    study, series, frame = generate_uid(), generate_uid(), generate_uid()
    copies = []
    for source in datasets:
        ds = copy.deepcopy(source)
        ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.FrameOfReferenceUID = study, series, frame
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
        stamp(ds, patient)
        copies.append(ds)
    return copies
