"""The Bayesian U-Net's network, MC-dropout inference, preprocessing, augmentation and data sets (fast; no
training). Training on phantoms is in test_unet_training.py."""

from __future__ import annotations

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import nibabel as nib  # noqa: E402

from sarcoscreen.inference.catalogue import CATALOGUE, Side  # noqa: E402
from sarcoscreen.inference.engines.unet.inference import predict_slices  # noqa: E402
from sarcoscreen.inference.engines.unet.manifest import InputSpec  # noqa: E402
from sarcoscreen.inference.engines.unet.model import BayesianUNet, MCDropout, UNetConfig, set_mc_dropout  # noqa: E402
from sarcoscreen.inference.engines.unet.preprocess import PlaneMapping  # noqa: E402
from sarcoscreen.inference.training.augment import AugmentConfig, augment, swap_lut  # noqa: E402
from sarcoscreen.inference.training.datasets import (  # noqa: E402
    DatasetError,
    LabelMapping,
    find_cases,
    load_case,
    volume_from_nifti,
)

SPEC = InputSpec((32, 32), (10.0, 10.0), (-300.0, 1000.0), 0.0, 300.0)


def test_default_architecture_is_the_reference_studys_and_runs_on_cpu() -> None:
    model = BayesianUNet(UNetConfig(num_classes=51))
    assert len(model.encoders) == 5
    assert len(model.decoders) == 4
    assert [e.conv1.out_channels for e in model.encoders] == [32, 64, 128, 256, 512]
    # Two 3x3 convolutions with batch norm per block; transposed convolutions up; dropout p = 0.5.
    block = model.encoders[2]
    assert block.conv1.kernel_size == (3, 3)
    assert block.conv2.kernel_size == (3, 3)
    assert isinstance(block.norm1, torch.nn.BatchNorm2d)
    assert isinstance(block.norm2, torch.nn.BatchNorm2d)
    assert isinstance(model.ups[0].deconv, torch.nn.ConvTranspose2d)
    assert model.ups[0].deconv.stride == (2, 2)
    assert model.dropout.p == 0.5
    calls = []
    model.dropout.register_forward_hook(lambda *_: calls.append(1))
    model.eval()
    with torch.inference_mode():
        out = model(torch.zeros(1, 1, 256, 256))
    assert out.shape == (1, 51, 256, 256)
    assert len(calls) == 9  # after every encoder (5) and decoder (4) block


def test_mc_dropout_stays_active_in_eval_mode_with_frozen_batch_norm() -> None:
    torch.manual_seed(0)
    model = BayesianUNet(UNetConfig(num_classes=4, levels=3, base_filters=4))
    model.train()
    with torch.no_grad():  # give batch norm non-trivial running statistics
        for _ in range(3):
            model(torch.randn(4, 1, 32, 32))
    model.eval()
    x = torch.randn(3, 1, 32, 32)
    with torch.inference_mode():
        a, b = model(x), model(x)
        assert not torch.allclose(a, b)  # dropout samples a different sub-network each pass
        set_mc_dropout(model, False)
        c, d = model(x), model(x)
        single = model(x[:1])
    assert torch.equal(c, d)
    # Batch norm uses its running statistics in eval mode: an image's output does not depend on the batch.
    assert torch.allclose(single, c[:1], atol=1e-5)
    assert any(isinstance(m, MCDropout) for m in model.modules())


def test_input_size_must_fit_the_levels() -> None:
    model = BayesianUNet(UNetConfig(num_classes=3, levels=3, base_filters=4))
    with pytest.raises(ValueError, match="multiples of 4"):
        model(torch.zeros(1, 1, 30, 32))
    with pytest.raises(ValueError, match="levels"):
        UNetConfig(num_classes=3, levels=9)


def _stack() -> np.ndarray:
    """HU slices with a 'muscle' disc on air."""
    yy, xx = np.mgrid[:40, :40]
    disc = (yy - 20) ** 2 + (xx - 18) ** 2 < 100
    return np.where(disc[None], 50, -1000).repeat(5, axis=0).astype(np.int16)


def test_predict_slices_is_seeded_and_batched_consistently() -> None:
    torch.manual_seed(1)
    model = BayesianUNet(UNetConfig(num_classes=3, levels=3, base_filters=4)).eval()
    hu = _stack()
    mapping = PlaneMapping.create(hu.shape[1:], (8.0, 8.0), SPEC)
    values = [0, 1, 2]
    first = predict_slices(model, hu, mapping, SPEC, values, samples=6, seed=7, batch_images=6)
    again = predict_slices(model, hu, mapping, SPEC, values, samples=6, seed=7, batch_images=6)
    other = predict_slices(model, hu, mapping, SPEC, values, samples=6, seed=8, batch_images=6)
    assert np.array_equal(first.labels, again.labels)
    assert np.array_equal(first.uncertainty, again.uncertainty)
    assert not np.array_equal(first.uncertainty, other.uncertainty)
    assert first.labels.shape == hu.shape
    assert first.labels.dtype == np.uint8
    assert set(np.unique(first.labels)) <= {0, 1, 2}
    # one image per forward pass still works (memory bound), and one sample has no variance
    tiny = predict_slices(model, hu, mapping, SPEC, values, samples=3, seed=7, batch_images=1)
    assert tiny.labels.shape == hu.shape
    single = predict_slices(model, hu, mapping, SPEC, values, samples=1, seed=7)
    assert float(np.abs(single.uncertainty.astype(np.float32)).max()) < 1e-6
    entropy = predict_slices(model, hu, mapping, SPEC, values, samples=4, seed=7, measure="entropy")
    assert float(entropy.uncertainty.min()) >= 0.0
    assert float(entropy.uncertainty.max()) <= np.log(3) + 1e-3
    # structure-wise uncertainty = mean voxel uncertainty inside each predicted structure
    u = first.uncertainty.astype(np.float64)
    for value, mean in first.structure_uncertainty().items():
        assert mean == pytest.approx(u[first.labels == value].mean(), rel=2e-3, abs=1e-6)


def test_plane_mapping_resamples_and_centres_on_the_body() -> None:
    spec = InputSpec((32, 32), (4.0, 4.0), (-300.0, 1000.0), 0.0, 1.0)
    labels = np.zeros((1, 64, 64), np.int16)
    labels[0, 10:30, 40:60] = 5  # off centre
    centre = (19.5, 49.5)
    mapping = PlaneMapping.create((64, 64), (2.0, 2.0), spec, centre)
    assert mapping.scaled_shape == (32, 32)
    on_model = mapping.labels(torch.from_numpy(labels))[0].numpy()
    rows, cols = np.nonzero(on_model == 5)
    assert abs(rows.mean() - 15.5) < 1
    assert abs(cols.mean() - 15.5) < 1
    assert (on_model == 5).sum() == pytest.approx(100, abs=12)  # 20 x 20 px at 2 mm -> 10 x 10 at 4 mm
    onehot = torch.nn.functional.one_hot(torch.from_numpy(on_model).long(), 6).permute(2, 0, 1)[None].float()
    back = mapping.back(onehot, torch.tensor([1.0, 0, 0, 0, 0, 0])).argmax(1)[0].numpy()
    assert ((back == 5) == (labels[0] == 5)).mean() > 0.98
    outside = mapping.inside()
    assert outside.shape == (64, 64)
    assert not outside.all()


def test_augmentation_never_mirrors_sides_without_swapping_labels() -> None:
    right = CATALOGUE.structure("gluteus_maximus", Side.RIGHT).label
    left = CATALOGUE.structure("gluteus_maximus", Side.LEFT).label
    values = [0, right, left]
    # Canonical view: columns run from the patient's right to the patient's left.
    labels = torch.zeros(16, 32, 32, dtype=torch.long)
    labels[:, 12:20, 4:12] = 1  # right structure on the image's left half
    labels[:, 12:20, 20:28] = 2
    images = torch.where(labels > 0, 50.0, -1000.0)
    generator = torch.Generator().manual_seed(0)
    swap = swap_lut(values)
    assert swap.tolist() == [0, 2, 1]
    for config in (AugmentConfig(), AugmentConfig(flip_lr=True, probability=1.0)):
        moved_images, moved = augment(images, labels, config, generator, swap)
        assert moved_images.shape == images.shape
        cols = torch.arange(32).view(1, 1, 32).expand_as(moved).float()
        for b in range(16):
            on_right, on_left = moved[b] == 1, moved[b] == 2
            assert on_right.any()
            assert on_left.any()
            assert cols[b][on_right].mean() < cols[b][on_left].mean()  # right stays right of the patient, left left


def test_label_mapping_file(tmp_path) -> None:
    path = tmp_path / "map.json"
    path.write_text(json.dumps({"values": {"3": "gluteus_maximus_left", "9": "background"},
                                "segments": {"GMax R": "gluteus_maximus_right"}}))
    mapping = LabelMapping.read(path)
    raw = np.array([[0, 3], [9, 3]])
    assert mapping.map_values(raw, "c").tolist() == [[0, 2], [0, 2]]
    with pytest.raises(DatasetError, match="label value 4 is not in the label mapping"):
        mapping.map_values(np.array([4]), "c")
    assert mapping.map_segment("GMax R", None, "c") == 1
    with pytest.raises(DatasetError, match="not a catalogue structure key"):
        LabelMapping.from_dict({"values": {"1": "gluteus_maximal"}})
    default = LabelMapping()
    assert default.map_values(np.array([0, 1, 63]), "c").tolist() == [0, 1, 63]
    with pytest.raises(DatasetError, match="label value 57 is not a catalogue label"):
        default.map_values(np.array([57]), "c")
    assert default.map_segment("Right soleus", None, "c") == CATALOGUE.by_key("soleus_right").label
    assert default.map_segment("whatever", "soleus_left", "c") == CATALOGUE.by_key("soleus_left").label


def test_nifti_pairs_load_like_the_dicom_series(tmp_path) -> None:
    from sarcoscreen.inference.phantom import PhantomParameters, make_phantom
    from sarcoscreen.inference.series_loader import load_series

    result = make_phantom(PhantomParameters(matrix=64, slice_mm=10.0, fov="abdomen", patient_position="FFS",
                                            seed=3), tmp_path / "phantom")
    volume = load_series(result.dicom_dir)
    labels_image = nib.load(result.labels_path)
    # A NIfTI image on the label map's grid (axes column, row, slice as the series stores them), values in HU.
    hu_xyz = np.asarray(volume.hu).transpose(2, 1, 0)
    case = tmp_path / "data" / "case01"
    case.mkdir(parents=True)
    nib.save(nib.Nifti1Image(hu_xyz.astype(np.int16), labels_image.affine), case / "image.nii.gz")
    nib.save(labels_image, case / "labels.nii.gz")
    cases, _ = find_cases(tmp_path / "data")
    assert [c.name for c in cases] == ["case01"]
    nifti_volume, nifti_labels = load_case(cases[0], LabelMapping())
    direct = volume_from_nifti(case / "image.nii.gz")
    assert direct.shape == nifti_volume.shape
    # Same anatomy in the same canonical view: compare through the DICOM path.
    from sarcoscreen.inference.engines.labelmap import align_to_volume
    from sarcoscreen.inference.engines.orientation import axial_frame

    dicom_labels = align_to_volume(np.asarray(labels_image.dataobj), labels_image.affine, volume)
    a = axial_frame(volume)
    b = axial_frame(nifti_volume)
    assert np.array_equal(a.view(volume.hu), b.view(nifti_volume.hu))
    assert np.array_equal(a.view(dicom_labels), b.view(nifti_labels))
