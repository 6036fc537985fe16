"""The muscle catalogue: the one source of truth for every structure sarcoscreen labels, measures or reports.

Every label value in a label map, every DICOM-SEG segment, every TID 1500 measurement group and every database
row names a structure of this catalogue. A *structure* is an `Anatomy` (say, gluteus maximus) on one `Side`.

Sources:

* The 19 hip and thigh muscles are those segmented by Hiasa et al., "Automated muscle segmentation from clinical
  CT using Bayesian U-Net for personalized musculoskeletal modeling", IEEE TMI 39(4), 2020 (Fig. 1), where the
  adductors (brevis, longus, magnus) form one label and vastus lateralis and intermedius another.
* The three groups are those of the reference study: *gluteal* (gluteus maximus, medius, minimus), *above knee*
  (all hip and thigh muscles except psoas major) and *all* (above knee plus the lower-leg muscles).
* Codes: SNOMED CT concepts, each with its source in `Code.source` (DICOM PS3.16 context groups where the concept
  is there; otherwise the published SNOMED CT value set named). Labels that merge several muscles with no single
  SNOMED CT concept for the grouping carry a code of sarcoscreen's private scheme ``99SARCO``
  (`sarcoscreen.inference.coding.PRIVATE_SCHEME`); see ``docs/catalogue.md``. Laterality is not pre-coordinated
  in the codes; it is the SNOMED CT modifier of `Side` (DICOM PS3.16 CID 244 "Laterality").
* The *region* structures are what the weight-free ``threshold`` engine can tell apart without per-muscle
  boundaries; each approximates one of the reference study's groups (see ``docs/engines.md``).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from enum import StrEnum
from functools import cached_property

from sarcoscreen.inference._catalogue_codes import CODES
from sarcoscreen.inference.coding import Code

__all__ = [
    "CATALOGUE",
    "GROUP_BOUNDS",
    "Anatomy",
    "Catalogue",
    "Code",
    "Group",
    "Kind",
    "LandmarkBounds",
    "Region",
    "Side",
    "Structure",
    "UnknownStructureError",
]


class UnknownStructureError(KeyError):
    """A label value or structure key that the catalogue does not define."""


class Side(StrEnum):
    RIGHT = "right"
    LEFT = "left"
    MIDLINE = "midline"
    """Unpaired structures (the sacrum)."""


class Kind(StrEnum):
    MUSCLE = "muscle"
    BONE = "bone"
    MUSCLE_REGION = "muscle region"
    """All skeletal muscle of a body region, for engines that do not separate muscles."""


class Region(StrEnum):
    PELVIS = "pelvis"
    HIP = "hip"
    THIGH = "thigh"
    KNEE = "knee"
    LOWER_LEG = "lower leg"


class Group(StrEnum):
    """The muscle groups of the reference study, whose mass and SMI are reported."""

    GLUTEAL = "gluteal"
    ABOVE_KNEE = "above_knee"
    ALL = "all"
    UPPER_GLUTEAL = "upper_gluteal"
    """Not a group of the reference study: the gluteal group's muscle between the top of the iliac crest and the
    femoral head centre, per side (`GROUP_BOUNDS`). An abdomen-pelvis CT, which usually ends near the lesser
    trochanter, holds it completely where it cuts the gluteal group (``docs/engines.md``)."""

    @property
    def title(self) -> str:
        return {"gluteal": "Gluteal muscles", "above_knee": "Muscles above the knee joint",
                "all": "All lower-extremity muscles",
                "upper_gluteal": "Gluteal muscles from the iliac crest to the femoral head centre"}[self.value]

    @property
    def of_reference_study(self) -> bool:
        """The three groups of the reference study (``UPPER_GLUTEAL`` is sarcoscreen's own)."""
        return self is not Group.UPPER_GLUTEAL


@dataclass(frozen=True)
class LandmarkBounds:
    """A group measured as another group's muscle between two landmarks of the same side (inclusive slices)."""

    of_group: Group
    top: str
    """Landmark name at the head end, e.g. ``iliac_crest``."""
    bottom: str
    """Landmark name at the foot end, e.g. ``femoral_head`` (its centre)."""


GROUP_BOUNDS: dict[Group, LandmarkBounds] = {
    Group.UPPER_GLUTEAL: LandmarkBounds(Group.GLUTEAL, top="iliac_crest", bottom="femoral_head"),
}
"""Landmark-bounded groups; every other group is the sum of its member structures."""


# DICOM PS3.16 CID 244 "Laterality".
_LATERALITY_CODES: dict[Side, Code] = {
    Side.RIGHT: Code("24028007", "SCT", "Right", "DICOM PS3.16 CID 244"),
    Side.LEFT: Code("7771000", "SCT", "Left", "DICOM PS3.16 CID 244"),
}


@dataclass(frozen=True)
class Anatomy:
    """One anatomical structure irrespective of side."""

    key: str
    name: str
    kind: Kind
    region: Region
    code: Code
    colour: tuple[int, int, int]
    """Recommended display colour, sRGB 0-255."""
    groups: frozenset[Group] = frozenset()
    paired: bool = True
    includes: str | None = None
    """For labels that merge several muscles, which ones (e.g. the adductors)."""


@dataclass(frozen=True)
class Structure:
    """One labelled structure: an anatomy on one side, with its label value in every label map."""

    label: int
    anatomy: Anatomy
    side: Side

    @property
    def key(self) -> str:
        """Stable identifier used in files and the database, e.g. ``gluteus_maximus_left``."""
        return self.anatomy.key if self.side is Side.MIDLINE else f"{self.anatomy.key}_{self.side.value}"

    @property
    def name(self) -> str:
        """Label in words, e.g. ``Left gluteus maximus``."""
        if self.side is Side.MIDLINE:
            return self.anatomy.name
        return f"{self.side.value.capitalize()} {self.anatomy.name[0].lower()}{self.anatomy.name[1:]}"

    @property
    def laterality(self) -> Code | None:
        """The SNOMED CT laterality modifier, or ``None`` for unpaired structures."""
        return _LATERALITY_CODES.get(self.side)

    @property
    def is_muscle(self) -> bool:
        return self.anatomy.kind in (Kind.MUSCLE, Kind.MUSCLE_REGION)


_G = Group.GLUTEAL
_A = Group.ABOVE_KNEE
_ALL = Group.ALL

def _define() -> tuple[tuple[int, Anatomy], ...]:
    """(right label, anatomy) pairs. The left label is the right label + 1; unpaired structures have one label.

    Label values are persistent (label maps, model bundles and stored results use them): never renumber, only
    append.
    """
    def muscle(key: str, name: str, region: Region, colour: tuple[int, int, int], groups: Iterable[Group],
               includes: str | None = None) -> Anatomy:
        return Anatomy(key, name, Kind.MUSCLE, region, CODES[key], colour, frozenset(groups), True, includes)

    def bone(key: str, name: str, region: Region, colour: tuple[int, int, int], paired: bool = True) -> Anatomy:
        return Anatomy(key, name, Kind.BONE, region, CODES[key], colour, frozenset(), paired)

    def muscle_region(key: str, name: str, region: Region, colour: tuple[int, int, int],
                      groups: Iterable[Group], includes: str) -> Anatomy:
        return Anatomy(key, name, Kind.MUSCLE_REGION, region, CODES[key], colour, frozenset(groups), True,
                       includes)

    hip, thigh, leg = Region.HIP, Region.THIGH, Region.LOWER_LEG
    return (
        # Hip muscles (Hiasa et al. 2020).
        (1, muscle("gluteus_maximus", "Gluteus maximus", hip, (230, 25, 75), (_G, _A, _ALL))),
        (3, muscle("gluteus_medius", "Gluteus medius", hip, (245, 130, 48), (_G, _A, _ALL))),
        (5, muscle("gluteus_minimus", "Gluteus minimus", hip, (255, 225, 25), (_G, _A, _ALL))),
        (7, muscle("iliacus", "Iliacus", hip, (210, 245, 60), (_A, _ALL))),
        (9, muscle("obturator_externus", "Obturator externus", hip, (60, 180, 75), (_A, _ALL))),
        (11, muscle("obturator_internus", "Obturator internus", hip, (70, 240, 240), (_A, _ALL))),
        (13, muscle("pectineus", "Pectineus", hip, (0, 130, 200), (_A, _ALL))),
        (15, muscle("piriformis", "Piriformis", hip, (145, 30, 180), (_A, _ALL))),
        # Psoas major is segmented but excluded from every group, as in the reference study.
        (17, muscle("psoas_major", "Psoas major", hip, (240, 50, 230), ())),
        # Thigh muscles (Hiasa et al. 2020).
        (19, muscle("adductors", "Adductor muscles", thigh, (250, 190, 212), (_A, _ALL),
                    includes="adductor longus, adductor brevis and adductor magnus")),
        (21, muscle("biceps_femoris", "Biceps femoris", thigh, (0, 128, 128), (_A, _ALL))),
        (23, muscle("gracilis", "Gracilis", thigh, (220, 190, 255), (_A, _ALL))),
        (25, muscle("rectus_femoris", "Rectus femoris", thigh, (170, 110, 40), (_A, _ALL))),
        (27, muscle("sartorius", "Sartorius", thigh, (255, 250, 200), (_A, _ALL))),
        (29, muscle("semimembranosus", "Semimembranosus", thigh, (128, 0, 0), (_A, _ALL))),
        (31, muscle("semitendinosus", "Semitendinosus", thigh, (170, 255, 195), (_A, _ALL))),
        (33, muscle("tensor_fasciae_latae", "Tensor fasciae latae", thigh, (128, 128, 0), (_A, _ALL))),
        (35, muscle("vastus_lateralis_intermedius", "Vastus lateralis and intermedius", thigh, (255, 215, 180),
                    (_A, _ALL), includes="vastus lateralis and vastus intermedius")),
        (37, muscle("vastus_medialis", "Vastus medialis", thigh, (0, 0, 128), (_A, _ALL))),
        # Lower-leg muscles.
        (39, muscle("tibialis_anterior", "Tibialis anterior", leg, (255, 99, 71), (_ALL,))),
        (41, muscle("toe_extensors", "Extensor digitorum longus and extensor hallucis longus", leg,
                    (255, 165, 0), (_ALL,), includes="extensor digitorum longus and extensor hallucis longus")),
        (43, muscle("fibularis", "Fibularis muscles", leg, (154, 205, 50), (_ALL,),
                    includes="fibularis (peroneus) longus and brevis")),
        (45, muscle("gastrocnemius", "Gastrocnemius", leg, (64, 224, 208), (_ALL,),
                    includes="medial and lateral heads")),
        (47, muscle("soleus", "Soleus", leg, (100, 149, 237), (_ALL,))),
        (49, muscle("deep_posterior_leg", "Deep posterior compartment muscles of the leg", leg,
                    (186, 85, 211), (_ALL,),
                    includes="tibialis posterior, flexor digitorum longus and flexor hallucis longus")),
        # Bones.
        (61, bone("hip_bone", "Hip bone", Region.PELVIS, (241, 214, 145))),
        (63, bone("sacrum", "Sacrum", Region.PELVIS, (221, 190, 120), paired=False)),
        (65, bone("femur", "Femur", thigh, (255, 239, 213))),
        (67, bone("patella", "Patella", Region.KNEE, (238, 221, 130))),
        (69, bone("tibia", "Tibia", leg, (255, 228, 196))),
        (71, bone("fibula", "Fibula", leg, (222, 184, 135))),
        # Muscle regions (weight-free threshold engine); disjoint, so their masses add up to the groups.
        (81, muscle_region("gluteal_region_muscle", "Gluteal region muscles", hip, (220, 20, 60), (_G, _A, _ALL),
                           includes="all skeletal muscle of the buttock: approximates the gluteal group")),
        (83, muscle_region("hip_thigh_muscle", "Hip and thigh muscles outside the gluteal region", thigh,
                           (255, 140, 0), (_A, _ALL),
                           includes="skeletal muscle of the hip and thigh outside the buttock, above the knee "
                                    "joint, outside the bony pelvic ring")),
        (85, muscle_region("lower_leg_muscle", "Lower-leg muscles", leg, (30, 144, 255), (_ALL,),
                           includes="all skeletal muscle below the knee joint")),
    )


class Catalogue:
    """Look-ups over the structures; use the module's `CATALOGUE` instance."""

    def __init__(self, table: tuple[tuple[int, Anatomy], ...]) -> None:
        structures: list[Structure] = []
        for right_label, anatomy in table:
            if anatomy.paired:
                structures.append(Structure(right_label, anatomy, Side.RIGHT))
                structures.append(Structure(right_label + 1, anatomy, Side.LEFT))
            else:
                structures.append(Structure(right_label, anatomy, Side.MIDLINE))
        self._structures = tuple(structures)
        self._by_label = {s.label: s for s in structures}
        self._by_key = {s.key: s for s in structures}
        self._anatomy = {a.key: a for _, a in table}
        if len(self._by_label) != len(structures) or len(self._by_key) != len(structures):
            raise ValueError("catalogue label values and keys must be unique")
        if max(self._by_label) > 255:
            raise ValueError("label values must fit in uint8")

    def __iter__(self) -> Iterator[Structure]:
        return iter(self._structures)

    def __len__(self) -> int:
        return len(self._structures)

    @property
    def anatomies(self) -> tuple[Anatomy, ...]:
        return tuple(self._anatomy.values())

    def anatomy(self, key: str) -> Anatomy:
        try:
            return self._anatomy[key]
        except KeyError:
            raise UnknownStructureError(f"no anatomy {key!r} in the catalogue") from None

    def by_label(self, label: int) -> Structure:
        try:
            return self._by_label[int(label)]
        except KeyError:
            raise UnknownStructureError(f"label value {label} is not in the catalogue") from None

    def by_key(self, key: str) -> Structure:
        try:
            return self._by_key[key]
        except KeyError:
            raise UnknownStructureError(f"no structure {key!r} in the catalogue") from None

    def structure(self, anatomy_key: str, side: Side | str) -> Structure:
        anatomy = self.anatomy(anatomy_key)
        key = anatomy.key if not anatomy.paired else f"{anatomy.key}_{Side(side).value}"
        return self.by_key(key)

    def muscles(self, kind: Kind = Kind.MUSCLE) -> tuple[Structure, ...]:
        return tuple(s for s in self._structures if s.anatomy.kind is kind)

    def bones(self) -> tuple[Structure, ...]:
        return tuple(s for s in self._structures if s.anatomy.kind is Kind.BONE)

    def group_members(self, group: Group, side: Side | str | None = None) -> tuple[Structure, ...]:
        """Structures whose mass adds up to `group` (per-muscle and region labels alike), optionally one side. For a
        landmark-bounded group (`GROUP_BOUNDS`), the members of the group it bounds."""
        group = GROUP_BOUNDS[group].of_group if group in GROUP_BOUNDS else group
        wanted = None if side is None else Side(side)
        return tuple(
            s for s in self._structures if group in s.anatomy.groups and (wanted is None or s.side is wanted)
        )

    @cached_property
    def max_label(self) -> int:
        return max(self._by_label)


CATALOGUE = Catalogue(_define())
