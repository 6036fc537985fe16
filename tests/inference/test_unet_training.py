"""Training the Bayesian U-Net on phantoms made here, then using the bundle like a site would (slow).

Trains once per session (module-scoped fixture) a *small configuration* (see ``TRAIN``) through the real
``sarcoscreen train`` command on synthetic phantoms in all three data formats (phantom folders = DICOM series +
NIfTI labels, NIfTI image/label pairs, DICOM series + DICOM-SEG), then checks on phantoms it did not see:

* Dice >= 0.8 averaged over the large muscles (`LARGE_MUSCLES`, both sides) through ``sarcoscreen evaluate``;
* that the structure-wise uncertainty (predictive entropy) rises on a corrupted input (heavy noise);
* that the engine runs through measurement, DICOM-SEG and TID 1500 SR like the threshold engine;
* bundle round trip (archive) with identical seeded predictions; resume from a checkpoint.

The phantom-trained bundle is for testing only; the test checks that the engine says so.
"""

from __future__ import annotations

import json
import logging
import random
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import nibabel as nib  # noqa: E402

from sarcoscreen.inference.catalogue import CATALOGUE, Group  # noqa: E402
from sarcoscreen.inference.engines import create_engine  # noqa: E402
from sarcoscreen.inference.engines.unet.bundle import load_bundle, save_bundle  # noqa: E402
from sarcoscreen.inference.engines.unet.manifest import SYNTHETIC_WARNING  # noqa: E402
from sarcoscreen.inference.phantom import PhantomParameters, make_phantom  # noqa: E402
from sarcoscreen.inference.series_loader import load_series  # noqa: E402
from sarcoscreen.node.cli import main  # noqa: E402

pytestmark = pytest.mark.slow

LARGE_MUSCLES = ("gluteus_maximus", "gluteus_medius", "adductors", "vastus_lateralis_intermedius",
                 "vastus_medialis", "biceps_femoris", "semimembranosus", "rectus_femoris", "soleus", "gastrocnemius")
"""The 'large muscles' of the Dice criterion (both sides each)."""
LARGE_KEYS = tuple(f"{m}_{side}" for m in LARGE_MUSCLES for side in ("right", "left"))

MATRIX, SLICE_MM = 96, 8.0
TRAINING_PHANTOMS = 8
"""Phantom cases for training (2 of them held out for validation by the train command)."""
TRAIN = ["--levels", "4", "--filters", "16", "--dropout", "0.1", "--input-size", "96", "--pixel-spacing", "4.5",
         "--crop-size", "48", "--batch-size", "12", "--iterations", "150", "--epochs", "12", "--learning-rate",
         "0.003", "--mc-samples", "8", "--validation-samples", "1", "--validation-fraction", "0.25", "--threads", "2"]
"""The small configuration trained here (the default is 5 levels, 32 filters, dropout 0.5, 256 px)."""
MC = 8


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    """`main()` points sarcoscreen's log handler at the (captured) stderr of the moment; undo that after each test
    so later tests never log to a closed capture."""
    logger = logging.getLogger("sarcoscreen")
    handlers, propagate, level = list(logger.handlers), logger.propagate, logger.level
    yield
    logger.handlers[:] = handlers
    logger.propagate, logger.level = propagate, level


def _params(seed: int, **changes: object) -> PhantomParameters:
    """A phantom varied in sex, height, muscle scale, fat, noise, fatty infiltration, age and position."""
    r = random.Random(seed)
    sex = r.choice("FM")
    values: dict[str, object] = {
        "matrix": MATRIX, "slice_mm": SLICE_MM, "sex": sex, "seed": seed,
        "height_m": r.uniform(1.48, 1.68) if sex == "F" else r.uniform(1.62, 1.85),
        "muscle_scale": r.uniform(0.75, 1.2), "fat_mm": r.uniform(6.0, 30.0), "noise_hu": r.uniform(5.0, 25.0),
        "fatty_infiltration": r.uniform(0.0, 0.4), "age_years": r.randint(60, 88),
        "offset_mm": (r.uniform(-20.0, 20.0), r.uniform(-20.0, 20.0)),
    }
    values.update(changes)
    return PhantomParameters(**values)  # type: ignore[arg-type]


def _as_nifti_pair(case: Path) -> None:
    """Replace the case's DICOM series by a NIfTI image on the label map's grid."""
    volume = load_series(case / "dicom")
    labels = nib.load(case / "labels.nii.gz")
    nib.save(nib.Nifti1Image(np.asarray(volume.hu).transpose(2, 1, 0).astype(np.int16), labels.affine),
             case / "image.nii.gz")
    shutil.rmtree(case / "dicom")


def _as_dicom_seg(case: Path, work: Path) -> None:
    """Replace the case's NIfTI labels by a DICOM-SEG written by sarcoscreen from them."""
    from sarcoscreen.node.analysis import analyze_series
    from sarcoscreen.node.config import load_settings

    result = analyze_series(case / "dicom", work / "analysis", load_settings(None), labels=case / "labels.nii.gz",
                            dicom_out=work / "dicom-out", height_m=1.6)
    assert result.dicom is not None
    assert result.dicom.seg is not None
    shutil.copy(result.dicom.seg, case / "seg.dcm")
    (case / "labels.nii.gz").unlink()


@pytest.fixture(scope="module")
def phantoms(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("unet-phantoms")
    train_dir, test_dir = root / "train", root / "test"
    for i in range(TRAINING_PHANTOMS):
        make_phantom(_params(100 + i), train_dir / f"case{i:02d}")
    _as_nifti_pair(train_dir / "case00")
    _as_dicom_seg(train_dir / "case01", root / "seg-work")
    for i in range(3):
        make_phantom(_params(900 + i), test_dir / f"unseen{i}")
    clean = _params(950, noise_hu=10.0, fatty_infiltration=0.1, sex="F", height_m=1.6, muscle_scale=1.0)
    make_phantom(clean, root / "clean")
    make_phantom(_params(950, noise_hu=80.0, fatty_infiltration=0.1, sex="F", height_m=1.6, muscle_scale=1.0),
                 root / "noisy")
    return {"train": train_dir, "test": test_dir, "root": root}


@pytest.fixture(scope="module")
def trained(phantoms: dict[str, Path]) -> dict[str, object]:
    bundle = phantoms["root"] / "phantom-unet.zip"
    start = time.perf_counter()
    code = main(["train", "--data", str(phantoms["train"]), "--out", str(bundle), "--no-progress", *TRAIN])
    seconds = time.perf_counter() - start
    assert code == 0
    print(f"\ntraining took {seconds:.0f} s")
    return {"bundle": bundle, "seconds": seconds}


def test_the_bundle_records_the_training(trained: dict[str, object], phantoms: dict[str, Path]) -> None:
    _, manifest = load_bundle(trained["bundle"])
    assert manifest.training_data.synthetic  # the phantoms' ground_truth.json says so
    assert manifest.training_data.cases == 6
    assert manifest.training_data.validation_cases == 2
    assert {CATALOGUE.by_key(e.key).label for e in manifest.labels[1:]} >= {
        CATALOGUE.by_key(k).label for k in LARGE_KEYS}
    assert manifest.architecture["levels"] == 4
    assert manifest.mc_samples == MC
    assert manifest.uncertainty_threshold is not None
    assert manifest.uncertainty_threshold > 0
    history = manifest.training["validation"]["dice_mc"]
    assert set(history) >= set(LARGE_KEYS)
    work = Path(str(trained["bundle"]) + ".work")
    assert (work / "checkpoint.pt").is_file()
    assert (work / "history.json").is_file()
    epochs = json.loads((work / "history.json").read_text())
    assert len(epochs) == 12
    assert all("validation_dice" in e for e in epochs)


def test_dice_on_unseen_phantoms(trained: dict[str, object], phantoms: dict[str, Path], tmp_path: Path,
                                 capsys: pytest.CaptureFixture[str]) -> None:
    scores = tmp_path / "scores.json"
    code = main(["evaluate", "--bundle", str(trained["bundle"]), "--data", str(phantoms["test"]),
                 "--mc-samples", str(MC), "--device", "cpu", "--json", str(scores)])
    out = capsys.readouterr().out
    with capsys.disabled():
        print("\n" + out)
    assert code == 0
    assert SYNTHETIC_WARNING in out
    result = json.loads(scores.read_text())
    by_key = {s["key"]: s for s in result["structures"]}
    assert set(LARGE_KEYS) <= set(by_key)
    large = [by_key[k]["dice_mean"] for k in LARGE_KEYS]
    with capsys.disabled():
        print(f"mean Dice over the large muscles: {np.mean(large):.3f} "
              f"(min {min(large):.3f}); over all structures {result['mean_dice']:.3f}")
    assert np.mean(large) >= 0.8


def _uncertainty(bundle: Path, series: Path, measure: str) -> tuple[dict[str, float], float]:
    """Structure-wise uncertainty, and the mean voxel uncertainty inside all predicted muscle."""
    engine = create_engine("bayesian-unet", bundle_path=bundle, device="cpu", mc_samples=MC, seed=0,
                           uncertainty=measure)
    segmentation = engine.segment(load_series(series))
    muscle = np.isin(segmentation.labels, [s.label for s in CATALOGUE.muscles()])
    voxel = float(segmentation.voxel_uncertainty[muscle].astype(np.float64).mean())
    return dict(segmentation.structure_uncertainty), voxel


def test_uncertainty_rises_on_heavy_noise(trained: dict[str, object], phantoms: dict[str, Path],
                                          capsys: pytest.CaptureFixture[str]) -> None:
    root = phantoms["root"]
    means = {}
    for measure in ("entropy", "variance"):
        clean, clean_voxel = _uncertainty(trained["bundle"], root / "clean" / "dicom", measure)
        noisy, noisy_voxel = _uncertainty(trained["bundle"], root / "noisy" / "dicom", measure)
        common = sorted(set(clean) & set(noisy))  # structures predicted in both
        means[measure] = (float(np.mean([clean[k] for k in common])), float(np.mean([noisy[k] for k in common])))
        with capsys.disabled():
            print(f"\nmean structure-wise predictive {measure} over {len(common)} structures: clean "
                  f"{means[measure][0]:.4f}, noise 80 HU {means[measure][1]:.4f}; mean voxel {measure} in muscle: "
                  f"clean {clean_voxel:.4f}, noise 80 HU {noisy_voxel:.4f}")
    # Asserted for the predictive entropy. With this small configuration's dropout of 0.1 the predictive
    # variance barely moves (printed above; see docs/unet-engine.md).
    assert means["entropy"][1] > means["entropy"][0] * 1.05


def test_engine_runs_through_measurement_seg_and_sr(trained: dict[str, object], phantoms: dict[str, Path],
                                                    tmp_path: Path) -> None:
    from sarcoscreen.node.analysis import analyze_series
    from sarcoscreen.node.config import load_settings
    from sarcoscreen.reports.dicom_reader import read_seg, read_sr

    config = tmp_path / "sarcoscreen.toml"
    config.write_text(f'[engine]\nname = "bayesian-unet"\nbundle_path = "{trained["bundle"]}"\ndevice = "cpu"\n'
                      f"mc_samples = {MC}\n")
    case = phantoms["test"] / "unseen0"
    result = analyze_series(case / "dicom", tmp_path / "out", load_settings(config), dicom_out=tmp_path / "dicom")
    report = result.report
    assert report.engine_name == "bayesian-unet"
    assert any(SYNTHETIC_WARNING in note for note in result.segmentation.notes)
    measured = {m.key: m for m in report.structures}
    for key in LARGE_KEYS:
        assert measured[key].voxels > 0
        assert measured[key].uncertainty is not None
        assert measured[key].qa_flag is not None
    truth = json.loads((case / "ground_truth.json").read_text())
    both = report.group(Group.ALL, "both")
    if both.smm_g is not None:  # complete when every member was predicted inside the scan
        reference = truth["groups"]["all"]["both"]["mass_g"]["constant_1.04"]
        assert both.smm_g == pytest.approx(reference, rel=0.25)
    assert result.dicom is not None
    assert result.dicom.seg is not None
    assert result.dicom.sr is not None
    seg = read_seg(result.dicom.seg)
    assert {s.tracking_id for s in seg.segments} >= set(LARGE_KEYS)
    sr = read_sr(result.dicom.sr)
    groups = {g.tracking_identifier: g for g in sr.groups}
    for key in LARGE_KEYS:
        uncertainty = groups[measured[key].name].measurement("SARCO-1006")  # predictive variance (default)
        assert uncertainty is not None
        assert uncertainty.value == pytest.approx(measured[key].uncertainty, rel=1e-6)


def test_round_trip_of_the_trained_bundle(trained: dict[str, object], phantoms: dict[str, Path],
                                          tmp_path: Path) -> None:
    model, manifest = load_bundle(trained["bundle"])
    copy = tmp_path / "copy.tar.gz"
    save_bundle(model, manifest, copy)
    volume = load_series(phantoms["test"] / "unseen1" / "dicom")
    a = create_engine("bayesian-unet", bundle_path=trained["bundle"], device="cpu", mc_samples=4, seed=5)
    b = create_engine("bayesian-unet", bundle_path=copy, device="cpu", mc_samples=4, seed=5)
    first, second = a.segment(volume), b.segment(volume)
    assert np.array_equal(first.labels, second.labels)
    assert np.array_equal(first.voxel_uncertainty, second.voxel_uncertainty)
    assert first.engine_version == second.engine_version


def test_resume_continues_from_the_checkpoint(phantoms: dict[str, Path], tmp_path: Path) -> None:
    data = tmp_path / "data"
    for name in ("case02", "case03", "case04"):
        shutil.copytree(phantoms["train"] / name, data / name)
    tiny = ["--levels", "2", "--filters", "4", "--input-size", "32", "--pixel-spacing", "16", "--iterations", "2",
            "--batch-size", "4", "--validation-fraction", "0.34", "--no-progress"]
    out = tmp_path / "tiny"
    assert main(["train", "--data", str(data), "--out", str(out), "--epochs", "1", *tiny]) == 0
    assert main(["train", "--data", str(data), "--out", str(out), "--epochs", "2", "--resume", *tiny]) == 0
    history = json.loads((tmp_path / "tiny.work" / "history.json").read_text())
    assert [h["epoch"] for h in history] == [1, 2]
    changed = [*tiny, "--filters", "8"]
    assert main(["train", "--data", str(data), "--out", str(out), "--epochs", "3", "--resume", *changed]) == 1
