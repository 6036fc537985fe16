"""The SOP classes sarcoscreen tells apart, and their names: the one source for the node's SCP, its routing and
the series loader.

* `CT_IMAGE_STORAGE_SOP_CLASSES` - the CT image storage classes of the Storage Service Class (PS3.4 Annex B,
  Table B.5-1): CT Image Storage, Enhanced CT Image Storage and Legacy Converted Enhanced CT Image Storage. The
  SCP accepts these (and only these) for storage, routing analyses a series only when all its instances are of
  them, and the loader reads them.
* `DERIVED_MAP_SOP_CLASSES` - classes whose pixel data are a map *of* another image series rather than an image
  of the patient (Segmentation, Label Map Segmentation, Height Map Segmentation, RT Dose); the loader sets them
  aside with the non-image objects (`series_selection`).

The UIDs and names are pydicom's (its copy of the UID registry, PS3.6 Annex A), except for the two segmentation
classes added to the standard after the registry pydicom carries, which are spelled out here.
"""

from __future__ import annotations

from pydicom.uid import (
    UID,
    CTImageStorage,
    EnhancedCTImageStorage,
    LegacyConvertedEnhancedCTImageStorage,
    RTDoseStorage,
    SegmentationStorage,
)

__all__ = [
    "CT_IMAGE_STORAGE_SOP_CLASSES",
    "DERIVED_MAP_SOP_CLASSES",
    "HEIGHT_MAP_SEGMENTATION_STORAGE",
    "LABEL_MAP_SEGMENTATION_STORAGE",
    "sop_class_name",
]

CT_IMAGE_STORAGE_SOP_CLASSES: tuple[UID, ...] = (
    CTImageStorage,
    EnhancedCTImageStorage,
    LegacyConvertedEnhancedCTImageStorage,
)
"""The CT image storage SOP classes (PS3.4 Table B.5-1) the node receives, routes and loads, in this order."""

LABEL_MAP_SEGMENTATION_STORAGE = UID("1.2.840.10008.5.1.4.1.1.66.7")
"""Label Map Segmentation Storage (PS3.4 Table B.5-1; PS3.3 A.51 with the Label Map Segmentation Type)."""

HEIGHT_MAP_SEGMENTATION_STORAGE = UID("1.2.840.10008.5.1.4.1.1.66.8")
"""Height Map Segmentation Storage (PS3.4 Table B.5-1)."""

DERIVED_MAP_SOP_CLASSES: tuple[UID, ...] = (
    SegmentationStorage,
    LABEL_MAP_SEGMENTATION_STORAGE,
    HEIGHT_MAP_SEGMENTATION_STORAGE,
    RTDoseStorage,
)
"""SOP classes with pixel data that are derived maps of another image series (PS3.3 A.51, A.18), not images."""

_NAMES_PYDICOM_LACKS = {
    LABEL_MAP_SEGMENTATION_STORAGE: "Label Map Segmentation Storage",
    HEIGHT_MAP_SEGMENTATION_STORAGE: "Height Map Segmentation Storage",
}


def sop_class_name(uid: str) -> str:
    """The registry name of a SOP class (``"RT Structure Set Storage"``); the UID itself when the class is private
    or unknown, ``"(no SOP Class UID)"`` when `uid` is empty."""
    if not uid:
        return "(no SOP Class UID)"
    return _NAMES_PYDICOM_LACKS.get(uid) or UID(uid).name or uid
