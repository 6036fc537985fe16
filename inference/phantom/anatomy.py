"""The anatomy of the phantom: landmark levels, bones, muscles, viscera, vessels - all as functions of z.

A geometric caricature of the adult lower trunk and lower limbs, built for testing segmentation and
measurement, not an atlas. Proportions:

* Levels along the body axis are fractions of body height H measured from the sole (Drillis & Contini 1966;
  Winter, *Biomechanics and Motor Control of Human Movement*, 4th ed., 2009, Fig. 4.1: ankle 0.039 H, knee
  0.285 H, greater trochanter 0.530 H), with the ankle joint line at 0.050 H (plafond above the malleolus tip),
  the femoral head centre at 0.530 H and the iliac crest 0.066 H above it.
* Transverse sizes scale with sqrt(H / H_ref) (H_ref 1.60 m for women, 1.75 m for men), so muscle mass scales
  with ~H^2 and SMI does not depend on height by construction; men have 8 % larger bones and 12 % larger muscle
  diameters than women of the same relative height, women a relatively wider pelvis.
* Bones are unions of spheres, ellipsoids, tapered capsules and per-slice ellipses with a cortical shell;
  muscles are per-slice ellipses whose centre, semi-axes and angle are interpolated (PCHIP) between key levels
  placed relative to the bones (origins and insertions after Gray's Anatomy, 42nd ed., and the CT cross-sections
  of Hiasa et al., IEEE TMI 2020, Fig. 1). Where the ellipses of neighbouring muscles overlap, each voxel belongs
  to the muscle with the smallest normalised distance, and a ~1.5 mm fat septum separates them.

Side coordinates ``(lat, post)`` are described in `geometry`; all tables below are for a reference woman of
1.60 m with muscle scale 1 and are scaled when the anatomy is built.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from sarcoscreen.inference.catalogue import CATALOGUE, Side
from sarcoscreen.inference.phantom.geometry import (
    Capsule,
    Ellipse,
    Ellipsoid,
    RingSector,
    Sphere,
    Track,
    Tube,
)
from sarcoscreen.inference.phantom.parameters import PhantomParameters
from sarcoscreen.inference.phantom.tissues import Tissue

__all__ = ["Anatomy", "Bone", "BonePart", "Implant", "Landmarks", "Muscle", "ShapeTrack", "Soft", "build_anatomy"]

SIDES = (Side.RIGHT, Side.LEFT)


def side_sign(side: Side) -> int:
    """World x = sign * lat (LPS: +x is the patient's left)."""
    return -1 if side is Side.RIGHT else 1


@dataclass(frozen=True)
class Landmarks:
    """Levels (z, mm above the sole) of the anatomical landmarks; identical on both sides."""

    sole: float
    ankle_joint: float
    knee_joint: float
    lesser_trochanter: float
    ischial_tuberosity: float
    symphysis_bottom: float
    greater_trochanter: float
    symphysis_top: float
    femoral_head_centre: float
    femoral_head_top: float
    """Top of the femoral head (centre + radius): the reference level of the benchmark's cut series."""
    acetabular_roof: float
    s1_top: float
    asis: float
    iliac_crest_top: float

    @classmethod
    def for_body(cls, height_m: float, head_radius_mm: float) -> Landmarks:
        h = height_m * 1000.0
        head = 0.530 * h
        crest = head + 0.066 * h
        return cls(
            sole=0.0,
            ankle_joint=0.050 * h,
            knee_joint=0.285 * h,
            lesser_trochanter=head - 0.036 * h,
            ischial_tuberosity=head - 0.043 * h,
            symphysis_bottom=head - 0.030 * h,
            greater_trochanter=head - 0.004 * h,
            symphysis_top=head - 0.004 * h,
            femoral_head_centre=head,
            femoral_head_top=head + head_radius_mm,
            acetabular_roof=head + head_radius_mm + 2.0,
            s1_top=crest - 0.022 * h,
            asis=crest - 0.016 * h,
            iliac_crest_top=crest,
        )

    def reported(self) -> dict[str, float]:
        """The landmarks ground_truth.json reports (z in mm, patient coordinates)."""
        return {
            "iliac_crest_top": self.iliac_crest_top,
            "acetabular_roof": self.acetabular_roof,
            "femoral_head_top": self.femoral_head_top,
            "femoral_head_centre": self.femoral_head_centre,
            "greater_trochanter": self.greater_trochanter,
            "lesser_trochanter": self.lesser_trochanter,
            "knee_joint": self.knee_joint,
            "ankle_joint": self.ankle_joint,
        }


class Frame:
    """A reference line along the body (a bone axis) in side coordinates: ``at(z) -> (lat, post)``."""

    def __init__(self, p0: tuple[float, float, float], p1: tuple[float, float, float]) -> None:
        self.p0 = p0
        self.p1 = p1

    def at(self, z: float) -> tuple[float, float]:
        dz = self.p1[2] - self.p0[2]
        t = 0.0 if abs(dz) < 1e-9 else (z - self.p0[2]) / dz
        return (self.p0[0] + t * (self.p1[0] - self.p0[0]), self.p0[1] + t * (self.p1[1] - self.p0[1]))

    def point(self, z: float, lat: float = 0.0, post: float = 0.0) -> tuple[float, float, float]:
        a, b = self.at(z)
        return (a + lat, b + post, z)


MID = Frame((0.0, 0.0, 0.0), (0.0, 0.0, 1.0))


@dataclass(frozen=True)
class ShapeTrack:
    """A per-slice ellipse: track values (lat, post, a, b, angle_deg) relative to `frame`, on one side."""

    side: Side
    frame: Frame
    track: Track
    offset: tuple[float, float]
    exponent: float = 2.0

    @property
    def z_range(self) -> tuple[float, float]:
        return (self.track.z_min, self.track.z_max)

    def ellipse(self, z: float, grow: float = 0.0) -> Ellipse | None:
        v = self.track.at(z)
        if v is None:
            return None
        lat, post, a, b, angle = v
        a, b = a + grow, b + grow
        if a < 0.3 or b < 0.3:
            return None
        flat, fpost = self.frame.at(z)
        sign = side_sign(self.side)
        return Ellipse(sign * (flat + lat) + self.offset[0], fpost + post + self.offset[1], a, b,
                       sign * math.radians(angle), self.exponent)


@dataclass(frozen=True)
class RingTrack:
    """The lateral abdominal wall: a band around the (per-slice) cavity ellipse."""

    side: Side
    cavity: ShapeTrack
    track: Track
    """(thickness, angle0_deg, angle1_deg) in side coordinates."""

    @property
    def z_range(self) -> tuple[float, float]:
        return (max(self.track.z_min, self.cavity.z_range[0]), min(self.track.z_max, self.cavity.z_range[1]))

    def ring(self, z: float) -> RingSector | None:
        e = self.cavity.ellipse(z)
        v = self.track.at(z)
        if e is None or v is None or v[0] < 0.5:
            return None
        thickness, a0, a1 = v
        if self.side is Side.RIGHT:  # mirror: world angle = pi - side angle
            a0, a1 = 180.0 - a1, 180.0 - a0
        return RingSector(e.cx, e.cy, e.a, e.b, thickness, math.radians(a0), math.radians(a1))


@dataclass(frozen=True)
class WingTrack:
    """The ilium wing in one slice: a curved band through (P, M, A) with half-thicknesses (rP, rM, rA)."""

    side: Side
    track: Track
    offset: tuple[float, float]

    @property
    def z_range(self) -> tuple[float, float]:
        return (self.track.z_min, self.track.z_max)

    def capsules(self, z: float, grow: float = 0.0) -> list[Capsule]:
        v = self.track.at(z)
        if v is None:
            return []
        px, py, mx, my, ax, ay, rp, rm, ra = v
        sign = side_sign(self.side)
        p, m, a = np.array([px, py]), np.array([mx, my]), np.array([ax, ay])
        control = 2.0 * m - 0.5 * (p + a)
        ts = np.linspace(0.0, 1.0, 9)
        points = [((1 - t) ** 2) * p + 2 * (1 - t) * t * control + t * t * a for t in ts]
        radii = [(rp + (rm - rp) * 2 * t) if t <= 0.5 else (rm + (ra - rm) * (2 * t - 1)) for t in ts]
        caps = []
        for i in range(len(ts) - 1):
            r0, r1 = radii[i] + grow, radii[i + 1] + grow
            if max(r0, r1) <= 0.2:
                continue
            q0 = (sign * points[i][0] + self.offset[0], points[i][1] + self.offset[1], z)
            q1 = (sign * points[i + 1][0] + self.offset[0], points[i + 1][1] + self.offset[1], z)
            caps.append(Capsule(q0, q1, max(r0, 0.0), max(r1, 0.0)))
        return caps


BoneShape = Sphere | Ellipsoid | Capsule | ShapeTrack | WingTrack


@dataclass(frozen=True)
class BonePart:
    shape: BoneShape
    cortex_mm: float
    marrow: Tissue
    subtract: bool = False
    """Carve this shape out of the bone (joint spaces, canals); the carved surface gets a cortex."""


@dataclass(frozen=True)
class Bone:
    label: int
    """Catalogue label, or 0 for bones outside the catalogue (vertebrae, talus, calcaneus)."""
    name: str
    parts: tuple[BonePart, ...]


MuscleShape = ShapeTrack | RingTrack


@dataclass(frozen=True)
class Muscle:
    label: int
    """Catalogue label, or 0 for skeletal muscle outside the catalogue (abdominal wall, back, pelvic floor)."""
    key: str
    shapes: tuple[MuscleShape, ...]
    fat_weight: float = 1.0
    """Relative amount of intramuscular fat (gluteus medius/minimus and the back infiltrate first)."""


@dataclass(frozen=True)
class Soft:
    """A non-muscle soft-tissue structure (label 0): viscera, vessels, nerves, tendons, joint soft tissue."""

    name: str
    tissue: Tissue
    shapes: tuple[Sphere | Ellipsoid | Capsule | Tube | ShapeTrack, ...]
    wall_mm: float = 0.0
    wall_tissue: Tissue = Tissue.BOWEL_WALL
    gas_level: float | None = None
    """For bowel: gas where the point lies more than this fraction of the radius anterior of the axis."""
    halo_mm: float = 0.0
    """A fat rim carved out of muscle around the structure (vessels in their sheath)."""
    envelope_only: bool = False
    """Only extends the body envelope (filled with fat): knee and ankle soft tissue, perineum."""
    inside_cavity: bool = False
    """Clipped to the abdominopelvic cavity (bowel loops)."""
    in_extent: bool = False
    """Counts for the body's extent (field of view, table) although it lies outside the trunk (the arms)."""


@dataclass(frozen=True)
class Implant:
    """A total hip prosthesis on one side: metal head, cup, neck and stem (label 0, tissue metal).

    It replaces bone: the femoral head and the neck above the osteotomy are not drawn on its side; pseudocapsule
    and joint fluid (`Tissue.PERIPROSTHETIC`, label 0) fill the space they leave around the metal.
    """

    side: Side
    shapes: tuple[Sphere | Capsule, ...]


@dataclass
class Anatomy:
    params: PhantomParameters
    landmarks: Landmarks
    bones: list[Bone] = field(default_factory=list)
    muscles: list[Muscle] = field(default_factory=list)
    soft: list[Soft] = field(default_factory=list)
    metal: list[Implant] = field(default_factory=list)
    """Hip prostheses, right first (their index seeds their streak pattern)."""
    cavity: ShapeTrack | None = None
    table_y: float = 150.0
    scales: dict[str, float] = field(default_factory=dict)


# --- the reference tables -----------------------------------------------------------------------------------
# Keys: (landmark, dz_mm, lat, post, a, b, angle_deg[, "A"]). dz is scaled by height; "A" marks coordinates in
# absolute side coordinates (converted to the muscle's frame); otherwise relative to the frame.
_LM = {
    "crest": "iliac_crest_top", "asis": "asis", "s1": "s1_top", "roof": "acetabular_roof",
    "head": "femoral_head_centre", "gt": "greater_trochanter", "symtop": "symphysis_top",
    "symbot": "symphysis_bottom", "lt": "lesser_trochanter", "it": "ischial_tuberosity", "knee": "knee_joint",
    "ankle": "ankle_joint", "sole": "sole",
}

Key = tuple  # (landmark, dz, lat, post, a, b, angle[, "A"])

_NECK_DIR = np.array([0.77, 0.16, -0.62])
"""Femoral neck axis in side coordinates (lateral, posterior, down): 128 deg neck-shaft angle, 12 deg anteversion."""
_OSTEOTOMY = 0.65
"""Where a hip prosthesis's neck osteotomy cuts the femoral neck: this fraction of the way from the head centre
to the neck's base (about 2 cm above the base)."""

# Catalogue muscles: key -> (frame name, pivot (lat, post) in absolute side coordinates or None, [tracks]).
_MUSCLES: dict[str, tuple[str, tuple[float, float] | None, list[list[Key]]]] = {
    "gluteus_maximus": ("mid", (70.0, 70.0), [[
        ("crest", -24, 56, 92, 0, 0, -15), ("s1", 0, 62, 92, 20, 9, -16),
        ("roof", 20, 84, 82, 58, 21, -22), ("head", 0, 96, 78, 64, 24, -27), ("lt", 8, 118, 64, 44, 22, -38),
        ("lt", -14, 132, 50, 0, 0, -45)]]),
    "gluteus_medius": ("mid", (118.0, 15.0), [[
        ("crest", -12, 138, 14, 0, 0, 0), ("crest", -20, 140, 18, 6, 26, 0), ("crest", -30, 128, 30, 15, 44, 30),
        ("roof", 25, 122, 34, 22, 48, 25), ("roof", 0, 133, 18, 21, 36, -18), ("gt", 0, 146, 14, 10, 20, 0),
        ("gt", -12, 148, 14, 0, 0, 0)]]),
    "gluteus_minimus": ("mid", (112.0, 8.0), [[
        ("crest", -42, 123, 2, 0, 0, 0), ("crest", -50, 121, 3, 9, 26, -10), ("roof", 20, 113, 4, 12, 29, -20),
        ("roof", 0, 113, -2, 13, 23, -30), ("head", 0, 126, -6, 10, 15, -30), ("gt", -6, 134, -2, 0, 0, -30)]]),
    "iliacus": ("mid", (100.0, -10.0), [[
        ("crest", -4, 114, -6, 0, 0, 15), ("crest", -15, 108, -10, 8, 30, 15), ("crest", -35, 99, -16, 15, 38, 20),
        ("roof", 25, 90, -28, 19, 28, 30), ("roof", 0, 95, -38, 17, 19, 20), ("head", 0, 102, -36, 15, 14, 0),
        ("lt", 25, 108, -12, 11, 11, 0), ("lt", 4, 108, 6, 0, 0, 0)]]),
    "psoas_major": ("mid", (40.0, 15.0), [[
        ("crest", 150, 33, 10, 16, 14, 40), ("crest", 40, 38, 8, 20, 16, 40), ("crest", 0, 45, 8, 21, 17, 40),
        ("s1", 0, 53, 0, 19, 16, 40), ("roof", 25, 66, -24, 15, 14, 30), ("roof", 0, 73, -38, 13, 13, 0),
        ("head", 0, 81, -42, 12, 12, 0), ("lt", 25, 97, -8, 10, 10, 0), ("lt", 2, 102, 10, 0, 0, 0)]]),
    "piriformis": ("mid", (55.0, 58.0), [[
        ("s1", -14, 30, 50, 0, 0, 10), ("s1", -24, 38, 54, 11, 8, 10), ("roof", 5, 70, 60, 24, 10, -15),
        ("head", 14, 104, 46, 27, 8, -25), ("gt", 5, 124, 32, 10, 6, -30), ("gt", -3, 131, 27, 0, 0, -30)]]),
    "obturator_internus": ("mid", (50.0, 10.0), [
        [("roof", 6, 52, 10, 0, 0, 0), ("roof", -6, 46, 10, 6, 20, 0), ("head", -10, 47, 6, 8, 30, 0),
         ("symbot", 0, 53, 12, 7, 27, 10), ("it", 14, 62, 30, 5, 14, 20), ("it", 4, 64, 34, 0, 0, 20)],
        [("head", -4, 80, 46, 0, 0, -10), ("head", -12, 88, 45, 28, 6, -10), ("head", -20, 96, 44, 0, 0, -10)]]),
    "obturator_externus": ("mid", (68.0, -5.0), [[
        ("head", -6, 68, -10, 0, 0, 20), ("head", -15, 68, -6, 13, 20, 20), ("symbot", 5, 72, 0, 15, 24, 30),
        ("lt", 15, 82, 10, 12, 19, 40), ("lt", 4, 86, 14, 0, 0, 40)]]),
    "pectineus": ("mid", (60.0, -30.0), [[
        ("head", -3, 50, -55, 0, 0, 20), ("head", -11, 55, -50, 18, 11, 20), ("symbot", 0, 70, -40, 22, 13, 30),
        ("lt", 0, 90, -22, 17, 11, 45), ("lt", -22, 98, -6, 0, 0, 45)]]),
    "tensor_fasciae_latae": ("femur", None, [[
        ("asis", -4, 118, -54, 0, 0, 0, "A"), ("asis", -12, 122, -50, 8, 8, 0, "A"),
        ("roof", 0, 128, -38, 12, 13, 20, "A"), ("lt", 0, 22, -34, 9, 15, 40), ("lt", -60, 30, -22, 5, 10, 50),
        ("lt", -90, 32, -18, 0, 0, 50)]]),
    "vastus_lateralis_intermedius": ("femur", None, [[
        ("gt", -10, 34, 2, 0, 0, 0), ("gt", -25, 33, 0, 9, 18, 0), ("lt", 0, 24, -6, 27, 30, 0),
        ("lt", -165, 17, -9, 37, 35, 20), ("knee", 120, 14, -12, 33, 29, 30), ("knee", 80, 9, -20, 19, 14, 30),
        ("knee", 60, 5, -28, 0, 0, 30)]]),
    "vastus_medialis": ("femur", None, [[
        ("lt", 5, -12, -5, 0, 0, 0), ("lt", -10, -18, -8, 12, 14, 0), ("lt", -165, -25, -18, 22, 22, 0),
        ("knee", 100, -32, -15, 27, 25, -20), ("knee", 60, -30, -22, 19, 16, -20), ("knee", 40, -25, -32, 0, 0, -20)]]),
    "rectus_femoris": ("femur", None, [[
        ("roof", 22, 100, -44, 0, 0, 0, "A"), ("roof", 10, 102, -46, 7, 6, 0, "A"),
        ("head", 0, 108, -50, 11, 9, 0, "A"), ("lt", 0, 2, -44, 16, 12, 0), ("lt", -165, 0, -50, 21, 15, 0),
        ("knee", 150, 0, -48, 17, 12, 0), ("knee", 100, 0, -45, 0, 0, 0)]]),
    "sartorius": ("femur", None, [[
        ("asis", -2, 115, -60, 0, 0, 0, "A"), ("asis", -8, 116, -60, 6, 5, 0, "A"),
        ("roof", 0, 117, -58, 10, 7, 0, "A"), ("lt", 0, -10, -52, 13, 8, -20), ("lt", -165, -46, -31, 14, 9, -50),
        ("knee", 100, -56, 4, 13, 10, -80), ("knee", 30, -50, 24, 12, 10, -90), ("knee", -10, -45, 30, 0, 0, -90)]]),
    "gracilis": ("femur", None, [[
        ("symbot", 10, 20, -45, 0, 0, 0, "A"), ("symbot", 0, 22, -42, 6, 12, 0, "A"), ("lt", -20, -87, 0, 9, 14, 0),
        ("lt", -165, -80, 10, 10, 13, 0), ("knee", 120, -68, 20, 9, 11, 0), ("knee", 50, -60, 28, 0, 0, 0)]]),
    "adductors": ("femur", None, [[
        ("symtop", -6, 25, -50, 0, 0, 0, "A"), ("symbot", 5, 40, -35, 20, 20, 0, "A"), ("lt", 0, -55, -4, 30, 34, 0),
        ("lt", -60, -50, 5, 34, 39, 0), ("lt", -165, -45, 12, 32, 35, 0), ("knee", 130, -35, 15, 22, 22, 0),
        ("knee", 60, -25, 18, 10, 12, 0), ("knee", 45, -22, 18, 0, 0, 0)]]),
    "semimembranosus": ("femur", None, [[
        ("it", 5, 88, 58, 0, 0, 0, "A"), ("it", -5, 85, 56, 9, 9, 0, "A"), ("lt", -60, -25, 45, 17, 15, 0),
        ("lt", -165, -28, 45, 17, 16, 0), ("knee", 120, -28, 40, 22, 18, 0), ("knee", 40, -25, 35, 14, 12, 0),
        ("knee", 15, -24, 34, 0, 0, 0)]]),
    "semitendinosus": ("femur", None, [[
        ("it", 3, 80, 62, 0, 0, 0, "A"), ("it", -8, 78, 65, 12, 10, 0, "A"), ("lt", -40, -15, 60, 19, 16, 0),
        ("lt", -165, -20, 62, 18, 14, 0), ("knee", 120, -30, 58, 10, 9, 0), ("knee", 80, -32, 57, 0, 0, 0)]]),
    "biceps_femoris": ("femur", None, [[
        ("it", 3, 92, 62, 0, 0, 0, "A"), ("it", -8, 93, 62, 12, 10, 0, "A"), ("lt", -40, 5, 55, 17, 15, 0),
        ("lt", -165, 12, 50, 20, 18, 0), ("knee", 100, 25, 42, 20, 16, 0), ("knee", 30, 30, 30, 12, 10, 0),
        ("knee", 0, 32, 25, 0, 0, 0)]]),
    "tibialis_anterior": ("tibia", None, [[
        ("knee", -15, 20, -5, 0, 0, 0), ("knee", -30, 22, -10, 10, 12, 0), ("knee", -100, 20, -8, 12, 16, 0),
        ("ankle", 150, 18, -12, 9, 11, 0), ("ankle", 80, 12, -18, 0, 0, 0)]]),
    "toe_extensors": ("tibia", None, [[
        ("knee", -25, 35, 0, 0, 0, 0), ("knee", -50, 36, -2, 7, 9, 0), ("knee", -150, 35, -8, 9, 12, 0),
        ("ankle", 60, 25, -15, 8, 8, 0), ("ankle", 20, 20, -18, 0, 0, 0)]]),
    "fibularis": ("tibia", None, [[
        ("knee", -25, 45, 15, 0, 0, 0), ("knee", -45, 45, 12, 8, 12, 0), ("knee", -150, 43, 15, 10, 13, 0),
        ("ankle", 80, 36, 16, 7, 9, 0), ("ankle", 30, 34, 16, 0, 0, 0)]]),
    "gastrocnemius": ("tibia", None, [
        [("knee", 42, -20, 35, 0, 0, 0), ("knee", 30, -20, 40, 8, 8, 0), ("knee", 0, -20, 48, 14, 12, 0),
         ("knee", -60, -15, 58, 24, 17, 0), ("knee", -130, -10, 60, 20, 14, 0), ("knee", -185, -5, 56, 0, 0, 0)],
        [("knee", 40, 20, 35, 0, 0, 0), ("knee", 30, 20, 40, 7, 7, 0), ("knee", 0, 18, 46, 11, 10, 0),
         ("knee", -60, 12, 56, 18, 14, 0), ("knee", -150, 8, 55, 0, 0, 0)]]),
    "soleus": ("tibia", None, [[
        ("knee", -20, 10, 30, 0, 0, 0), ("knee", -45, 10, 34, 20, 11, 0), ("knee", -130, 0, 38, 34, 17, 0),
        ("ankle", 100, 0, 39, 27, 13, 0), ("ankle", 45, 0, 42, 0, 0, 0)]]),
    "deep_posterior_leg": ("tibia", None, [[
        ("knee", -35, 10, 18, 0, 0, 0), ("knee", -60, 10, 18, 14, 8, 0), ("knee", -150, 8, 20, 18, 10, 0),
        ("ankle", 60, 5, 18, 14, 8, 0), ("ankle", 15, 5, 18, 0, 0, 0)]]),
}

# Parts of a catalogue muscle that follow another bone than its main track: the lower gluteus maximus, below the
# ischial tuberosity, lies posterior-lateral of the hamstrings' origin and thins towards its insertion on the
# gluteal tuberosity of the femur and the iliotibial tract; it moves with the femur (as the hamstrings do), so it is
# described in the femur's frame. It overlaps the main track above the tuberosity, where the two join.
_MUSCLE_PARTS: dict[str, list[tuple[str, tuple[float, float] | None, list[Key]]]] = {
    "gluteus_medius": [("mid", (118.0, 15.0), [
        ("crest", -38, 136, -8, 0, 0, 10), ("crest", -48, 136, -20, 8, 20, 10), ("roof", 22, 128, -20, 8, 18, 10),
        ("roof", 10, 126, -16, 0, 0, 10)])],
    "gluteus_maximus": [("femur", None, [
        ("it", 16, 14, 54, 0, 0, -35), ("it", 4, 20, 56, 30, 14, -38), ("it", -25, 26, 60, 30, 12, -40),
        ("it", -50, 28, 58, 24, 10, -40), ("it", -70, 28, 56, 14, 7, -40), ("it", -84, 28, 56, 0, 0, -40)])],
}

# Relative intramuscular fat: gluteus medius and minimus and the back muscles infiltrate most with age.
_FAT_WEIGHT = {"gluteus_medius": 1.5, "gluteus_minimus": 1.8, "tensor_fasciae_latae": 1.3, "paraspinal": 2.0,
               "soleus": 1.2, "gastrocnemius": 1.2}

# Skeletal muscle outside the catalogue (label 0): what a segmenter must leave out.
_OTHER_MUSCLES: dict[str, tuple[str, tuple[float, float] | None, list[list[Key]]]] = {
    "paraspinal": ("mid", (25.0, 60.0), [[
        ("crest", 160, 30, 70, 28, 22, 0), ("crest", 0, 28, 72, 26, 20, 0), ("s1", 0, 22, 78, 20, 14, 0),
        ("s1", -40, 12, 88, 10, 6, 0), ("s1", -55, 10, 90, 0, 0, 0)]]),
    "quadratus_lumborum": ("mid", (60.0, 40.0), [[
        ("crest", 160, 60, 35, 18, 10, 30), ("crest", 10, 66, 40, 15, 9, 30), ("crest", -6, 70, 45, 0, 0, 30)]]),
    "rectus_abdominis": ("mid", (30.0, -100.0), [[
        ("crest", 160, 38, -112, 30, 7, 0), ("crest", 0, 36, -110, 28, 7, 0), ("roof", 20, 22, -90, 20, 7, 5),
        ("symtop", 4, 12, -70, 10, 6, 10), ("symtop", -4, 10, -68, 0, 0, 10)]]),
    "levator_ani": ("mid", (30.0, 20.0), [[
        ("symtop", 10, 34, 15, 0, 0, 0), ("symtop", 0, 34, 16, 4, 28, 0), ("symbot", 0, 25, 25, 5, 24, 15),
        ("it", -5, 15, 36, 5, 14, 30), ("it", -15, 10, 40, 0, 0, 30)]]),
    "popliteus": ("tibia", None, [[
        ("knee", -5, 5, 25, 0, 0, 0), ("knee", -15, 0, 24, 16, 6, -20), ("knee", -45, 0, 22, 14, 5, -20),
        ("knee", -60, 0, 22, 0, 0, -20)]]),
}


class _Builder:
    """Turns the reference tables into the anatomy of one subject."""

    def __init__(self, params: PhantomParameters) -> None:
        self.p = params
        female = params.sex == "F"
        h_ref = 1.60 if female else 1.75
        self.hv = params.height_m / 1.60
        self.wb = math.sqrt(params.height_m / h_ref) * (1.0 if female else 1.08)
        self.pf = 1.0 if female else 0.90
        self.mr = params.muscle_scale * (1.0 if female else 1.12)
        self.head_r = 22.0 * self.wb
        self.lm = Landmarks.for_body(params.height_m, self.head_r)
        self.offset = params.offset_mm
        touching = params.legs_touching
        knee_lat = 70.0 if touching else 92.0
        ankle_lat = 78.0 if touching else 100.0
        self.ref_frames = self._frames(1.0, 1.0, 1.0, knee_lat, ankle_lat)
        self.frames = self._frames(self.wb, self.pf, self.hv, knee_lat, ankle_lat)

    # -- levels and frames --
    def z(self, landmark: str, dz: float) -> float:
        return float(getattr(self.lm, _LM[landmark])) + dz * self.hv

    def _frames(self, wb: float, pf: float, hv: float, knee_lat: float, ankle_lat: float) -> dict[str, Frame]:
        lm = self.lm
        s_top = (86.0 * wb * pf + 32.0 * wb, 10.0 * wb, lm.lesser_trochanter + 25.0 * hv)
        knee_f = (knee_lat * wb, 62.0 * wb, lm.knee_joint + 25.0 * hv)
        femur = Frame(s_top, knee_f)
        tibia = Frame((knee_lat * wb, 64.0 * wb, lm.knee_joint), (ankle_lat * wb, 85.0 * wb, lm.ankle_joint))
        fib0 = tibia.point(lm.knee_joint - 25.0 * hv, 32.0 * wb, 18.0 * wb)
        fib1 = tibia.point(lm.ankle_joint - 5.0 * hv, 27.0 * wb, 8.0 * wb)
        return {"mid": MID, "femur": femur, "tibia": tibia, "fibula": Frame(fib0, fib1)}

    def sx(self, frame: str) -> float:
        return self.wb * self.pf if frame == "mid" else self.wb

    # -- muscles --
    def muscle_track(self, side: Side, frame: str, pivot: tuple[float, float] | None, keys: list[Key]) -> ShapeTrack:
        fr_ref = self.ref_frames[frame]
        rows = []
        for key in keys:
            lm, dz, lat, post, a, b, angle = key[:7]
            z = self.z(lm, dz)
            z_ref = float(getattr(self.lm, _LM[lm])) + dz  # reference frames use reference offsets
            if len(key) > 7 and key[7] == "A":
                flat, fpost = fr_ref.at(z_ref)
                lat, post = lat - flat, post - fpost
            if pivot is not None and frame == "mid":
                pl, pp = pivot
            else:
                pl, pp = 0.0, 0.0
            lat_s = self.sx(frame) * (pl + self.mr * (lat - pl))
            post_s = self.wb * (pp + self.mr * (post - pp))
            rows.append((z, (lat_s, post_s, a * self.wb * self.mr, b * self.wb * self.mr, angle)))
        return ShapeTrack(side, self.frames[frame], Track(rows), self.offset)

    def muscles(self) -> list[Muscle]:
        out = []
        for key, (frame, pivot, tracks) in _MUSCLES.items():
            for side in SIDES:
                label = CATALOGUE.structure(key, side).label
                shapes = tuple(self.muscle_track(side, frame, pivot, t) for t in tracks)
                shapes += tuple(self.muscle_track(side, f, p, t) for f, p, t in _MUSCLE_PARTS.get(key, []))
                out.append(Muscle(label, f"{key}_{side.value}", shapes, _FAT_WEIGHT.get(key, 1.0)))
        for key, (frame, pivot, tracks) in _OTHER_MUSCLES.items():
            for side in SIDES:
                shapes = tuple(self.muscle_track(side, frame, pivot, t) for t in tracks)
                out.append(Muscle(0, f"{key}_{side.value}", shapes, _FAT_WEIGHT.get(key, 1.0)))
        # The lateral abdominal wall (external and internal oblique, transversus) around the cavity.
        cavity = self.cavity()
        for side in SIDES:
            wall = Track([(self.z("crest", 170), (15.0 * self.wb * self.mr, -75.0, 55.0)),
                          (self.z("crest", 10), (14.0 * self.wb * self.mr, -70.0, 50.0)),
                          (self.z("asis", -6), (0.0, -60.0, 40.0))])
            out.append(Muscle(0, f"abdominal_wall_{side.value}", (RingTrack(side, cavity, wall),)))
        return out

    def cavity(self) -> ShapeTrack:
        keys = [("crest", 170, 0, -25, 122, 82, 0), ("crest", 20, 0, -25, 118, 80, 0), ("crest", 0, 0, -25, 108, 76, 0),
                ("s1", 0, 0, -15, 95, 66, 0), ("roof", 20, 0, -2, 62, 60, 0), ("head", 0, 0, 0, 46, 56, 0),
                ("symbot", 0, 0, 12, 34, 44, 0), ("it", -2, 0, 22, 14, 20, 0)]
        rows = []
        for lm, dz, lat, post, a, b, angle in keys:
            rows.append((self.z(lm, dz), (lat, post * self.wb, a * self.wb * self.pf, b * self.wb, angle)))
        return ShapeTrack(Side.LEFT, MID, Track(rows), self.offset)

    # -- bones --
    def w(self, side: Side, lat: float, post: float, z: float) -> tuple[float, float, float]:
        """World point from absolute side coordinates (already scaled)."""
        return (side_sign(side) * lat + self.offset[0], post + self.offset[1], z)

    def wp(self, side: Side, lat: float, post: float, z: float) -> tuple[float, float, float]:
        """World point from reference pelvic side coordinates (scaled here)."""
        return self.w(side, lat * self.wb * self.pf, post * self.wb, z)

    def wf(self, side: Side, frame: str, z: float, lat: float = 0.0, post: float = 0.0) -> tuple[float, float, float]:
        """World point relative to a bone frame (reference offsets scaled here)."""
        flat, fpost = self.frames[frame].at(z)
        return self.w(side, flat + lat * self.wb, fpost + post * self.wb, z)

    def bone_track(self, side: Side, frame: str, keys: list[tuple[str, float, float, float, float, float]],
                   exponent: float = 2.0) -> ShapeTrack:
        rows = [(self.z(lm, dz), (lat * self.sx(frame), post * self.wb, a * self.wb, b * self.wb, 0.0))
                for lm, dz, lat, post, a, b in keys]
        return ShapeTrack(side, self.frames[frame], Track(rows), self.offset, exponent)

    def neck_point(self, side: Side, t: float) -> tuple[float, float, float]:
        """World point at fraction `t` along the femoral neck's axis, from the head centre (0) to its base (1)."""
        lat, post, z = np.array([86 * self.wb * self.pf, 0.0, self.z("head", 0)]) + t * 45 * self.wb * _NECK_DIR
        return self.w(side, float(lat), float(post), float(z))

    def neck_radius(self, t: float) -> float:
        return (14.0 + 2.0 * t) * self.wb

    def bones(self) -> list[Bone]:
        out: list[Bone] = []
        wb, z = self.wb, self.z
        tr, fat, dense = Tissue.MARROW_TRABECULAR, Tissue.MARROW_FATTY, Tissue.MARROW_DENSE
        head_c = z("head", 0)
        for side in SIDES:
            sg = side_sign(side)
            hip_c = self.wp(side, 86, 0, head_c)
            # -- hip bone --
            wing_keys = [
                ("crest", 1, (118, 22, 128, 2, 122, -14, 0.1, 0.1, 0.1)),
                ("crest", -8, (96, 56, 130, 4, 120, -36, 7, 5, 5)),
                ("crest", -26, (46, 77, 128, 6, 112, -62, 10, 3.2, 5)),
                ("crest", -46, (42, 68, 119, 10, 108, -52, 10, 3, 4.5)),
                ("roof", 20, (54, 52, 106, 14, 100, -36, 9, 5, 6)),
                ("roof", 5, (68, 42, 101, 12, 98, -20, 10, 9, 8)),
                ("roof", -6, (74, 36, 98, 8, 96, -10, 4, 6, 4)),
            ]
            rows = []
            for lm, dz, (px, py, mx, my, ax, ay, rp, rm, ra) in wing_keys:
                sxp = wb * self.pf
                rows.append((z(lm, dz), (px * sxp, py * wb, mx * sxp, my * wb, ax * sxp, ay * wb,
                                         rp * wb, rm * wb, ra * wb)))
            wing = WingTrack(side, Track(rows), self.offset)
            cup_normal = (sg * 0.673, -0.218, -0.707)
            parts = [
                BonePart(wing, 1.5, tr),
                BonePart(Sphere(hip_c, self.head_r + 13 * wb, cup_normal, 2.0 * wb), 2.0, tr),
                # posterior column and ischium down to the tuberosity
                BonePart(Capsule(self.wp(side, 78, 30, head_c - 4 * self.hv),
                                 self.wp(side, 84, 44, z("it", 14)), 13 * wb, 12 * wb), 2.0, tr),
                BonePart(Capsule(self.wp(side, 80, 26, head_c + 2 * self.hv),
                                 self.wp(side, 60, 44, z("roof", 14)), 11 * wb, 9 * wb), 2.0, tr),
                BonePart(Ellipsoid(self.wp(side, 84, 46, z("it", 13)), (14 * wb, 15 * wb, 13 * self.hv)), 2.0, tr),
                # superior pubic ramus, pubic body at the symphysis, ischiopubic ramus
                BonePart(Capsule(self.wp(side, 74, -16, head_c - 2 * self.hv),
                                 self.wp(side, 14, -60, z("symtop", -8)), 10 * wb, 8 * wb), 1.8, tr),
                BonePart(Ellipsoid(self.wp(side, 14, -57, 0.5 * (z("symtop", 0) + z("symbot", 0))),
                                   (11.5 * wb * self.pf, 10 * wb, 0.5 * (z("symtop", 0) - z("symbot", 0)))), 1.8, tr),
                BonePart(Capsule(self.wp(side, 16, -50, z("symbot", 5)), self.wp(side, 72, 36, z("it", 12)),
                                 7 * wb, 7 * wb), 1.8, tr),
                # acetabular fossa + joint space around the femoral head
                BonePart(Sphere(hip_c, self.head_r + 2.0), 1.5, tr, subtract=True),
            ]
            out.append(Bone(CATALOGUE.structure("hip_bone", side).label, f"hip_bone_{side.value}", tuple(parts)))

            # -- femur --
            fz = self.frames["femur"]
            n1 = self.neck_point(side, 1.0)
            gt_top = z("gt", 0)
            if side.value in self.p.metal_hip.sides:
                # Head and neck resected at the osteotomy; the neck's stump stays around the prosthesis's neck.
                head_neck = [BonePart(Capsule(self.neck_point(side, _OSTEOTOMY), n1, self.neck_radius(_OSTEOTOMY),
                                              self.neck_radius(1.0)), 2.0, tr)]
            else:
                head_neck = [BonePart(Sphere(hip_c, self.head_r), 1.5, tr),
                             BonePart(Capsule(hip_c, n1, self.neck_radius(0.0), self.neck_radius(1.0)), 2.0, tr)]
            f_parts = [
                *head_neck,
                BonePart(Ellipsoid(self.w(side, 128 * wb * self.pf + 6 * wb, 12 * wb, gt_top - 24 * self.hv),
                                   (14 * wb, 19 * wb, 24 * self.hv)), 1.8, tr),
                BonePart(Ellipsoid(self.wf(side, "femur", z("lt", 14), 0, 2), (20 * wb, 17 * wb, 42 * self.hv)),
                         2.5, tr),
                BonePart(Ellipsoid(self.wf(side, "femur", z("lt", 0), -10, 12), (9 * wb, 9 * wb, 12 * self.hv)),
                         1.8, tr),
                BonePart(Capsule(self.wf(side, "femur", z("lt", 20)), self.wf(side, "femur", z("knee", 90)),
                                 13 * wb, 13.5 * wb), 5.0 * wb, fat),
                BonePart(self.bone_track(side, "femur", [
                    ("knee", 110, 0, 0, 13.5, 13.5), ("knee", 60, 0, 1, 30, 23), ("knee", 35, 0, 2, 38, 27),
                    ("knee", 14, 0, 0, 38, 24), ("knee", 6, 0, -2, 30, 15)]), 2.0, tr),
                BonePart(Ellipsoid(self.wf(side, "femur", z("knee", 19), -20, 10), (14 * wb, 26 * wb, 17 * self.hv)),
                         1.8, tr),
                BonePart(Ellipsoid(self.wf(side, "femur", z("knee", 19), 20, 10), (14 * wb, 25 * wb, 17 * self.hv)),
                         1.8, tr),
            ]
            out.append(Bone(CATALOGUE.structure("femur", side).label, f"femur_{side.value}", tuple(f_parts)))
            _ = fz
            # -- patella --
            pat = Ellipsoid(self.wf(side, "femur", z("knee", 30), 4, -44), (21 * wb, 10 * wb, 20 * self.hv))
            out.append(Bone(CATALOGUE.structure("patella", side).label, f"patella_{side.value}",
                            (BonePart(pat, 1.5, tr),)))
            # -- tibia --
            t_parts = [
                BonePart(self.bone_track(side, "tibia", [
                    ("knee", -2, 0, 2, 36, 25), ("knee", -20, 0, 2, 35, 24), ("knee", -45, 0, 0, 26, 20),
                    ("knee", -80, 0, -1, 16, 15), ("knee", -110, 0, 0, 12, 13)]), 2.0, tr),
                BonePart(Ellipsoid(self.wf(side, "tibia", z("knee", -32), 0, -18), (10 * wb, 8 * wb, 16 * self.hv)),
                         1.5, tr),
                BonePart(Capsule(self.wf(side, "tibia", z("knee", -100)), self.wf(side, "tibia", z("ankle", 55)),
                                 12 * wb, 11 * wb), 4.0 * wb, fat),
                BonePart(self.bone_track(side, "tibia", [
                    ("ankle", 70, 0, 0, 11.5, 11.5), ("ankle", 30, 0, 0, 20, 16), ("ankle", 8, 0, 0, 22, 17),
                    ("ankle", 1.5, 0, 0, 22, 17)]), 1.8, tr),
                BonePart(Capsule(self.wf(side, "tibia", z("ankle", 14), -13, 0),
                                 self.wf(side, "tibia", z("ankle", -12), -15, 2), 7 * wb, 6 * wb), 1.5, tr),
            ]
            out.append(Bone(CATALOGUE.structure("tibia", side).label, f"tibia_{side.value}", tuple(t_parts)))
            # -- fibula --
            fb = [
                BonePart(Ellipsoid(self.wf(side, "fibula", z("knee", -28)), (11 * wb, 11 * wb, 12 * self.hv)), 1.5, tr),
                BonePart(Capsule(self.wf(side, "fibula", z("knee", -36)), self.wf(side, "fibula", z("ankle", 20)),
                                 7 * wb, 6.5 * wb), 2.5 * wb, fat),
                BonePart(Ellipsoid(self.wf(side, "fibula", z("ankle", -4)), (9 * wb, 11 * wb, 21 * self.hv)), 1.5, tr),
            ]
            out.append(Bone(CATALOGUE.structure("fibula", side).label, f"fibula_{side.value}", tuple(fb)))
            # -- talus, calcaneus, navicular (outside the catalogue) --
            foot = [
                BonePart(Ellipsoid(self.wf(side, "tibia", z("ankle", -17), 0, -4), (17 * wb, 25 * wb, 15 * self.hv)),
                         1.5, tr),
                BonePart(Ellipsoid(self.wf(side, "tibia", z("ankle", -45), 0, 28), (18 * wb, 38 * wb, 22 * self.hv)),
                         1.5, tr),
                BonePart(Ellipsoid(self.wf(side, "tibia", z("ankle", -26), 0, -40), (20 * wb, 16 * wb, 15 * self.hv)),
                         1.5, tr),
            ]
            out.append(Bone(0, f"foot_bones_{side.value}", tuple(foot)))

        # -- sacrum (midline) --
        sac = ShapeTrack(Side.LEFT, MID, Track([
            (z("s1", 0), (0.0, 34 * wb, 44 * wb * self.pf, 16 * wb, 0.0)),
            (z("s1", -12), (0.0, 40 * wb, 46 * wb * self.pf, 17 * wb, 0.0)),
            (z("roof", 10), (0.0, 55 * wb, 36 * wb * self.pf, 14 * wb, 0.0)),
            (z("head", 6), (0.0, 74 * wb, 20 * wb * self.pf, 10 * wb, 0.0)),
            (z("symtop", 0), (0.0, 80 * wb, 10 * wb, 7 * wb, 0.0))]), self.offset, 2.6)
        canal = ShapeTrack(Side.LEFT, MID, Track([
            (z("s1", 2), (0.0, 44 * wb, 11 * wb, 6 * wb, 0.0)),
            (z("roof", 10), (0.0, 60 * wb, 8 * wb, 4 * wb, 0.0)),
            (z("head", 10), (0.0, 76 * wb, 0.0, 0.0, 0.0))]), self.offset)
        out.append(Bone(CATALOGUE.structure("sacrum", Side.MIDLINE).label, "sacrum",
                        (BonePart(sac, 1.5, tr), BonePart(canal, 1.0, Tissue.FAT, subtract=True))))
        # -- lumbar vertebrae L4, L5 and coccyx (outside the catalogue) --
        vert: list[BonePart] = []
        top = z("s1", 0)
        body_h, disc_h = 27 * self.hv, 9 * self.hv
        zc = top + disc_h
        for _ in range(3):
            body = ShapeTrack(Side.LEFT, MID, Track([
                (zc, (0.0, 14 * wb, 23 * wb, 17 * wb, 0.0)), (zc + body_h, (0.0, 14 * wb, 24 * wb, 17 * wb, 0.0))]),
                self.offset, 2.4)
            arch = Ellipsoid(self.w(Side.LEFT, 0, 55 * wb, zc + body_h * 0.5), (9 * wb, 18 * wb, 13 * self.hv))
            trans = Ellipsoid(self.w(Side.LEFT, 0, 38 * wb, zc + body_h * 0.6),
                              (48 * wb * self.pf, 6 * wb, 6 * self.hv))
            vert += [BonePart(body, 1.2, tr), BonePart(arch, 1.5, tr), BonePart(trans, 1.5, tr)]
            zc += body_h + disc_h
        coccyx = Capsule(self.w(Side.LEFT, 0, 80 * wb, z("symtop", 2)), self.w(Side.LEFT, 0, 72 * wb, z("symtop", -18)),
                         6 * wb, 4 * wb)
        vert.append(BonePart(coccyx, 1.0, tr))
        out.append(Bone(0, "lumbar_spine_coccyx", tuple(vert)))
        _ = dense
        return out

    # -- soft tissue --
    def soft(self) -> list[Soft]:
        wb, z, hv = self.wb, self.z, self.hv
        out: list[Soft] = []
        female = self.p.sex == "F"
        # Bladder (moderately filled), uterus or prostate, rectum and anal canal.
        out.append(Soft("bladder", Tissue.URINE, (Ellipsoid(self.wp(Side.LEFT, 0, -34, z("symtop", 16)),
                                                            (36 * wb * self.pf, 30 * wb, 32 * hv)),),
                        wall_mm=2.5, wall_tissue=Tissue.SOFT_ORGAN))
        if female:
            out.append(Soft("uterus", Tissue.SOFT_ORGAN, (Ellipsoid(self.wp(Side.LEFT, 0, 8, z("symtop", 62)),
                                                                    (26 * wb, 19 * wb, 30 * hv)),)))
            out.append(Soft("vagina", Tissue.SOFT_ORGAN, (Capsule(self.wp(Side.LEFT, 0, 6, z("symtop", 30)),
                                                                  self.wp(Side.LEFT, 0, 12, z("it", -18)),
                                                                  9 * wb, 7 * wb),)))
        else:
            out.append(Soft("prostate", Tissue.SOFT_ORGAN, (Ellipsoid(self.wp(Side.LEFT, 0, -28, z("symbot", 6)),
                                                                      (20 * wb, 16 * wb, 18 * hv)),)))
            for side in SIDES:
                out.append(Soft(f"testis_{side.value}", Tissue.SOFT_ORGAN,
                                (Ellipsoid(self.wp(side, 16, -72, z("it", -40)), (15 * wb, 19 * wb, 22 * hv)),)))
            out.append(Soft("penis", Tissue.SOFT_ORGAN, (Capsule(self.wp(Side.LEFT, 0, -70, z("symbot", -4)),
                                                                 self.wp(Side.LEFT, 0, -100, z("it", -70)),
                                                                 13 * wb, 12 * wb),)))
        rectum = Tube((self.wp(Side.LEFT, 0, 68, z("s1", -45)), self.wp(Side.LEFT, 0, 58, z("head", 0)),
                       self.wp(Side.LEFT, 0, 44, z("symbot", 0)), self.wp(Side.LEFT, 0, 40, z("it", -25))),
                      (17 * wb, 15 * wb, 10 * wb, 6 * wb))
        out.append(Soft("rectum", Tissue.FECES, (rectum,), wall_mm=3.0, gas_level=0.55, inside_cavity=False))
        # Perineum and crotch: fat-filled soft tissue between the thighs below the pelvic floor.
        out.append(Soft("perineum", Tissue.FAT, (Ellipsoid(self.wp(Side.LEFT, 0, 10, z("it", -6)),
                                                           (34 * wb, 58 * wb, 30 * hv)),), envelope_only=True))
        out.extend(self.bowel())
        out.extend(self.vessels())
        for side in SIDES:
            if side.value in self.p.metal_hip.sides:
                # Where the resected femoral head and neck were: pseudocapsule and fluid around the prosthesis.
                hip_c = self.wp(side, 86, 0, z("head", 0))
                out.append(Soft(f"periprosthetic_tissue_{side.value}", Tissue.PERIPROSTHETIC, (
                    Sphere(hip_c, self.head_r),
                    Capsule(hip_c, self.neck_point(side, _OSTEOTOMY), self.neck_radius(0.0),
                            self.neck_radius(_OSTEOTOMY)))))
        # Sciatic nerve.
        for side in SIDES:
            pts = [self.wp(side, 72, 62, z("head", 14)), self.wp(side, 92, 64, z("head", -12)),
                   self.wp(side, 100, 62, z("it", 0)), self.wf(side, "femur", z("lt", -40), -3, 42),
                   self.wf(side, "femur", z("lt", -165), -5, 38), self.wf(side, "femur", z("knee", 80), -2, 40),
                   self.wf(side, "tibia", z("knee", 0), 0, 40), self.wf(side, "tibia", z("knee", -60), 0, 30)]
            out.append(Soft(f"sciatic_nerve_{side.value}", Tissue.NERVE, (Tube(tuple(pts), (5 * wb,) * len(pts)),),
                            halo_mm=1.5))
            # Tendons.
            tendons = [
                ("patellar_tendon", (self.wf(side, "femur", z("knee", 12), 4, -44),
                                     self.wf(side, "tibia", z("knee", -32), 0, -24)), 5.0),
                ("quadriceps_tendon", (self.wf(side, "femur", z("knee", 46), 4, -42),
                                       self.wf(side, "femur", z("knee", 95), 2, -42)), 5.5),
                ("achilles_tendon", (self.wf(side, "tibia", z("ankle", 140), 0, 54),
                                     self.wf(side, "tibia", z("ankle", 40), 0, 52),
                                     self.wf(side, "tibia", z("ankle", -25), 0, 48)), 4.5),
                ("tibialis_anterior_tendon", (self.wf(side, "tibia", z("ankle", 95), 10, -19),
                                              self.wf(side, "tibia", z("ankle", -10), -5, -25)), 3.0),
                ("extensor_tendons", (self.wf(side, "tibia", z("ankle", 25), 20, -18),
                                      self.wf(side, "tibia", z("ankle", -15), 18, -26)), 2.5),
                ("fibular_tendons", (self.wf(side, "tibia", z("ankle", 35), 34, 17),
                                     self.wf(side, "tibia", z("ankle", -15), 30, 24)), 3.0),
                ("tibialis_posterior_tendon", (self.wf(side, "tibia", z("ankle", 20), -12, 13),
                                               self.wf(side, "tibia", z("ankle", -15), -17, 12)), 2.5),
                ("flexor_hallucis_tendon", (self.wf(side, "tibia", z("ankle", 20), -3, 26),
                                            self.wf(side, "tibia", z("ankle", -15), -8, 22)), 2.5),
            ]
            for name, pts, r in tendons:
                out.append(Soft(f"{name}_{side.value}", Tissue.TENDON, (Tube(pts, (r * wb,) * len(pts)),)))
            # Soft tissue (fat) envelopes of the knee, ankle and foot.
            knee = self.bone_track(side, "tibia", [("knee", 75, 0, 14, 44, 46), ("knee", 20, 0, 16, 46, 48),
                                                   ("knee", -30, 0, 18, 40, 42), ("knee", -70, 0, 20, 34, 36)])
            ankle = self.bone_track(side, "tibia", [("ankle", 70, 0, 12, 26, 34), ("ankle", 0, 0, 6, 30, 38),
                                                    ("ankle", -40, 0, 6, 30, 40)])
            foot = Ellipsoid(self.wf(side, "tibia", 0.5 * z("ankle", 0), 0, -45),
                             (36 * wb, 105 * wb, 0.5 * z("ankle", 0) - 2))
            out.append(Soft(f"joint_soft_tissue_{side.value}", Tissue.FAT, (knee, ankle, foot), envelope_only=True))
        return out

    def vessels(self) -> list[Soft]:
        wb, z = self.wb, self.z
        out: list[Soft] = []
        for side in SIDES:
            artery = [
                self.wp(side, 6, -6, z("crest", 90)), self.wp(side, 20, -8, z("crest", 0)),
                self.wp(side, 38, -12, z("s1", 0)), self.wp(side, 60, -40, z("roof", 20)),
                self.wp(side, 72, -56, z("head", 4)), self.wf(side, "femur", z("lt", 0), -28, -56),
                self.wf(side, "femur", z("lt", -165), -36, -22), self.wf(side, "femur", z("knee", 120), -20, 20),
                self.wf(side, "femur", z("knee", 45), -3, 40), self.wf(side, "tibia", z("knee", -40), 0, 32),
                self.wf(side, "tibia", z("knee", -70), -6, 30), self.wf(side, "tibia", z("ankle", 60), -12, 24),
                self.wf(side, "tibia", z("ankle", -5), -18, 17)]
            radii = (6, 5.5, 5, 4.5, 4.2, 4, 3.8, 3.6, 3.5, 3.2, 2, 1.8, 1.6)
            out.append(Soft(f"artery_{side.value}", Tissue.ARTERY, (Tube(tuple(artery), tuple(r * wb for r in radii)),),
                            halo_mm=1.5))
            vein = [
                self.wp(side, 16, 4, z("crest", 90)), self.wp(side, 26, 2, z("crest", 0)),
                self.wp(side, 44, 0, z("s1", 0)), self.wp(side, 54, -34, z("roof", 20)),
                self.wp(side, 58, -52, z("head", 4)), self.wf(side, "femur", z("lt", 0), -42, -50),
                self.wf(side, "femur", z("lt", -165), -40, -12), self.wf(side, "femur", z("knee", 120), -22, 30),
                self.wf(side, "femur", z("knee", 45), -4, 50), self.wf(side, "tibia", z("knee", -40), 2, 40),
                self.wf(side, "tibia", z("knee", -70), -2, 36), self.wf(side, "tibia", z("ankle", 60), -16, 26),
                self.wf(side, "tibia", z("ankle", -5), -21, 21)]
            vradii = (8, 7, 6.5, 6, 5.5, 5, 5, 4.6, 4.5, 4, 2.4, 2.2, 2)
            out.append(Soft(f"vein_{side.value}", Tissue.VEIN, (Tube(tuple(vein), tuple(r * wb for r in vradii)),),
                            halo_mm=1.5))
            ant_tib = [self.wf(side, "tibia", z("knee", -40), 0, 32), self.wf(side, "tibia", z("knee", -75), 20, 12),
                       self.wf(side, "tibia", z("knee", -110), 20, 3), self.wf(side, "tibia", z("ankle", 60), 12, -12),
                       self.wf(side, "tibia", z("ankle", -5), 5, -22)]
            out.append(Soft(f"anterior_tibial_artery_{side.value}", Tissue.ARTERY,
                            (Tube(tuple(ant_tib), (1.8 * wb,) * len(ant_tib)),), halo_mm=1.0))
        aorta = Tube((self.w(Side.LEFT, 12 * wb, -8 * wb, z("crest", 200)), self.w(Side.LEFT, 6 * wb, -8 * wb,
                                                                                   z("crest", 92))),
                     (9 * wb, 8 * wb))
        ivc = Tube((self.w(Side.RIGHT, 20 * wb, 4 * wb, z("crest", 200)), self.w(Side.RIGHT, 14 * wb, 4 * wb,
                                                                                  z("crest", 92))),
                   (11 * wb, 10 * wb))
        out.append(Soft("aorta", Tissue.ARTERY, (aorta,), halo_mm=1.0))
        out.append(Soft("inferior_vena_cava", Tissue.VEIN, (ivc,), halo_mm=1.0))
        return out

    def bowel(self) -> list[Soft]:
        """Small-bowel loops and colon: random tubes in the abdominal cavity (deterministic from the seed)."""
        rng = np.random.default_rng([self.p.seed, 0xB0E1])
        wb, z = self.wb, self.z
        out: list[Soft] = []
        # Caecum in the right iliac fossa, sigmoid colon in the left lower quadrant (feces with gas).
        caecum = Tube((self.wp(Side.RIGHT, 62, -30, z("crest", 120)), self.wp(Side.RIGHT, 64, -32, z("crest", 10)),
                       self.wp(Side.RIGHT, 52, -40, z("s1", -12))), (20 * wb, 22 * wb, 16 * wb))
        sigmoid = Tube((self.wp(Side.LEFT, 60, -30, z("crest", 60)), self.wp(Side.LEFT, 60, -34, z("s1", 0)),
                        self.wp(Side.LEFT, 30, -10, z("roof", 20)), self.wp(Side.LEFT, 8, 40, z("roof", 12)),
                        self.wp(Side.LEFT, 0, 66, z("s1", -45))), (15 * wb, 15 * wb, 14 * wb, 15 * wb, 16 * wb))
        out.append(Soft("caecum", Tissue.FECES, (caecum,), wall_mm=2.5, gas_level=0.5, inside_cavity=True))
        out.append(Soft("sigmoid_colon", Tissue.FECES, (sigmoid,), wall_mm=2.5, gas_level=0.6, inside_cavity=True))
        # Small-bowel loops: short tubes with fluid content, some with an air-fluid level.
        placed: list[tuple[np.ndarray, np.ndarray, float]] = []
        z_low, z_high = z("roof", 30), z("crest", 170)
        tries = 0
        while len(placed) < 34 and tries < 4000:
            tries += 1
            zc = rng.uniform(z_low, z_high)
            cav = self.cavity().ellipse(zc)
            if cav is None:
                continue
            ang = rng.uniform(0, 2 * np.pi)
            rad = math.sqrt(rng.uniform(0, 1)) * 0.78
            cx = cav.cx + rad * cav.a * math.cos(ang)
            cy = cav.cy + rad * cav.b * math.sin(ang)
            if cy > 20 * wb + self.offset[1]:  # the retroperitoneum (psoas, spine) is behind
                continue
            r = rng.uniform(9, 14) * wb
            direction = rng.normal(size=3)
            direction /= np.linalg.norm(direction)
            half = rng.uniform(12, 35) * wb
            p0 = np.array([cx, cy, zc]) - half * direction
            p1 = np.array([cx, cy, zc]) + half * direction
            if any(_segment_distance(p0, p1, q0, q1) < r + qr + 2.0 for q0, q1, qr in placed):
                continue
            bladder_c = np.array(self.wp(Side.LEFT, 0, -34, z("symtop", 16)))
            if min(np.linalg.norm(p0 - bladder_c), np.linalg.norm(p1 - bladder_c)) < 45 * wb + r:
                continue
            placed.append((p0, p1, r))
            gas = float(rng.uniform(0.3, 0.7)) if rng.uniform() < 0.35 else None
            out.append(Soft(f"small_bowel_{len(placed)}", Tissue.BOWEL_CONTENT,
                            (Capsule(tuple(p0), tuple(p1), r, r),), wall_mm=2.0, gas_level=gas, inside_cavity=True))
        return out

    def metal(self) -> list[Implant]:
        """A total hip prosthesis on each side `metal_hip` names (right first): a 28-mm-class metal head in a
        hemispherical cup seated in the reamed acetabulum, a neck along the femoral neck's axis and a tapered stem
        in the femoral canal down to 12 cm below the lesser trochanter."""
        wb, z = self.wb, self.z
        implants = []
        for side in SIDES:
            if side.value not in self.p.metal_hip.sides:
                continue
            head_c = self.wp(side, 86, 0, z("head", 0))
            neck_end = self.neck_point(side, 40.0 / 45.0)
            sg = side_sign(side)
            cup_normal = (sg * 0.673, -0.218, -0.707)
            implants.append(Implant(side, (
                Sphere(head_c, 14.0 * wb),
                Sphere(head_c, self.head_r + 5.0, cup_normal, 0.0),
                Capsule(head_c, neck_end, 7 * wb, 8 * wb),
                Capsule(neck_end, self.wf(side, "femur", z("lt", -10)), 8 * wb, 7 * wb),
                Capsule(self.wf(side, "femur", z("lt", -10)), self.wf(side, "femur", z("lt", -120)), 7 * wb,
                        4.5 * wb),
            )))
        return implants


def _segment_distance(p0: np.ndarray, p1: np.ndarray, q0: np.ndarray, q1: np.ndarray) -> float:
    """Approximate shortest distance between two segments (sampled)."""
    ts = np.linspace(0, 1, 7)[:, None]
    a = p0 + ts * (p1 - p0)
    b = q0 + ts * (q1 - q0)
    return float(np.min(np.linalg.norm(a[:, None, :] - b[None, :, :], axis=2)))


def _arms(anatomy: Anatomy, b: _Builder) -> list[Soft]:
    """Forearms beside the pelvis and hips, from just below the iliac crest to the upper thigh, each a muscle core
    (label 0) with radius and ulna, 12 mm of air from the trunk's skin (so each arm is its own body part)."""
    from sarcoscreen.inference.phantom.rasterize import body_extent

    top, bottom = b.z("crest", -30), b.z("lt", -60)
    xmin, xmax, ymin, ymax = body_extent(anatomy, np.linspace(bottom, top, 12))
    grow = anatomy.params.fat_mm + 2.0  # the arm's own fat and skin
    radius = 30.0 * b.wb
    y = 0.5 * (ymin + ymax) - 10.0
    out = []
    for side, edge in ((Side.RIGHT, xmin), (Side.LEFT, xmax)):
        sign = side_sign(side)
        x = edge + sign * (12.0 + grow + radius)
        axis = ((x, y, top), (x + sign * 6.0, y - 15.0, bottom))
        out.append(Soft(f"forearm_{side.value}", Tissue.MUSCLE, (Capsule(*axis, radius, 0.85 * radius),),
                        in_extent=True))
        for name, dx, r in (("radius", -9.0, 7.0 * b.wb), ("ulna", 9.0, 6.0 * b.wb)):
            bone = ((axis[0][0] + dx, y, top - 10.0), (axis[1][0] + dx, y - 15.0, bottom + 10.0))
            out.append(Soft(f"{name}_{side.value}", Tissue.MARROW_FATTY, (Capsule(*bone, r, r),), wall_mm=2.5,
                            wall_tissue=Tissue.CORTEX, in_extent=True))
    return out


def build_anatomy(params: PhantomParameters) -> Anatomy:
    """The anatomy of the subject described by `params` (deterministic)."""
    b = _Builder(params)
    anatomy = Anatomy(params=params, landmarks=b.lm)
    anatomy.bones = b.bones()
    anatomy.muscles = b.muscles()
    anatomy.soft = b.soft()
    anatomy.metal = b.metal()
    anatomy.cavity = b.cavity()
    if params.arms:
        anatomy.soft.extend(_arms(anatomy, b))
    anatomy.scales = {"height_scale": b.hv, "bone_scale": b.wb, "pelvis_width_factor": b.pf,
                      "muscle_scale_relative_to_bone": b.mr}
    return anatomy
