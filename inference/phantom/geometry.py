"""Shape primitives of the phantom, evaluated exactly at voxel centres of one axial slice.

Coordinates are DICOM patient coordinates (LPS, PS3.3 C.7.6.2.1.1): +x towards the patient's left, +y
posterior, +z superior, in mm. Anatomy is described per body side in *side coordinates* ``(lat, post)``:
``lat`` grows away from the midline, ``post`` grows posteriorly; ``x = side_sign * lat + offset_x`` with
``side_sign = -1`` for the right side and ``+1`` for the left side.

A shape is evaluated on a `Window` (the pixel centres of one slice inside a bounding box) and returns either a
boolean mask (bones, viscera) or a normalised distance ``d`` (``d <= 1`` inside) with its gradient magnitude
(muscle territories, which are partitioned by the smallest ``d``, an Apollonius-type diagram).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from scipy.interpolate import PchipInterpolator

__all__ = [
    "Capsule",
    "Ellipse",
    "Ellipsoid",
    "Grid",
    "RingSector",
    "Sphere",
    "Track",
    "Tube",
    "Window",
]

_EPS = 1e-6


class Track:
    """Values that vary smoothly with z: monotone cubic (PCHIP) interpolation between key levels.

    Outside the first and last key the track does not exist (`at` returns ``None``), which is how structures
    begin and end along the body axis.
    """

    def __init__(self, keys: Sequence[tuple[float, Sequence[float]]]) -> None:
        ordered = sorted(((float(z), tuple(float(v) for v in values)) for z, values in keys), key=lambda k: k[0])
        zs = np.array([z for z, _ in ordered])
        if len(zs) < 2 or np.any(np.diff(zs) <= 0):
            raise ValueError(f"a track needs at least two distinct key levels, got {zs.tolist()}")
        self.z_min = float(zs[0])
        self.z_max = float(zs[-1])
        values = np.array([v for _, v in ordered], dtype=np.float64)
        self._interp = PchipInterpolator(zs, values, axis=0, extrapolate=False)

    def at(self, z: float) -> np.ndarray | None:
        if z < self.z_min or z > self.z_max:
            return None
        return np.asarray(self._interp(z), dtype=np.float64)


@dataclass(frozen=True)
class Grid:
    """Pixel-centre coordinates of one slice: ``x[j]`` of column ``j``, ``y[i]`` of row ``i`` (mm, LPS)."""

    x: np.ndarray
    y: np.ndarray
    z: float

    @property
    def shape(self) -> tuple[int, int]:
        return (len(self.y), len(self.x))

    def window(self, xmin: float, xmax: float, ymin: float, ymax: float) -> Window | None:
        cols = _index_range(self.x, xmin, xmax)
        rows = _index_range(self.y, ymin, ymax)
        if cols is None or rows is None:
            return None
        return Window(rows, cols, self.x[cols][None, :], self.y[rows][:, None], self.z)


def _index_range(coords: np.ndarray, low: float, high: float) -> slice | None:
    """Indices of `coords` (monotone, either direction) within [low, high], as a slice."""
    step = coords[1] - coords[0]
    a = (low - coords[0]) / step
    b = (high - coords[0]) / step
    start = max(math.floor(min(a, b)), 0)
    stop = min(math.ceil(max(a, b)) + 1, len(coords))
    if start >= stop:
        return None
    return slice(start, stop)


@dataclass(frozen=True)
class Window:
    """A rectangle of pixel centres: ``X`` (1, ncols) and ``Y`` (nrows, 1) in mm."""

    rows: slice
    cols: slice
    X: np.ndarray
    Y: np.ndarray
    z: float

    def empty(self) -> np.ndarray:
        """A mask of the window with no pixel set."""
        return np.zeros((self.Y.shape[0], self.X.shape[1]), dtype=bool)


@dataclass(frozen=True)
class Ellipse:
    """An ellipse (or superellipse, exponent > 2) in the slice plane, world coordinates."""

    cx: float
    cy: float
    a: float
    b: float
    angle: float = 0.0
    """Rotation of the ``a`` axis from +x towards +y, radians."""
    exponent: float = 2.0

    def bbox(self, grow: float = 0.0) -> tuple[float, float, float, float]:
        a, b = self.a + grow, self.b + grow
        if self.exponent > 2.0:
            ex = ey = max(a, b) * 1.42
        else:
            c, s = math.cos(self.angle), math.sin(self.angle)
            ex = math.sqrt((a * c) ** 2 + (b * s) ** 2)
            ey = math.sqrt((a * s) ** 2 + (b * c) ** 2)
        return (self.cx - ex, self.cx + ex, self.cy - ey, self.cy + ey)

    def _uv(self, w: Window) -> tuple[np.ndarray, np.ndarray]:
        c, s = math.cos(self.angle), math.sin(self.angle)
        dx = w.X - self.cx
        dy = w.Y - self.cy
        return dx * c + dy * s, -dx * s + dy * c

    def distance(self, w: Window) -> tuple[np.ndarray, np.ndarray]:
        """Normalised distance ``d`` (1 on the outline) and an estimate of ``|grad d|`` (1/mm)."""
        u, v = self._uv(w)
        a, b = max(self.a, _EPS), max(self.b, _EPS)
        if self.exponent == 2.0:
            d = np.sqrt((u / a) ** 2 + (v / b) ** 2)
        else:
            n = self.exponent
            d = (np.abs(u / a) ** n + np.abs(v / b) ** n) ** (1.0 / n)
        g = np.sqrt((u / (a * a)) ** 2 + (v / (b * b)) ** 2) / np.maximum(np.sqrt((u / a) ** 2 + (v / b) ** 2), _EPS)
        return d, g

    def mask(self, w: Window, grow: float = 0.0) -> np.ndarray:
        a, b = self.a + grow, self.b + grow
        if a <= 0 or b <= 0:
            return w.empty()
        u, v = self._uv(w)
        if self.exponent == 2.0:
            return (u / a) ** 2 + (v / b) ** 2 <= 1.0
        n = self.exponent
        return np.abs(u / a) ** n + np.abs(v / b) ** n <= 1.0


class _EllipticSections:
    """A solid whose axial section at each z is an `Ellipse` (`section`, None where it has none): its bounding box
    and mask at z follow from that section."""

    def section(self, z: float, grow: float = 0.0) -> Ellipse | None:
        raise NotImplementedError

    def bbox(self, z: float, grow: float = 0.0) -> tuple[float, float, float, float] | None:
        e = self.section(z, grow)
        return None if e is None else e.bbox()

    def mask(self, w: Window, grow: float = 0.0) -> np.ndarray:
        e = self.section(w.z, grow)
        return w.empty() if e is None else e.mask(w)


@dataclass(frozen=True)
class Sphere(_EllipticSections):
    """A sphere, optionally cut by a plane: only points with ``normal . (p - centre) <= cut`` are kept."""

    centre: tuple[float, float, float]
    radius: float
    normal: tuple[float, float, float] | None = None
    cut: float = 0.0

    def section(self, z: float, grow: float = 0.0) -> Ellipse | None:
        r = self.radius + grow
        dz = z - self.centre[2]
        if r <= 0 or abs(dz) >= r:
            return None
        rr = math.sqrt(r * r - dz * dz)
        return Ellipse(self.centre[0], self.centre[1], rr, rr)

    def mask(self, w: Window, grow: float = 0.0) -> np.ndarray:
        m = super().mask(w, grow)
        if self.normal is not None:
            nx, ny, nz = self.normal
            # Shrinking (grow < 0) moves the cut plane inwards too, so the rim gets a cortex.
            level = self.cut + min(grow, 0.0)
            m &= nx * (w.X - self.centre[0]) + ny * (w.Y - self.centre[1]) + nz * (w.z - self.centre[2]) <= level
        return m


@dataclass(frozen=True)
class Ellipsoid(_EllipticSections):
    """An ellipsoid with axes along x, y, z (then rotated about z by `angle`)."""

    centre: tuple[float, float, float]
    radii: tuple[float, float, float]
    angle: float = 0.0

    def section(self, z: float, grow: float = 0.0) -> Ellipse | None:
        rx, ry, rz = (r + grow for r in self.radii)
        if min(rx, ry, rz) <= 0:
            return None
        t = (z - self.centre[2]) / rz
        if abs(t) >= 1.0:
            return None
        f = math.sqrt(1.0 - t * t)
        return Ellipse(self.centre[0], self.centre[1], rx * f, ry * f, self.angle)


@dataclass(frozen=True)
class Capsule:
    """A tapered capsule: points within ``r0 + t (r1 - r0)`` of the segment ``p0 -> p1`` (t = projection)."""

    p0: tuple[float, float, float]
    p1: tuple[float, float, float]
    r0: float
    r1: float

    def bbox(self, z: float, grow: float = 0.0) -> tuple[float, float, float, float] | None:
        r = max(self.r0, self.r1) + grow
        if r <= 0:
            return None
        z0, z1 = sorted((self.p0[2], self.p1[2]))
        if z < z0 - r or z > z1 + r:
            return None
        # Restrict to the part of the segment within r of this z.
        dz = self.p1[2] - self.p0[2]
        if abs(dz) > _EPS:
            ta = (z - r - self.p0[2]) / dz
            tb = (z + r - self.p0[2]) / dz
            t0, t1 = max(min(ta, tb), 0.0), min(max(ta, tb), 1.0)
        else:
            t0, t1 = 0.0, 1.0
        xs = [self.p0[0] + t * (self.p1[0] - self.p0[0]) for t in (t0, t1)]
        ys = [self.p0[1] + t * (self.p1[1] - self.p0[1]) for t in (t0, t1)]
        return (min(xs) - r, max(xs) + r, min(ys) - r, max(ys) + r)

    def _dist(self, w: Window) -> tuple[np.ndarray, np.ndarray]:
        d = np.subtract(self.p1, self.p0)
        length2 = float(d @ d)
        wx = w.X - self.p0[0]
        wy = w.Y - self.p0[1]
        wz = w.z - self.p0[2]
        if length2 < _EPS:
            t = np.zeros(np.broadcast_shapes(wx.shape, wy.shape))
        else:
            t = np.clip((wx * d[0] + wy * d[1] + wz * d[2]) / length2, 0.0, 1.0)
        dist = np.sqrt((wx - t * d[0]) ** 2 + (wy - t * d[1]) ** 2 + (wz - t * d[2]) ** 2)
        return dist, t

    def mask(self, w: Window, grow: float = 0.0) -> np.ndarray:
        dist, t = self._dist(w)
        return dist <= self.r0 + t * (self.r1 - self.r0) + grow

    def distance(self, w: Window) -> tuple[np.ndarray, np.ndarray]:
        dist, t = self._dist(w)
        r = np.maximum(self.r0 + t * (self.r1 - self.r0), _EPS)
        return dist / r, 1.0 / r


@dataclass(frozen=True)
class Tube:
    """A chain of tapered capsules through 3-D points (vessels, nerves, bowel, tendons)."""

    points: tuple[tuple[float, float, float], ...]
    radii: tuple[float, ...]
    capsules: tuple[Capsule, ...] = field(init=False)

    def __post_init__(self) -> None:
        caps = tuple(Capsule(self.points[i], self.points[i + 1], self.radii[i], self.radii[i + 1])
                     for i in range(len(self.points) - 1))
        object.__setattr__(self, "capsules", caps)


@dataclass(frozen=True)
class RingSector:
    """A band outside an ellipse (centre, a, b): normalised radius 1..1+thickness/b, polar angle in a range.

    Used for the layered lateral abdominal wall. Angles are measured from +x towards +y in world coordinates.
    """

    cx: float
    cy: float
    a: float
    b: float
    thickness: float
    angle0: float
    angle1: float

    def bbox(self) -> tuple[float, float, float, float]:
        ga = self.a + self.thickness
        gb = self.b + self.thickness
        return (self.cx - ga, self.cx + ga, self.cy - gb, self.cy + gb)

    def distance(self, w: Window) -> tuple[np.ndarray, np.ndarray]:
        dx = w.X - self.cx
        dy = w.Y - self.cy
        rho = np.sqrt((dx / self.a) ** 2 + (dy / self.b) ** 2)
        scale = 0.5 * (self.a + self.b)
        half = 0.5 * self.thickness / scale
        radial = np.abs(rho - (1.0 + half)) / half
        phi = np.arctan2(dy, dx)
        mid = 0.5 * (self.angle0 + self.angle1)
        hw = 0.5 * abs(self.angle1 - self.angle0)
        dphi = np.abs((phi - mid + np.pi) % (2 * np.pi) - np.pi) / hw
        d = np.maximum(radial, dphi)
        g = np.full(d.shape, 2.0 / self.thickness)
        return d, g
