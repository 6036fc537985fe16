"""A received instance the SCP cannot parse: valid File Meta Information and SOP UIDs, then Study Date (0008,0020)
with a VR that does not exist ('ZZ'). The SCP refuses it with 0xC000 and quarantines the bytes."""

from __future__ import annotations

import io
from pathlib import Path

import pydicom
import pydicom.filebase
import pydicom.filewriter

__all__ = ["write_unparseable_instance"]


def write_unparseable_instance(path: Path) -> Path:
    """Write the unparseable instance (Explicit VR Little Endian, CT Image Storage) to `path`; returns `path`."""
    meta = pydicom.dataset.FileMetaDataset()
    meta.MediaStorageSOPClassUID = pydicom.uid.CTImageStorage
    meta.MediaStorageSOPInstanceUID = pydicom.uid.generate_uid()
    meta.TransferSyntaxUID = pydicom.uid.ExplicitVRLittleEndian
    stream = io.BytesIO()
    stream.write(b"\0" * 128 + b"DICM")
    pydicom.filewriter.write_file_meta_info(pydicom.filebase.DicomFileLike(stream), meta, enforce_standard=True)
    for tag, uid in ((b"\x08\x00\x16\x00", meta.MediaStorageSOPClassUID),
                     (b"\x08\x00\x18\x00", meta.MediaStorageSOPInstanceUID)):
        text = uid.encode() + (b"\0" if len(uid) % 2 else b"")
        stream.write(tag + b"UI" + len(text).to_bytes(2, "little") + text)
    stream.write(b"\x08\x00\x20\x00ZZ\x04\x00abcd")  # Study Date (0008,0020) with VR 'ZZ'
    path.write_bytes(stream.getvalue())
    return path
