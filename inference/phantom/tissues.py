"""Tissue classes of the phantom and their CT numbers (Hounsfield units) before blur and noise.

Reference values: fat -100 HU, skeletal muscle 40-60 HU (lower with age and fatty infiltration: Goodpaster et al.,
J Appl Physiol 2000; Aubrey et al., Acta Physiol 2014), urine ~0-10 HU, blood 35-45 HU unenhanced, cortical bone
700-1900 HU, fatty (yellow) marrow -50..+50 HU and trabecular (cancellous) bone 150-400 HU.
"""

from __future__ import annotations

from enum import IntEnum

import numpy as np

__all__ = ["Tissue", "hu_table"]


class Tissue(IntEnum):
    AIR = 0
    SKIN = 1
    FAT = 2
    MUSCLE = 3
    INTRAMUSCULAR_FAT = 4
    CORTEX = 5
    MARROW_FATTY = 6
    MARROW_TRABECULAR = 7
    URINE = 8
    BOWEL_WALL = 9
    BOWEL_CONTENT = 10
    FECES = 11
    GAS = 12
    ARTERY = 13
    VEIN = 14
    TENDON = 15
    NERVE = 16
    SOFT_ORGAN = 17
    """Uterus, prostate, testes, vaginal and anal walls."""
    CARTILAGE = 18
    """Joint spaces, intervertebral discs, pubic symphysis."""
    CSF = 19
    TABLE_SHELL = 20
    TABLE_FOAM = 21
    METAL = 22
    MARROW_DENSE = 23
    """Cortex-like dense trabecular bone of the sacrum / vertebral end plates (not used as cortex)."""
    PERIPROSTHETIC = 24
    """Pseudocapsule and joint fluid where a hip prosthesis replaced the femoral head and neck."""


def hu_table(*, fatty_infiltration: float = 0.0, contrast: bool = False, age_years: int = 72) -> np.ndarray:
    """CT number of every `Tissue` (indexable by the tissue code), float32."""
    table = np.zeros(max(Tissue) + 1, dtype=np.float32)
    # Muscle attenuation falls with age (~ -0.15 HU/year after 40) and with myosteatosis.
    muscle = 54.0 - 0.15 * max(age_years - 40, 0) - 28.0 * fatty_infiltration
    values = {
        Tissue.AIR: -1000.0,
        Tissue.SKIN: 35.0,
        Tissue.FAT: -100.0,
        Tissue.MUSCLE: muscle + (8.0 if contrast else 0.0),
        Tissue.INTRAMUSCULAR_FAT: -85.0,
        Tissue.CORTEX: 1250.0,
        Tissue.MARROW_FATTY: 10.0,
        Tissue.MARROW_TRABECULAR: 230.0,
        Tissue.URINE: 8.0,
        Tissue.BOWEL_WALL: 45.0 + (40.0 if contrast else 0.0),
        Tissue.BOWEL_CONTENT: 22.0,
        Tissue.FECES: 5.0,
        Tissue.GAS: -950.0,
        Tissue.ARTERY: 250.0 if contrast else 42.0,
        Tissue.VEIN: 180.0 if contrast else 38.0,
        Tissue.TENDON: 85.0,
        Tissue.NERVE: 25.0,
        Tissue.SOFT_ORGAN: 42.0 + (50.0 if contrast else 0.0),
        Tissue.CARTILAGE: 70.0,
        Tissue.CSF: 8.0,
        Tissue.TABLE_SHELL: 250.0,
        Tissue.TABLE_FOAM: -850.0,
        Tissue.METAL: 3071.0,
        Tissue.MARROW_DENSE: 450.0,
        Tissue.PERIPROSTHETIC: 30.0,
    }
    for tissue, value in values.items():
        table[tissue] = value
    return table
