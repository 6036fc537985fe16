"""Which of the files `load_series` was given form the series to load, and what is set aside.

A folder exported from a PACS or a treatment planning system rarely holds the CT images alone: next to them are
objects made from them or about them - an RT Structure Set, SRs (measurement reports, the scanner's radiation
dose SR), segmentations, presentation states, key object selections, registrations, RT plans and doses. None of
these is an alternative to the CT; they are set aside, and the set-aside is reported. Several *image* series are
a real ambiguity (thin and thick reconstructions, a separate topogram series, reformats, an MR of the same
patient) that the loader does not guess: it refuses and lists them, and the caller chooses one.

**Image or not, per instance.** An instance is an *image* when

* its SOP class is one of the CT image storage classes the loader reads (`sop_classes`) - CT Image Storage
  (1.2.840.10008.5.1.4.1.1.2), Enhanced CT Image Storage (.2.1), Legacy Converted Enhanced CT Image Storage
  (.2.2) - with or without pixel data (a CT image without pixel data is refused later, with the reason); or
* it carries pixel data - Pixel Data (7FE0,0010), Float Pixel Data (7FE0,0008) or Double Float Pixel Data
  (7FE0,0009) at the top level of its data set, the Image Pixel module of an image IOD (PS3.3 C.7.6.3) - and its
  SOP class is not one of those whose pixel data are a derived map *of* another image series: Segmentation
  Storage (PS3.3 A.51), Label Map Segmentation Storage, Height Map Segmentation Storage and RT Dose Storage
  (A.18) (`sop_classes.DERIVED_MAP_SOP_CLASSES`). These four are set aside with the non-image objects, as a
  PACS lists them.

So MR, PET, ultrasound, X-ray, parametric maps and **secondary captures** (a scanner's dose report screen, a
key image such as the one sarcoscreen writes when ``outputs.key_image`` is a secondary capture) are image
series: next to the CT they make the choice ambiguous and are listed in the refusal. This is the split a PACS
shows between images and non-image objects; it is predictable and needs no guess about which pictures matter, and
a refusal costs one ``--series-uid`` while never hiding an image series from the user. Everything else is a
non-image object: SR of any kind, RT Structure Set, RT Plan and Treatment Record, presentation states, key
object selections, spatial registration and fiducials, encapsulated PDF/CDA, waveforms, raw data, and the four
classes above. An instance whose SOP class is unknown or absent (an old export without it) is an image when it
has pixel data.

**Series.** Image instances are grouped by SeriesInstanceUID (0020,000E) (PS3.3 C.7.3.1). With a
``series_instance_uid`` given that series is loaded; without, the files must hold exactly one image series, so
a separate topogram series or a second reconstruction next to the axial series is refused too. Non-image
instances are set aside whatever their series, also when they share the image series' UID (presentation states,
key object selections, SRs and segmentations have series modules with a Modality of their own - PS3.3 C.11.9,
C.17.6.1, C.17.1, C.8.20.1 - but not every exporter keeps them apart). What is set aside is described per series
- how many instances of which SOP class (by name), the series' UID and modality, never patient data - in
sentences the loader adds to `Volume.warnings`, which ``sarcoscreen analyze`` and ``inspect`` print.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from sarcoscreen.inference.dicom_headers import FrameHeader, InstanceHeader
from sarcoscreen.inference.series_errors import MultipleSeriesError, NoImageSeriesError, SeriesNotFoundError
from sarcoscreen.inference.sop_classes import CT_IMAGE_STORAGE_SOP_CLASSES, DERIVED_MAP_SOP_CLASSES, sop_class_name

__all__ = [
    "Selection",
    "SetAside",
    "choose_series",
    "is_image",
]

Header = tuple[InstanceHeader, list[FrameHeader]]


def is_image(instance: InstanceHeader) -> bool:
    """Whether `instance` is an image (see the module docstring for the rule)."""
    if instance.sop_class_uid in CT_IMAGE_STORAGE_SOP_CLASSES:
        return True
    return instance.pixel_keyword is not None and instance.sop_class_uid not in DERIVED_MAP_SOP_CLASSES


@dataclass(frozen=True)
class SetAside:
    """Instances of one series that were not loaded, counted by SOP class (no patient data)."""

    series_instance_uid: str
    modalities: tuple[str, ...]
    classes: tuple[tuple[str, int], ...]
    """(SOP class name, instances), most frequent first."""
    images: bool
    """Image instances of a series other than the one chosen (else non-image objects)."""
    of_loaded_series: bool = False
    """Non-image instances that share the loaded series' SeriesInstanceUID."""

    @property
    def instances(self) -> int:
        return sum(n for _, n in self.classes)

    @property
    def counts(self) -> str:
        """``"Basic Text SR Storage (1), Comprehensive SR Storage (2)"``."""
        return ", ".join(f"{name} ({n})" for name, n in self.classes)

    def describe(self) -> str:
        """``"1 non-image instance of series 1.2.3 (RTSTRUCT): RT Structure Set Storage (1)"``."""
        kind = "image" if self.images else "non-image"
        where = ("the loaded series" if self.of_loaded_series
                 else f"series {_uid_text(self.series_instance_uid)} ({'/'.join(self.modalities)})")
        why = ", not the series chosen" if self.images else ""
        return f"{_count(self.instances, f'{kind} instance')} of {where}{why}: {self.counts}"


@dataclass(frozen=True)
class Selection:
    """The headers of the series to load and what was set aside."""

    headers: list[Header]
    set_aside: tuple[SetAside, ...]

    def notes(self) -> list[str]:
        """One sentence per set-aside group, for `Volume.warnings`."""
        return [f"set aside {group.describe()}" for group in self.set_aside]


def choose_series(headers: list[Header], wanted: str | None) -> Selection:
    """The image series among `headers` to load - `wanted` (a SeriesInstanceUID) or the only one - and the rest.

    Raises `SeriesNotFoundError` when `wanted` is not among the files, `NoImageSeriesError` when the files (or the
    series `wanted`) hold no image, and `MultipleSeriesError` listing the image series when there are several and
    none is wanted.
    """
    images = _by_series([h for h in headers if is_image(h[0])])
    others = _by_series([h for h in headers if not is_image(h[0])])
    if wanted is not None:
        chosen = _wanted(wanted, images, others)
    elif not images:
        described = "; ".join(_group(uid, members, images=False).describe() for uid, members in others.items())
        raise NoImageSeriesError(f"the DICOM files hold no image series, only non-image objects: {described}")
    elif len(images) > 1:
        raise MultipleSeriesError(
            f"the files hold {len(images)} image series; choose one with --series-uid (series_instance_uid): "
            f"{_listing(images)}{_besides(others)}",
            tuple(images),
        )
    else:
        chosen = next(iter(images))
    set_aside = [_group(uid, members, images=True) for uid, members in images.items() if uid != chosen]
    set_aside += [_group(uid, members, images=False, loaded=uid == chosen) for uid, members in others.items()]
    set_aside.sort(key=lambda group: (not group.of_loaded_series, group.images))
    return Selection(images[chosen], tuple(set_aside))


def _wanted(wanted: str, images: dict[str, list[Header]], others: dict[str, list[Header]]) -> str:
    if wanted in images:
        return wanted
    if wanted in others:
        described = _group(wanted, others[wanted], images=False).describe()
        raise NoImageSeriesError(f"series {wanted} holds no images: {described}")
    found = len(images) + len(others.keys() - images.keys())
    listing = "; ".join(part for part in (_listing(images), _listing(others)) if part)
    raise SeriesNotFoundError(f"series {wanted} is not among the {found} series found: {listing}")


def _by_series(headers: list[Header]) -> dict[str, list[Header]]:
    groups: dict[str, list[Header]] = {}
    for header in headers:
        groups.setdefault(header[0].series_instance_uid, []).append(header)
    return groups


def _group(uid: str, members: list[Header], *, images: bool, loaded: bool = False) -> SetAside:
    modalities = tuple(sorted({m.modality or "no Modality" for m, _ in members}))
    return SetAside(uid, modalities, _classes(members), images=images, of_loaded_series=loaded)


def _classes(members: list[Header]) -> tuple[tuple[str, int], ...]:
    """SOP class names with their number of distinct instances (copies of one SOP instance count once)."""
    unique = {m.sop_instance_uid or str(m.path): m.sop_class_uid for m, _ in members}
    return tuple(Counter(sop_class_name(uid) for uid in unique.values()).most_common())


def _listing(groups: dict[str, list[Header]]) -> str:
    """``"1.2.3 (CT: CT Image Storage (145)); 1.2.4 (MR: MR Image Storage (20))"``."""
    parts = []
    for uid, members in groups.items():
        group = _group(uid, members, images=True)
        parts.append(f"{_uid_text(uid)} ({'/'.join(group.modalities)}: {group.counts})")
    return "; ".join(parts)


def _besides(others: dict[str, list[Header]]) -> str:
    if not others:
        return ""
    total = sum(_group(uid, members, images=False).instances for uid, members in others.items())
    return f"; set aside either way: {_count(total, 'non-image instance')} of {_count(len(others), 'series', 'series')}"


def _uid_text(uid: str) -> str:
    return uid or "(no SeriesInstanceUID)"


def _count(n: int, singular: str, plural: str | None = None) -> str:
    return f"{n} {singular if n == 1 else plural or singular + 's'}"
