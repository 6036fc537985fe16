"""Model bundles for tests: small untrained Bayesian U-Nets with the per-muscle label table of the pelvic
annotation (the catalogue structures `labelled_ct.ANNOTATION_TO_CATALOGUE` maps to, both sides: what the shipped
model of issue 12 segments), written with `save_bundle` into a folder the test gives - a temporary one, never the
package's ``shipped/`` folder (only the maintainer commits the real bundle there).

Random weights: the labels mean nothing, but every path (loading, MC sampling, notes, measurement, outputs) is
the real one. Needs torch (the ``unet`` extra): import this module after ``pytest.importorskip("torch")``.
"""

from __future__ import annotations

from pathlib import Path

import torch

from sarcoscreen.inference.catalogue import CATALOGUE, Side
from sarcoscreen.inference.engines.unet.bundle import save_bundle
from sarcoscreen.inference.engines.unet.manifest import InputSpec, LabelEntry, Manifest, TrainingData
from sarcoscreen.inference.engines.unet.model import BayesianUNet, UNetConfig
from sarcoscreen.inference.labelled_ct import ANNOTATION_TO_CATALOGUE

__all__ = ["INTENDED_USE", "PELVIC_KEYS", "PUBLIC_TRAINING_DATA", "make_bundle", "pelvic_labels"]

PELVIC_KEYS: tuple[str, ...] = tuple(sorted(
    {CATALOGUE.structure(anatomy, side).key for _, anatomy in ANNOTATION_TO_CATALOGUE.values()
     for side in (Side.RIGHT, Side.LEFT)},
    key=lambda key: CATALOGUE.by_key(key).label))
"""The 19 hip and thigh muscles and the bones of the pelvic annotation, per side, in label order."""

INTENDED_USE = "research; not a medical device"

PUBLIC_TRAINING_DATA = TrainingData(
    description="test bundle: untrained, described like the shipped model (simulated CT from public label maps)",
    synthetic=False, cases=3, validation_cases=1, subjects=3,
    provenance=("Pelvic Reference Data annotations, yuta-hi/pelvic-annonation",
                "Pelvic Reference Data CT, Yorke et al., TCIA 2019, DOI 10.7937/TCIA.2019.woskq5oo"),
    licences=("MIT (annotations)", "TCIA Data Usage Policy (CT)"),
    intended_use=INTENDED_USE,
)


def pelvic_labels(keys: tuple[str, ...] = PELVIC_KEYS) -> tuple[LabelEntry, ...]:
    """Background and `keys` with their catalogue label values (label values are persistent)."""
    return (LabelEntry(0, "background", 0),
            *(LabelEntry(i, key, CATALOGUE.by_key(key).label) for i, key in enumerate(keys, start=1)))


def make_bundle(out: Path, *, training_data: TrainingData = PUBLIC_TRAINING_DATA, name: str = "test-public",
                version: str = "0.1", keys: tuple[str, ...] = PELVIC_KEYS, levels: int = 3, filters: int = 4,
                size: int = 32, pixel_mm: float = 16.0, mc_samples: int = 2, seed: int = 0,
                favour: dict[str, float] | None = None) -> Manifest:
    """Write an untrained bundle to `out` (a folder, or an archive by its suffix); returns its manifest.

    The default input (32 x 32 pixels of 16 mm: a 512 mm field) keeps the network cheap on any series. `favour`
    adds to the output bias of these structures (catalogue key -> logit), so that an untrained network still
    labels them somewhere (e.g. gluteal muscle, which the node's routing looks for)."""
    torch.manual_seed(seed)
    config = UNetConfig(num_classes=len(keys) + 1, levels=levels, base_filters=filters)
    model = BayesianUNet(config)
    with torch.no_grad():
        for key, logit in (favour or {}).items():
            model.head.bias[keys.index(key) + 1] += logit
    manifest = Manifest(
        name=name, version=version, architecture=config.to_dict(), labels=pelvic_labels(keys),
        input=InputSpec((size, size), (pixel_mm, pixel_mm), (-300.0, 1000.0), -500.0, 400.0),
        training_data=training_data, weights_sha256="0" * 64, mc_samples=mc_samples, uncertainty_threshold=0.05,
        description="untrained test network")
    return save_bundle(model, manifest, out)
