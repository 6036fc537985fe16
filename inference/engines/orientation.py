"""A canonical view of an axial CT volume for anatomical reasoning.

Engines reason about "superior", "posterior" and "patient left". `AxialFrame` holds the axis flips that present a
`Volume`'s array as ``[k, i, j]`` with ``k`` from head to feet, ``i`` from anterior to posterior and ``j`` from
patient right to patient left (the radiological display convention), as numpy views without copying. The same
flips map a label map made in the canonical view back onto the volume's own array.

In DICOM patient coordinates (LPS, PS3.3 C.7.6.2.1.1) +x points to the patient's left, +y posterior, +z
superior.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from sarcoscreen.inference.engines.base import EngineError
from sarcoscreen.inference.volume import Volume

__all__ = ["AxialFrame", "axial_frame"]

_AXIAL_TOLERANCE = 0.95  # |cos| between an image axis and a patient axis to call the series axial


@dataclass(frozen=True)
class AxialFrame:
    """Flips (in array-axis order k, i, j) to the canonical head->feet, anterior->posterior, right->left view."""

    flips: tuple[bool, bool, bool]
    spacing: tuple[float, float, float]

    def view(self, array: np.ndarray) -> np.ndarray:
        """`array` (shaped like the volume) in canonical orientation; a view, no copy."""
        steps = tuple(slice(None, None, -1) if flip else slice(None) for flip in self.flips)
        return array[steps]

    def slice_index(self, canonical_k: int, n_slices: int) -> int:
        """The volume's own slice index of canonical slice `canonical_k`."""
        return n_slices - 1 - canonical_k if self.flips[0] else canonical_k


def axial_frame(volume: Volume) -> AxialFrame:
    """The canonical frame of an axial volume; `EngineError` when the images are not (nearly) axial."""
    row = np.asarray(volume.row_direction, dtype=float)
    col = np.asarray(volume.column_direction, dtype=float)
    if abs(row[0]) < _AXIAL_TOLERANCE or abs(col[1]) < _AXIAL_TOLERANCE:
        raise EngineError(
            f"the series is not axial (row direction {np.round(row, 3).tolist()}, column direction "
            f"{np.round(col, 3).tolist()}); the engine needs axial slices"
        )
    normal = volume.normal
    # k must run head -> feet, i.e. decreasing z; the array's k runs along +normal.
    flip_k = bool(normal[2] > 0)
    flip_i = bool(col[1] < 0)  # i must run anterior -> posterior (+y)
    flip_j = bool(row[0] < 0)  # j must run right -> left (+x)
    return AxialFrame((flip_k, flip_i, flip_j), volume.spacing)
