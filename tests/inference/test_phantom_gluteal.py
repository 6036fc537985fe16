"""The phantom's gluteal anatomy against the real manual labels it has to agree with (``docs/phantom.md``, "Gluteal
anatomy against real labels"): how far gluteus maximus reaches down, where the glutei begin below the iliac crest,
and where they lie around the hip (the level bands and sectors of the threshold engine's gluteal region)."""

from __future__ import annotations

from pathlib import Path

import pytest

from sarcoscreen.inference.catalogue import Side
from sarcoscreen.inference.phantom import PhantomParameters, make_phantom
from sarcoscreen.inference.phantom.gluteal_profile import BANDS, GlutealProfile, load_annotation, load_phantom, profile


def _profiles(folder: Path) -> list[GlutealProfile]:
    anatomy = load_phantom(folder)
    return [profile(anatomy, side) for side in (Side.RIGHT, Side.LEFT)]


@pytest.fixture(scope="module")
def phantoms(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[GlutealProfile]]:
    """The default woman and a taller man, at a small matrix with the real labels' 3 mm slices."""
    out = tmp_path_factory.mktemp("gluteal")
    found = {}
    for name, params in (("woman", PhantomParameters(matrix=128, slice_mm=3.0)),
                         ("man", PhantomParameters(matrix=128, slice_mm=3.0, sex="M", height_m=1.75))):
        make_phantom(params, out / name)
        found[name] = _profiles(out / name)
    return found


def test_gluteus_maximus_reaches_about_80_mm_below_the_ischial_tuberosity(
        phantoms: dict[str, list[GlutealProfile]]) -> None:
    for p in phantoms["woman"]:
        assert 160.0 <= p.maximus_bottom_below_head_top_mm <= 175.0
        assert 70.0 <= p.maximus_bottom_below_ischium_mm <= 90.0
    for p in phantoms["man"]:  # scaled with height (1.75 / 1.58)
        assert 175.0 <= p.maximus_bottom_below_head_top_mm <= 195.0
        assert 80.0 <= p.maximus_bottom_below_ischium_mm <= 100.0


def test_the_glutei_begin_below_the_top_of_the_iliac_crest(phantoms: dict[str, list[GlutealProfile]]) -> None:
    for profiles in phantoms.values():
        for p in profiles:
            assert p.gluteal_near_crest_cm3 < 2.5
            assert 9.0 <= p.medius_top_below_crest_mm <= 22.0
            assert 20.0 <= p.maximus_top_below_crest_mm <= 35.0


def test_the_glutei_lie_in_the_engines_sectors(phantoms: dict[str, list[GlutealProfile]]) -> None:
    for profiles in phantoms.values():
        for p in profiles:
            for band in p.bands[1:]:
                assert band.volume_cm3 > 0.0, band.band.name
                assert (band.in_sector or 0.0) >= 0.9, band.band.name
            # Above the acetabular roof gluteus medius reaches round the outer wing from the side of the hip (0 deg)
            # to behind it (real labels: about -60..-20 to 100..107 deg).
            assert p.medius_above_roof_deg is not None
            front, back = p.medius_above_roof_deg
            assert -30.0 < front < 10.0
            assert back > 60.0
            # Below the ischial tuberosity gluteus maximus is still a muscle, not a sliver.
            assert p.bands[-1].volume_cm3 > 30.0


def test_the_phantom_lies_within_the_real_anatomies(shared_data: Path,
                                                    phantoms: dict[str, list[GlutealProfile]]) -> None:
    labels = sorted((shared_data / "pelvic-annotation").glob("Pelvic-Ref-*/label.mhd"))
    if not labels:
        pytest.skip(f"no pelvic annotation under {shared_data}")
    real = [profile(load_annotation(path), side) for path in labels for side in (Side.RIGHT, Side.LEFT)]
    low = min(p.maximus_bottom_below_ischium_mm for p in real)
    high = max(p.maximus_bottom_below_ischium_mm for p in real)
    near_crest = max(p.gluteal_near_crest_cm3 for p in real)
    for p in phantoms["woman"]:
        assert low - 5.0 <= p.maximus_bottom_below_ischium_mm <= high + 5.0
        assert p.gluteal_near_crest_cm3 <= near_crest
        for n, band in enumerate(p.bands[1:], start=1):
            worst = min(r.bands[n].in_sector or 0.0 for r in real)
            assert (band.in_sector or 0.0) >= worst - 0.02, BANDS[n].name
