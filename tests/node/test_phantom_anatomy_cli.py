"""``sarcoscreen phantom --anatomy DIR``: the CT simulated from a real label map, end to end through the command.

The end-to-end test runs the real command in a subprocess (``python -m sarcoscreen.node.cli``) on the hip crop of
Pelvic-Ref-002 at 2 mm pixels and 5 mm slices (~10 s) and reads the series back with the project's loader; it
needs ``../shared/data``. The refusals (not an annotation folder, options of the other kind of phantom) need no
data and run the parser in-process.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest

from sarcoscreen.inference.catalogue import CATALOGUE, Side
from sarcoscreen.inference.phantom.realistic.source import read_annotation
from sarcoscreen.inference.series_loader import load_series
from sarcoscreen.node.cli import main

PROJECT = Path(__file__).resolve().parents[2]
ANNOTATION = PROJECT.parent / "shared" / "data" / "pelvic-annotation" / "Pelvic-Ref-002"
needs_data = pytest.mark.skipif(not (ANNOTATION / "label.mhd").is_file(),
                                reason="../shared/data/pelvic-annotation/Pelvic-Ref-002 (a real label map) is not "
                                       "present")


def _label(key: str, side: Side) -> int:
    return CATALOGUE.structure(key, side).label


@needs_data
def test_anatomy_command_writes_a_series_the_loader_reads_with_matching_labels(tmp_path: Path) -> None:
    out = tmp_path / "sim"
    argv = [sys.executable, "-m", "sarcoscreen.node.cli", "phantom", "--anatomy", str(ANNOTATION), "--out", str(out),
            "--crop", "hip", "--pixel-mm", "2", "--slice-mm", "5", "--thickness-mm", "5", "--metal-hip", "right",
            "--sex", "F", "--height-m", "1.62", "--seed", "3", "--noise-scale", "1.5", "--infiltration-scale", "0.5",
            "--no-progress"]
    run = subprocess.run(argv, cwd=PROJECT, capture_output=True, text=True, timeout=180, check=False)
    assert run.returncode == 0, run.stderr
    printed = run.stdout
    gt = json.loads((out / "ground_truth.json").read_text())
    n = gt["series"]["slices"]
    assert printed.startswith("SIMULATED CT of the label map Pelvic-Ref-002")
    assert f"{out / 'dicom'} ({n} slices, 256x256, 2.000 mm pixels, 5 mm slices)" in printed
    assert str(out / "labels.nii.gz") in printed
    assert str(out / "ground_truth.json") in printed
    assert "upper_gluteal" in printed
    assert "femoral_head_centre" in printed

    # The series as the node would read it: geometry of the protocol, the hip crop's range.
    volume = load_series(out / "dicom")
    assert volume.shape == (n, 256, 256)
    assert volume.spacing == pytest.approx((5.0, 2.0, 2.0))
    source = read_annotation(ANNOTATION)
    lesser_trochanter, crest = source.lesser_trochanter_z, source.landmark_z("iliac_crest")
    assert lesser_trochanter is not None
    assert crest is not None
    z = volume.slice_z_mm()
    # The crop is lesser trochanter - 50 mm to crest + 20 mm, taken on the annotation's 3 mm slices, then 5 mm steps.
    assert lesser_trochanter - 50.0 <= z[0] < lesser_trochanter - 50.0 + 3.0
    assert crest + 20.0 - 3.0 - 5.0 < z[-1] <= crest + 20.0
    assert np.allclose(np.diff(z), 5.0)
    header = pydicom.dcmread(sorted((out / "dicom").glob("*.dcm"))[0], stop_before_pixels=True)
    assert float(header.SliceThickness) == 5.0
    assert header.PatientSex == "F"
    assert float(header.PatientSize) == pytest.approx(1.62)
    assert "SIMULATED" in header.ImageComments

    # The labels lie on the series' grid (NIfTI axes column, row, slice; RAS) and hold catalogue values.
    image = nib.load(out / "labels.nii.gz")
    labels = np.asarray(image.dataobj).transpose(2, 1, 0)
    assert labels.shape == volume.shape
    to_nifti_axes = np.zeros((4, 4))
    to_nifti_axes[0, 2] = to_nifti_axes[1, 1] = to_nifti_axes[2, 0] = to_nifti_axes[3, 3] = 1.0
    assert np.allclose(image.affine, np.diag([-1.0, -1.0, 1.0, 1.0]) @ volume.affine @ to_nifti_axes, atol=1e-3)
    assert set(np.unique(labels).tolist()) - {0} <= {s.label for s in CATALOGUE}
    femur_r, femur_l = _label("femur", Side.RIGHT), _label("femur", Side.LEFT)
    gmax_r, gmax_l = _label("gluteus_maximus", Side.RIGHT), _label("gluteus_maximus", Side.LEFT)
    # The right hip is metal (label 0 where the head and stem are); the left femur is bone.
    assert (labels == femur_r).sum() < 0.9 * (labels == femur_l).sum()
    assert volume.hu.max() >= 3000
    assert np.median(volume.hu[labels == femur_l]) > 150
    for gmax in (gmax_r, gmax_l):
        assert -20 < np.median(volume.hu[labels == gmax]) < 70
    assert np.median(volume.hu[labels == 0][volume.hu[labels == 0] > -500]) < 0  # mostly fat outside the labels

    params = gt["parameters"]
    assert gt["synthetic"] is True
    assert params["crop"] == "hip"
    assert params["metal_hip"] == "right"
    assert params["seed"] == 3
    assert params["protocol"] == {"pixel_mm": 2.0, "slice_mm": 5.0, "thickness_mm": 5.0, "noise_scale": 1.5,
                                  "contrast": False}
    assert params["infiltration_scale"] == 0.5
    assert params["randomise"] is False
    assert params["sex"] == "F"
    assert params["height_m"] == 1.62


def test_a_folder_that_is_not_an_annotation_folder_is_refused(tmp_path: Path) -> None:
    folder = tmp_path / "not-an-annotation"
    folder.mkdir()
    (folder / "label.mhd").write_text("not a MetaImage header\n")
    out = tmp_path / "out"
    run = subprocess.run([sys.executable, "-m", "sarcoscreen.node.cli", "phantom", "--anatomy", str(folder),
                          "--out", str(out)], cwd=PROJECT, capture_output=True, text=True, timeout=120, check=False)
    assert run.returncode == 2
    assert run.stderr.startswith("sarcoscreen: phantom --anatomy: ")
    assert "is not an annotation folder: it has no mask.mhd" in run.stderr
    assert "Traceback" not in run.stderr
    assert not out.exists()


@pytest.mark.parametrize(("make", "expected"), [
    ("missing", "is not a folder"),
    ("empty", "it has no label.mhd and no mask.mhd"),
    ("broken", "not an annotation folder with label.mhd and mask.mhd"),
])
def test_unusable_annotation_folders_are_one_message_with_exit_status_2(
        make: str, expected: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = tmp_path / "anatomy"
    if make != "missing":
        folder.mkdir()
    if make == "broken":  # both files present, neither readable
        (folder / "label.mhd").write_text("ObjectType = Image\nNDims = 3\n")
        (folder / "mask.mhd").write_text("garbage\n")
    assert main(["phantom", "--anatomy", str(folder), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("sarcoscreen: phantom --anatomy: ")
    assert expected in err
    assert "Traceback" not in err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(("argv", "expected"), [
    (["phantom", "--anatomy", "A", "--out", "X", "--matrix", "256", "--fov", "legs"],
     "phantom --anatomy: --fov, --matrix do not apply to a simulated real anatomy"),
    (["phantom", "--anatomy", "A", "--out", "X", "--no-table"],
     "phantom --anatomy: --no-table does not apply to a simulated real anatomy"),
    (["phantom", "--out", "X", "--crop", "hip"], "phantom: --crop only applies with --anatomy DIR"),
    (["phantom", "--out", "X", "--pixel-mm", "2", "--randomise"],
     "phantom: --pixel-mm, --randomise only apply with --anatomy DIR"),
    (["phantom", "--anatomy", "A"], "phantom --anatomy: --out DIR is required"),
])
def test_options_of_the_other_kind_of_phantom_are_refused_by_name(
        argv: list[str], expected: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "A").mkdir()
    argv = [str(tmp_path / a) if a in ("A", "X") else a for a in argv]
    assert main(argv) == 2
    assert capsys.readouterr().err == f"sarcoscreen: {expected}\n"
    assert not (tmp_path / "X").exists()


@needs_data
@pytest.mark.parametrize(("option", "value", "expected"), [
    ("--pixel-mm", "0.1", "pixel size 0.1 is outside the allowed range"),
    ("--height-m", "175", "height 175.0 m is outside 1.3..2.1 m"),
    ("--infiltration-scale", "9", "infiltration scale 9.0 is outside 0..3"),
])
def test_bad_simulation_parameters_are_refused_before_anything_is_written(
        option: str, value: str, expected: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out"
    assert main(["phantom", "--anatomy", str(ANNOTATION), "--out", str(out), option, value]) == 2
    err = capsys.readouterr().err
    assert err.startswith("sarcoscreen: phantom --anatomy: ")
    assert expected in err
    assert not out.exists()
