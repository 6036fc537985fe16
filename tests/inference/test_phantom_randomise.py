"""Domain randomisation of the CT simulated from a real label map (`SimulationParameters(randomise=True)`):
it changes intensities, never labels, and the same seed gives the same series. Needs ../shared/data."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from sarcoscreen.inference.catalogue import CATALOGUE
from sarcoscreen.inference.phantom.realistic import Protocol, SimulationParameters
from sarcoscreen.inference.phantom.realistic.randomise import draw_randomisation
from sarcoscreen.inference.phantom.realistic.simulate import SimulatedSeries, simulate_series
from sarcoscreen.inference.phantom.realistic.source import AnnotationSource, read_annotation

ANNOTATION = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "pelvic-annotation" / "Pelvic-Ref-002"
pytestmark = pytest.mark.skipif(not (ANNOTATION / "label.mhd").is_file(),
                                reason="../shared/data/pelvic-annotation/Pelvic-Ref-002 (a real label map) is not "
                                       "present")

BASE = SimulationParameters(protocol=Protocol(pixel_mm=2.0), seed=11, source_slices=(62, 70))
"""8 annotation slices through the femoral heads at 2 mm pixels: muscle, fat, bone and pelvic organs, cheaply."""


@pytest.fixture(scope="module")
def source() -> AnnotationSource:
    return read_annotation(ANNOTATION)


@pytest.fixture(scope="module")
def series(source: AnnotationSource) -> dict[str, SimulatedSeries]:
    runs = {"calibrated": BASE, "randomised": replace(BASE, randomise=True),
            "randomised again": replace(BASE, randomise=True), "other seed": replace(BASE, randomise=True, seed=12)}
    return {name: simulate_series(source, params) for name, params in runs.items()}


MUSCLE_LABELS = [s.label for s in CATALOGUE.muscles()]


def _muscle_median(s: SimulatedSeries) -> float:
    return float(np.median(s.hu[np.isin(s.labels, MUSCLE_LABELS)]))


def test_randomisation_leaves_the_labels_and_the_grid_alone(series: dict[str, SimulatedSeries]) -> None:
    calibrated = series["calibrated"]
    for name in ("randomised", "randomised again", "other seed"):
        assert np.array_equal(series[name].labels, calibrated.labels), name
        assert series[name].hu.shape == calibrated.hu.shape
        for axis in ("x_mm", "y_mm", "z_mm"):
            assert np.array_equal(getattr(series[name], axis), getattr(calibrated, axis))


def test_randomisation_changes_the_intensities(series: dict[str, SimulatedSeries]) -> None:
    calibrated, randomised = series["calibrated"], series["randomised"]
    body = calibrated.hu > -500
    diff = np.abs(randomised.hu - calibrated.hu)[body]
    assert float(np.median(diff)) > 2.0
    # Tissue contrast moves, not only the noise: seed 11 draws lean muscle -7 HU, fat +14 HU, gamma 0.88 and new
    # per-muscle fat fractions; the muscle median (noise averages out over ~10^5 voxels) moves by several HU.
    assert abs(_muscle_median(randomised) - _muscle_median(calibrated)) > 3.0
    # Another seed is another draw.
    assert float(np.median(np.abs(series["other seed"].hu - randomised.hu)[body])) > 2.0
    assert draw_randomisation(12) != draw_randomisation(BASE.seed)


def test_randomisation_is_reproducible_from_the_seed(series: dict[str, SimulatedSeries]) -> None:
    assert np.array_equal(series["randomised"].hu, series["randomised again"].hu)
    assert draw_randomisation(BASE.seed) == draw_randomisation(BASE.seed)


def test_the_recorded_parameters_say_how_to_redo_it() -> None:
    params = replace(BASE, randomise=True).to_dict()
    assert params["randomise"] is True
    assert params["seed"] == BASE.seed
    assert SimulationParameters(**{**params, "protocol": Protocol(**params["protocol"]),
                                   "source_slices": tuple(params["source_slices"])}) == replace(BASE, randomise=True)
