"""The ``bayesian-unet`` engine: per-muscle segmentation with Monte-Carlo dropout uncertainty.

The 2-D Bayesian U-Net of Hiasa et al., "Automated muscle segmentation from clinical CT using Bayesian U-Net for
personalized musculoskeletal modeling", IEEE TMI 39(4), 2020 (`model`), loaded from a model bundle (`bundle`,
`manifest`) and run slice by slice with MC dropout (`inference`, `preprocess`). It produces the catalogue
structures of the bundle's label table, a voxel-wise uncertainty map and a structure-wise uncertainty with a QA
threshold, which measurement turns into a QA flag per structure (carried into the results and the SR).

Without ``bundle_path`` the engine loads the bundle shipped inside the package (`shipped_bundle`: the folder
``shipped/``; a clear `EngineError` when this installation has none); a site may train its own
(``sarcoscreen train``) or load a bundle it was given. Every result carries the bundle's own account of itself
(`bundle_info.labelling_line`: subjects, provenance, licences, intended use) in the engine's notes. A bundle whose
manifest says its training data were synthetic (phantoms) is for testing only; the engine says so in its notes
and in the log.

This module imports torch only when an engine is created (`torch_runtime`), so the rest of sarcoscreen works
without the ``unet`` extra; `create_engine("bayesian-unet")` then fails with a message naming the extra.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from sarcoscreen.inference.catalogue import CATALOGUE, Structure
from sarcoscreen.inference.engines.base import EngineError, Progress, Segmentation
from sarcoscreen.inference.engines.orientation import axial_frame
from sarcoscreen.inference.engines.unet.bundle_info import labelling_line
from sarcoscreen.inference.engines.unet.manifest import SYNTHETIC_WARNING, UNCERTAINTY_MEASURES, Manifest
from sarcoscreen.inference.engines.unet.torch_runtime import require_torch, resolve_device
from sarcoscreen.inference.volume import Volume

__all__ = ["ENGINE_VERSION", "BayesianUNetEngine", "describe_bundle"]

ENGINE_VERSION = "1.0"
"""The engine's own version; a result's engine version adds the bundle's weights checksum."""

logger = logging.getLogger(__name__)


class BayesianUNetEngine:
    """Per-muscle segmentation with MC-dropout uncertainty from a model bundle (see the module docstring)."""

    name = "bayesian-unet"

    def __init__(
        self,
        bundle_path: Path | str | None = None,
        device: str = "auto",
        mc_samples: int | None = None,
        uncertainty: str = "variance",
        uncertainty_threshold: float | None = None,
        batch_images: int = 16,
        seed: int | None = 0,
        mixed_precision: bool = True,
        keep_voxel_uncertainty: bool = True,
    ) -> None:
        """`bundle_path` None loads the bundle shipped with sarcoscreen (`shipped_bundle.shipped_bundle_path`;
        `EngineError` when there is none); `mc_samples` and `uncertainty_threshold` default to the bundle's (the
        threshold only when the bundle's uncertainty measure is `uncertainty`); `seed` None draws fresh dropout
        masks on every run."""
        if uncertainty not in UNCERTAINTY_MEASURES:
            raise EngineError(f"uncertainty measure {uncertainty!r} is not one of {', '.join(UNCERTAINTY_MEASURES)}")
        if mc_samples is not None and not 1 <= mc_samples <= 1000:
            raise EngineError(f"mc_samples {mc_samples} out of range 1..1000")
        if batch_images < 1:
            raise EngineError(f"batch_images {batch_images} must be at least 1")
        self.device = resolve_device(device)
        from sarcoscreen.inference.engines.unet.bundle import load_bundle
        from sarcoscreen.inference.engines.unet.shipped_bundle import shipped_bundle_path

        self.shipped = bundle_path is None
        self.bundle_path = shipped_bundle_path() if bundle_path is None else Path(bundle_path)
        self.model, self.manifest = load_bundle(self.bundle_path, self.device)
        self.mc_samples = mc_samples or self.manifest.mc_samples
        self.uncertainty = uncertainty
        if uncertainty_threshold is None and uncertainty == self.manifest.uncertainty_measure:
            uncertainty_threshold = self.manifest.uncertainty_threshold
        self.uncertainty_threshold = uncertainty_threshold
        self.batch_images = batch_images
        self.seed = seed
        self.autocast = bool(mixed_precision and self.device.type == "cuda")
        self.keep_voxel_uncertainty = keep_voxel_uncertainty
        self.version = f"{ENGINE_VERSION}+{self.manifest.weights_sha256[:12]}"
        if self.manifest.training_data.synthetic:
            logger.warning("model bundle %s: %s", self.bundle_path, SYNTHETIC_WARNING)

    def structures(self) -> tuple[Structure, ...]:
        return self.manifest.structures()

    def segment(self, volume: Volume, progress: Progress | None = None) -> Segmentation:
        from sarcoscreen.inference.bone_landmarks import landmarks_from_labels
        from sarcoscreen.inference.engines.unet.inference import predict_slices
        from sarcoscreen.inference.engines.unet.preprocess import PlaneMapping, body_centre

        frame = axial_frame(volume)
        hu = frame.view(volume.hu)
        spec = self.manifest.input
        mapping = PlaneMapping.create(hu.shape[1:], (frame.spacing[1], frame.spacing[2]), spec, body_centre(hu))
        labels = np.zeros(volume.shape, np.uint8)
        uncertainty = np.zeros(volume.shape, np.float16) if self.keep_voxel_uncertainty else None
        report = progress or (lambda step, done, total: None)
        report("U-Net", 0, hu.shape[0])
        prediction = predict_slices(
            self.model, hu, mapping, spec, self.manifest.label_values(), samples=self.mc_samples,
            measure=self.uncertainty, batch_images=self.batch_images, seed=self.seed,
            keep_uncertainty=uncertainty is not None, autocast=self.autocast,
            progress=lambda done, total: report("U-Net", done, total), labels_out=frame.view(labels),
            uncertainty_out=None if uncertainty is None else frame.view(uncertainty),
        )
        by_label = prediction.structure_uncertainty()
        return Segmentation(
            labels=labels,
            structures=self.structures(),
            engine_name=self.name,
            engine_version=self.version,
            # Landmarks from the engine's own hip bone and femur labels (the reference's definitions; bounding the
            # upper gluteal group and telling a muscle not found from one outside the scan: inference.measure).
            landmarks=landmarks_from_labels(volume, labels),
            voxel_uncertainty=uncertainty,
            structure_uncertainty={CATALOGUE.by_label(v).key: u for v, u in by_label.items()},
            uncertainty_threshold=self.uncertainty_threshold,
            uncertainty_measure=self.uncertainty,
            notes=self._notes(mapping.body_outside(hu)),
        )

    def _notes(self, outside: float) -> tuple[str, ...]:
        m = self.manifest
        notes = [f"bayesian-unet: bundle {m.name} {m.version} (sha256 {m.weights_sha256[:12]}), "
                 f"{self.mc_samples} Monte-Carlo dropout samples, uncertainty = predictive {self.uncertainty}"
                 + ("" if self.uncertainty_threshold is None
                    else f", QA threshold {self.uncertainty_threshold:.4g}")]
        label = labelling_line(m)
        if label is not None:
            notes.append(label)
        if m.training_data.synthetic:
            notes.append(f"WARNING: {SYNTHETIC_WARNING}")
        if outside > 0.001:
            notes.append(f"bayesian-unet: {100 * outside:.1f} % of the body lies outside the model's field of view "
                         f"({m.input.size[1] * m.input.pixel_spacing_mm[1]:.0f} x "
                         f"{m.input.size[0] * m.input.pixel_spacing_mm[0]:.0f} mm) and is not segmented")
        if self.mc_samples == 1 and self.uncertainty == "variance":
            notes.append("bayesian-unet: one MC sample gives no predictive variance (uncertainty 0)")
        return tuple(notes)


def describe_bundle(path: Path | str | None = None) -> Manifest:
    """The checked manifest of a bundle (weights verified by checksum; `path` None: the shipped bundle, see
    `shipped_bundle.shipped_bundle_path`); needs the ``unet`` extra. Its training data (``training_data``:
    subjects, provenance, licences, intended use) are shown in words by `bundle_info.describe_manifest`."""
    require_torch()
    from sarcoscreen.inference.engines.unet.bundle import read_bundle_files
    from sarcoscreen.inference.engines.unet.shipped_bundle import shipped_bundle_path

    return read_bundle_files(shipped_bundle_path() if path is None else path)[0]
