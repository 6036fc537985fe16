"""Model bundles: save/load round trip (folder and archives), refusal of corrupted or mismatched bundles with a
clear message, the engine's configuration, and sarcoscreen without torch. Untrained small networks (fast)."""

from __future__ import annotations

import json
import subprocess
import sys
import zipfile
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from sarcoscreen.inference.catalogue import CATALOGUE  # noqa: E402
from sarcoscreen.inference.engines import EngineError, create_engine  # noqa: E402
from sarcoscreen.inference.engines.unet.bundle import load_bundle, save_bundle  # noqa: E402
from sarcoscreen.inference.engines.unet.manifest import (  # noqa: E402
    SYNTHETIC_WARNING,
    BundleError,
    InputSpec,
    LabelEntry,
    Manifest,
    TrainingData,
)
from sarcoscreen.inference.engines.unet.model import BayesianUNet, UNetConfig  # noqa: E402
from sarcoscreen.inference.phantom import PhantomParameters, make_phantom  # noqa: E402
from sarcoscreen.inference.series_loader import load_series  # noqa: E402

KEYS = ("gluteus_maximus_right", "gluteus_maximus_left", "adductors_right", "adductors_left", "femur_right",
        "femur_left")


def _manifest(config: UNetConfig, synthetic: bool = True) -> Manifest:
    labels = (LabelEntry(0, "background", 0),
              *(LabelEntry(i, k, CATALOGUE.by_key(k).label) for i, k in enumerate(KEYS, start=1)))
    return Manifest(name="test-bundle", version="0.1", architecture=config.to_dict(), labels=labels,
                    input=InputSpec((32, 32), (16.0, 16.0), (-300.0, 1000.0), -500.0, 400.0),
                    training_data=TrainingData("untrained test network", synthetic), weights_sha256="0" * 64,
                    mc_samples=3, uncertainty_threshold=0.05)


@pytest.fixture(scope="module")
def model() -> BayesianUNet:
    torch.manual_seed(0)
    return BayesianUNet(UNetConfig(num_classes=len(KEYS) + 1, levels=3, base_filters=4))


@pytest.fixture(scope="module")
def volume(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    out = tmp_path_factory.mktemp("phantom")
    make_phantom(PhantomParameters(matrix=64, slice_mm=10.0, fov="abdomen", seed=5), out)
    return load_series(out / "dicom")


@pytest.mark.parametrize("name", ["bundle", "bundle.zip", "bundle.tar.gz"])
def test_round_trip_gives_identical_predictions(model, volume, tmp_path: Path, name: str) -> None:  # type: ignore[no-untyped-def]
    written = save_bundle(model, _manifest(model.config), tmp_path / name)
    loaded, manifest = load_bundle(tmp_path / name)
    assert manifest == written
    for key, tensor in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], tensor)
    a = create_engine("bayesian-unet", bundle_path=tmp_path / name, device="cpu", seed=11).segment(volume)
    b = create_engine("bayesian-unet", bundle_path=tmp_path / name, device="cpu", seed=11).segment(volume)
    assert np.array_equal(a.labels, b.labels)
    assert np.array_equal(a.voxel_uncertainty, b.voxel_uncertainty)
    assert a.structure_uncertainty == b.structure_uncertainty
    assert a.uncertainty_threshold == 0.05  # the bundle's suggestion
    assert a.uncertainty_measure == "variance"  # named, so the SR codes it apart from entropy (issue 11)
    assert {s.key for s in a.structures} == set(KEYS)
    assert a.engine_version == f"1.0+{written.weights_sha256[:12]}"
    assert any(SYNTHETIC_WARNING in note for note in a.notes)


def test_saving_the_same_weights_twice_writes_the_same_bytes(model, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """The checksum names the weights in the engine version and so in the output UIDs: re-saving a loaded bundle
    (another archive format, a copy) must not change it."""
    checksums = {save_bundle(model, _manifest(model.config), tmp_path / f"b{i}").weights_sha256 for i in range(24)}
    assert len(checksums) == 1
    loaded, manifest = load_bundle(tmp_path / "b0")
    assert save_bundle(loaded, manifest, tmp_path / "again.tar.gz").weights_sha256 == checksums.pop()


def _bundle(model: BayesianUNet, tmp_path: Path) -> Path:
    save_bundle(model, _manifest(model.config), tmp_path / "b")
    return tmp_path / "b"


def _edit_manifest(path: Path, change) -> None:  # type: ignore[no-untyped-def]
    data = json.loads((path / "manifest.json").read_text())
    change(data)
    (path / "manifest.json").write_text(json.dumps(data))


def test_corrupted_weights_are_refused(model, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    path = _bundle(model, tmp_path)
    weights = bytearray((path / "model.safetensors").read_bytes())
    weights[-100] ^= 0xFF
    (path / "model.safetensors").write_bytes(bytes(weights))
    with pytest.raises(BundleError, match=r"refused: checksum mismatch.*corrupted"):
        load_bundle(path)
    with pytest.raises(EngineError, match="checksum mismatch"):
        create_engine("bayesian-unet", bundle_path=path, device="cpu")


def test_truncated_archive_is_refused(model, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    archive = tmp_path / "b.zip"
    save_bundle(model, _manifest(model.config), archive)
    archive.write_bytes(archive.read_bytes()[:300])
    with pytest.raises(BundleError, match="archive cannot be read"):
        load_bundle(archive)
    with zipfile.ZipFile(tmp_path / "empty.zip", "w") as z:
        z.writestr("readme.txt", "no bundle")
    with pytest.raises(BundleError, match=r"no manifest\.json"):
        load_bundle(tmp_path / "empty.zip")


@pytest.mark.parametrize(("change", "message"), [
    (lambda d: d["labels"][1].update(key="gluteus_maximal_right"), "not a structure of the catalogue"),
    (lambda d: d["labels"][1].update(label=2), "label values are persistent"),
    (lambda d: d["labels"][0].update(key="air"), "channel 0 must be background"),
    (lambda d: d.update(format_version=99), "format version 99 is not supported"),
    (lambda d: d.update(format="something-else"), "not a sarcoscreen U-Net bundle"),
    (lambda d: d["input"].update(size=[30, 32]), "multiples of 4"),
    (lambda d: d["training_data"].pop("synthetic"), "training_data.synthetic"),
    (lambda d: d.pop("weights"), "malformed manifest"),
])
def test_mismatched_manifest_is_refused(model, tmp_path: Path, change, message: str) -> None:  # type: ignore[no-untyped-def]
    path = _bundle(model, tmp_path)
    _edit_manifest(path, change)
    with pytest.raises(BundleError, match=message):
        load_bundle(path)


def test_weights_of_another_architecture_are_refused(model, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    path = _bundle(model, tmp_path)
    _edit_manifest(path, lambda d: d["architecture"].update(base_filters=8))
    with pytest.raises(BundleError, match=r"wrong shape for encoders\.0\.conv1\.weight.*8 filters"):
        load_bundle(path)
    path2 = _bundle(model, tmp_path / "two")
    _edit_manifest(path2, lambda d: d["architecture"].update(levels=4))
    with pytest.raises(BundleError, match=r"do not fit the architecture.*missing decoders\.2"):
        load_bundle(path2)
    # a label table longer than the network's output
    path3 = tmp_path / "three"
    manifest = _manifest(model.config)
    extra = LabelEntry(len(KEYS) + 1, "soleus_right", CATALOGUE.by_key("soleus_right").label)
    with pytest.raises(BundleError, match="output classes but the label table"):
        save_bundle(model, replace(manifest, labels=(*manifest.labels, extra)), path3)


def test_missing_bundle_and_engine_options(model, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    from sarcoscreen.inference.engines.unet import shipped_bundle

    with pytest.raises(BundleError, match="not found"):
        create_engine("bayesian-unet", bundle_path=tmp_path / "nothing", device="cpu")
    (tmp_path / "empty").mkdir()
    monkeypatch.setattr(shipped_bundle, "shipped_folder", lambda: tmp_path / "empty")  # no bundle shipped
    with pytest.raises(EngineError, match="no model bundle is shipped"):
        create_engine("bayesian-unet", bundle_path=None)
    path = _bundle(model, tmp_path)
    with pytest.raises(EngineError, match="uncertainty measure 'std'"):
        create_engine("bayesian-unet", bundle_path=path, uncertainty="std")
    if not torch.cuda.is_available():
        with pytest.raises(EngineError, match="CUDA is not available"):
            create_engine("bayesian-unet", bundle_path=path, device="cuda")
    engine = create_engine("bayesian-unet", bundle_path=path, device="auto", uncertainty="entropy", mc_samples=2)
    assert engine.uncertainty_threshold is None  # the bundle's threshold is for the variance
    assert engine.mc_samples == 2


def test_settings_reach_the_engine(model, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from sarcoscreen.node.analysis import engine_from
    from sarcoscreen.node.config import ConfigError, load_settings

    path = _bundle(model, tmp_path)
    config = tmp_path / "sarcoscreen.toml"
    config.write_text(f'[engine]\nname = "bayesian-unet"\nbundle_path = "{path}"\nmc_samples = 4\n'
                      'uncertainty_threshold = 0.2\nbatch_images = 8\nseed = 3\ndevice = "cpu"\n')
    engine = engine_from(load_settings(config))
    assert (engine.mc_samples, engine.uncertainty_threshold, engine.batch_images, engine.seed) == (4, 0.2, 8, 3)
    config.write_text('[engine]\nname = "bayesian-unet"\nbundle_path = "x"\nuncertainty = "std"\nmc_samples = 0\n')
    with pytest.raises(ConfigError) as error:
        load_settings(config)
    assert "engine.uncertainty" in str(error.value)
    assert "engine.mc_samples" in str(error.value)


_NO_TORCH = """
import sys
sys.modules["torch"] = None
sys.modules["safetensors"] = None
import sarcoscreen.node.cli, sarcoscreen.node.analysis, sarcoscreen.inference.engines.unet
import sarcoscreen.inference.engines.unet.manifest, sarcoscreen.reports.seg, sarcoscreen.reports.sr
from sarcoscreen.inference.engines import EngineError, create_engine
try:
    create_engine("bayesian-unet", bundle_path="somewhere")
except EngineError as exc:
    print("ENGINE:", exc)
from sarcoscreen.node.cli import main
sys.exit(main(["train", "--data", "x", "--out", "y"]))
"""


def test_sarcoscreen_works_without_torch_and_names_the_extra() -> None:
    run = subprocess.run([sys.executable, "-c", _NO_TORCH], capture_output=True, text=True, timeout=120, check=False)
    assert "ENGINE: the bayesian-unet engine needs PyTorch and safetensors" in run.stdout
    assert "'unet' extra" in run.stdout
    assert run.returncode == 1
    assert "train needs PyTorch and safetensors" in run.stderr
    assert "sarcoscreen[unet]" in run.stderr
