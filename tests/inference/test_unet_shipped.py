"""The model bundle shipped inside the package, and the honest labelling of every result it makes (issue 12).

* The default bundle: `shipped_bundle_path` finds a bundle in a folder it is given (the success path with a bundle
  built here, passed explicitly) and refuses a folder without one with a clear message; with the package's lookup
  pointed at an empty folder, the engine, the configuration and ``sarcoscreen bundle`` say that no bundle is
  shipped.
* The labelling line (`bundle_info.labelling_line`): what it says for the manifest's subjects, provenance,
  licences and intended use, and that it reaches the engine's notes, ``measurements.json``, the SR, the key image
  and the node's database (an ``engine.notes`` event), and that ``sarcoscreen results`` names the engine.
* The real shipped bundle (skipped while ``inference/engines/unet/shipped/`` holds no bundle; the maintainer
  removes nothing - the skips lift themselves when the bundle lands): it loads, states its training data and
  intended use, stays within the wheel's size budget, and labels its results.

Bundles made here are untrained and small (`unet_bundles.make_bundle`) and live in temporary folders.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pydicom
import pytest

torch = pytest.importorskip("torch")

from node_support import decide_series, jobs_of, rows, spool_series  # noqa: E402
from sqlalchemy import select  # noqa: E402
from unet_bundles import INTENDED_USE, PUBLIC_TRAINING_DATA, make_bundle  # noqa: E402

from sarcoscreen.db.models import Event, JobStatus  # noqa: E402
from sarcoscreen.db.queries import results  # noqa: E402
from sarcoscreen.db.session import create_engine_from_url, session_scope  # noqa: E402
from sarcoscreen.inference.engines import EngineError, create_engine  # noqa: E402
from sarcoscreen.inference.engines.unet import describe_bundle  # noqa: E402
from sarcoscreen.inference.engines.unet import shipped_bundle as shipped  # noqa: E402
from sarcoscreen.inference.engines.unet.bundle_info import describe_manifest, labelling_line  # noqa: E402
from sarcoscreen.inference.engines.unet.manifest import SYNTHETIC_WARNING, TrainingData  # noqa: E402
from sarcoscreen.inference.phantom import PhantomParameters, make_phantom  # noqa: E402
from sarcoscreen.inference.series_loader import load_series  # noqa: E402
from sarcoscreen.node.config import ConfigError, Settings, load_settings  # noqa: E402
from sarcoscreen.node.reconcile import reconcile  # noqa: E402
from sarcoscreen.node.results_view import format_results  # noqa: E402
from sarcoscreen.node.worker import Worker  # noqa: E402

LABEL = ("model test-public 0.1: trained on data from 3 subjects (Pelvic Reference Data annotations; Pelvic "
         "Reference Data CT, DOI 10.7937/TCIA.2019.woskq5oo); intended use: research; not a medical device")

NO_BUNDLE_YET = pytest.mark.skipif(
    not shipped.has_shipped_bundle(),
    reason=f"no model bundle is shipped yet ({shipped.shipped_folder()} holds no manifest.json): these tests check "
           "the real bundle once it is committed there")


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A bundle folder laid out as the shipped one (manifest.json + model.safetensors), in a temporary folder."""
    folder = tmp_path_factory.mktemp("shipped")
    make_bundle(folder)
    return folder


@pytest.fixture(scope="module")
def phantom(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("phantom")
    make_phantom(PhantomParameters(matrix=64, slice_mm=10.0, fov="abdomen", seed=5), out)
    return out / "dicom"


@pytest.fixture
def nothing_shipped(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The package's lookup pointed at an empty folder: an installation that ships no bundle."""
    empty = tmp_path / "shipped"
    empty.mkdir()
    (empty / "README.txt").write_text("no bundle here\n")
    monkeypatch.setattr(shipped, "shipped_folder", lambda: empty)
    return empty


# --- the default bundle ---------------------------------------------------------------------------------------


def test_the_shipped_folder_is_the_package_data_folder() -> None:
    folder = shipped.shipped_folder()
    assert folder.parts[-2:] == ("unet", "shipped")
    assert (folder / "README.txt").is_file()  # says what belongs there
    assert folder.parent == Path(shipped.__file__).parent


def test_a_folder_with_a_bundle_is_the_shipped_bundle_and_the_engine_loads_it(bundle: Path) -> None:
    assert shipped.has_shipped_bundle(bundle)
    assert shipped.shipped_bundle_path(bundle) == bundle
    engine = create_engine("bayesian-unet", bundle_path=shipped.shipped_bundle_path(bundle), device="cpu")
    assert engine.manifest.training_data == PUBLIC_TRAINING_DATA
    assert engine.mc_samples == 2  # T from the manifest


def test_an_empty_folder_is_refused_with_the_reason(tmp_path: Path) -> None:
    assert not shipped.has_shipped_bundle(tmp_path)
    with pytest.raises(shipped.NoShippedBundleError) as caught:
        shipped.shipped_bundle_path(tmp_path)
    message = str(caught.value)
    assert f"no model bundle is shipped with this installation of sarcoscreen ({tmp_path} holds no manifest.json" in \
        message
    assert "set engine.bundle_path" in message
    assert isinstance(caught.value, EngineError)


def test_without_a_shipped_bundle_engine_configuration_and_command_say_so(
        nothing_shipped: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(EngineError, match=r"no model bundle is shipped with this installation.*engine\.bundle_path"):
        create_engine("bayesian-unet", bundle_path=None, device="cpu")
    with pytest.raises(ConfigError) as caught:
        load_settings(environ={"SARCOSCREEN_ENGINE__NAME": "bayesian-unet"})
    assert "engine: bundle_path is required for the bayesian-unet engine here: no model bundle is shipped" in \
        str(caught.value)
    assert str(nothing_shipped) in str(caught.value)
    from sarcoscreen.node.cli import main

    assert main(["bundle"]) == 1
    assert "no model bundle is shipped with this installation" in capsys.readouterr().err


def test_a_configured_bundle_path_needs_no_shipped_bundle(nothing_shipped: Path, bundle: Path) -> None:
    from sarcoscreen.node.analysis import engine_from

    settings = load_settings(environ={"SARCOSCREEN_ENGINE__NAME": "bayesian-unet",
                                      "SARCOSCREEN_ENGINE__BUNDLE_PATH": str(bundle),
                                      "SARCOSCREEN_ENGINE__DEVICE": "cpu"})
    assert engine_from(settings).bundle_path == bundle


# --- the labelling line ---------------------------------------------------------------------------------------


def test_the_labelling_line_says_what_the_manifest_states(bundle: Path) -> None:
    manifest = describe_bundle(bundle)
    assert labelling_line(manifest) == LABEL
    plain = TrainingData("older bundle", synthetic=False, cases=4)
    assert labelling_line(replace(manifest, training_data=plain)) is None  # states nothing: no line
    only_use = TrainingData("x", synthetic=False, intended_use=INTENDED_USE)
    assert labelling_line(replace(manifest, training_data=only_use)) == (
        "model test-public 0.1: intended use: research; not a medical device")
    phantoms = TrainingData("phantoms", synthetic=True, subjects=1, sources=("sarcoscreen phantom",))
    assert labelling_line(replace(manifest, training_data=phantoms)) == (
        "model test-public 0.1: trained on synthetic data from 1 subject (sarcoscreen phantom)")
    # the provenance `sarcoscreen train` puts into the shipped model's manifest (training/public_data.py), shortened
    from sarcoscreen.inference.training import public_data

    shipped_like = TrainingData("x", synthetic=False, subjects=3, sources=("public-data",),
                                provenance=(public_data.ANNOTATION_PROVENANCE, public_data.CT_PROVENANCE),
                                licences=(public_data.ANNOTATION_LICENCE, public_data.CT_LICENCE),
                                intended_use=public_data.INTENDED_USE)
    assert labelling_line(replace(manifest, training_data=shipped_like)) == (
        "model test-public 0.1: trained on data from 3 subjects (manual per-voxel muscle and bone labels of the TCIA "
        "Pelvic Reference Data cases, github.com/yuta-hi/pelvic-annonation; CT: Yorke et al., DOI "
        "10.7937/TCIA.2019.woskq5oo); intended use: research; not a medical device")


def test_the_bundle_command_shows_provenance_licences_and_intended_use(
        bundle: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from sarcoscreen.node.cli import main

    assert main(["bundle", str(bundle)]) == 0
    text = capsys.readouterr().out
    for line in PUBLIC_TRAINING_DATA.provenance + PUBLIC_TRAINING_DATA.licences:
        assert line in text
    assert "  subjects      3" in text
    assert f"  intended use  {INTENDED_USE}" in text
    assert f"every result says: {LABEL}" in text
    assert "(verified)" in text
    assert describe_manifest(describe_bundle(bundle)) in text
    synthetic = replace(describe_bundle(bundle), training_data=TrainingData("phantoms", synthetic=True))
    assert SYNTHETIC_WARNING in describe_manifest(synthetic)
    assert "  provenance    (not stated)" in describe_manifest(synthetic)


def test_the_label_reaches_the_notes_the_files_the_sr_and_the_key_image(
        bundle: Path, phantom: Path, tmp_path: Path) -> None:
    from sarcoscreen.inference.density import DensityKind, DensityRule
    from sarcoscreen.inference.height import choose_height
    from sarcoscreen.inference.measure import measure
    from sarcoscreen.reports.dicom_outputs import write_dicom_outputs
    from sarcoscreen.reports.overlay import render_overlay
    from sarcoscreen.reports.result_files import write_result_files

    volume = load_series(phantom)
    segmentation = create_engine("bayesian-unet", bundle_path=bundle, device="cpu", mc_samples=1).segment(volume)
    assert LABEL in segmentation.notes
    report = measure(volume, segmentation, DensityRule(DensityKind.CONSTANT, 1.04, False, (-29.0, 150.0)),
                     choose_height(1.7, None, None))
    assert LABEL in report.notes
    files = write_result_files(tmp_path, volume, segmentation, report, None).files
    assert LABEL in json.loads(files["json"].read_text())["notes"]
    outputs = write_dicom_outputs(sorted(phantom.glob("*.dcm")), volume, segmentation, report, tmp_path / "dicom",
                                  settings_digest="t")
    assert outputs.sr is not None
    sr_texts = [str(e.value) for e in pydicom.dcmread(outputs.sr).iterall() if e.keyword == "TextValue"]
    assert LABEL in sr_texts
    # The key image is the overlay picture: the notes are drawn under the table, so it grows with them.
    with_notes = render_overlay(volume, segmentation, report)
    without = render_overlay(volume, segmentation, replace(report, notes=()))
    assert with_notes.height >= without.height + 17 * len(report.notes)


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_the_worker_keeps_the_label_and_results_name_the_engine(db_url: str, bundle: Path, phantom: Path,
                                                                tmp_path: Path) -> None:
    settings = Settings.model_validate({
        "database": {"url": db_url},
        "storage": {"data_dir": str(tmp_path / "data"), "min_free_mb": 0},
        "network": {"stable_age_s": 0.001},
        "routing": {"require_gluteal_region": False, "max_slice_thickness_mm": 10.0},
        "outputs": {"key_image": "none"},
        "engine": {"name": "bayesian-unet", "bundle_path": str(bundle), "device": "cpu", "mc_samples": 1},
    })
    spool = spool_series(settings, phantom)
    db = create_engine_from_url(db_url)
    try:
        reconcile(db, spool)
        assert [o.outcome for o in decide_series(db, settings)] == ["queued"]
        assert Worker(settings, db).run_one()
        (job,) = jobs_of(db)
        (event,) = rows(db, select(Event.message).where(Event.kind == "engine.notes", Event.job_id == job.id))
        with session_scope(db) as session:
            (row,) = results(session)
    finally:
        db.dispose()
    assert job.status is JobStatus.DONE, job.error
    assert job.engine_name == "bayesian-unet"
    assert job.engine_version.startswith("1.0+")
    assert event.startswith(f"job {job.id}: engine bayesian-unet {job.engine_version}: ")
    assert LABEL in event
    table = format_results([row], "table").splitlines()
    assert table[0].index(" job ") < table[0].index(" engine ") < table[0].index("gluteal SMI")
    assert f"bayesian-unet {job.engine_version}" in table[2]
    (data,) = json.loads(format_results([row], "json"))
    assert (data["job"]["engine_name"], data["job"]["engine_version"]) == ("bayesian-unet", job.engine_version)
    assert f"bayesian-unet {job.engine_version}" in format_results([row], "csv")


# --- the real shipped bundle (skipped until it is committed) ------------------------------------------------------


@NO_BUNDLE_YET
def test_the_shipped_bundle_loads_states_its_training_data_and_fits_a_wheel() -> None:
    folder = shipped.shipped_bundle_path()
    manifest = describe_bundle()  # the shipped one, weights verified by checksum
    data = manifest.training_data
    assert data.subjects > 0
    assert data.provenance
    assert len(data.licences) >= 1
    assert "not a medical device" in data.intended_use
    assert sorted(p.name for p in folder.iterdir()) == ["README.txt", "manifest.json", manifest.weights_file]
    assert (folder / manifest.weights_file).stat().st_size <= 25 * 2**20
    engine = create_engine("bayesian-unet", bundle_path=None, device="cpu")
    assert engine.bundle_path == folder
    assert engine.mc_samples == manifest.mc_samples


@NO_BUNDLE_YET
def test_the_shipped_bundle_labels_its_results_and_needs_no_configured_path(phantom: Path) -> None:
    settings = load_settings(environ={"SARCOSCREEN_ENGINE__NAME": "bayesian-unet"})
    assert settings.engine.bundle_path is None
    volume = load_series(phantom)
    segmentation = create_engine("bayesian-unet", device="cpu", mc_samples=1).segment(volume)
    label = labelling_line(describe_bundle())
    assert label is not None
    assert label in segmentation.notes
    assert "intended use: " in label
