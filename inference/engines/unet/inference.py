"""Monte-Carlo dropout inference over a whole series, in bounded memory.

For every axial slice the network runs ``T`` times with independent dropout masks (the samples are batched:
each forward pass holds up to ``batch_images`` images = slices x samples). From the ``T`` softmax outputs
``p_t`` (per voxel and class):

* the label is the argmax of the mean probability ``mean_t p_t``;
* the voxel uncertainty is the **predictive variance** ``sum_c var_t p_t(c)`` (the per-class variance over the
  samples, with 1/T, summed over classes; 0 for T = 1), or with ``measure="entropy"`` the predictive entropy
  ``-sum_c p(c) log p(c)`` of the mean probability (nats);
* the structure-wise uncertainty (Hiasa et al. 2020) is the mean voxel uncertainty inside each predicted
  structure, accumulated with ``bincount`` slice batch by slice batch.

Probabilities are brought back to the series' own grid before the argmax (bilinear), so the label map has the
series' resolution. Memory is a few slice batches on the device plus the outputs (uint8 labels and, when kept,
a float16 uncertainty map), whatever the number of slices.

Determinism: with a `seed`, each slice batch draws its dropout masks from ``torch.manual_seed(seed, batch)``
inside a forked RNG (the caller's random state is untouched), so the same series, bundle, settings and seed give
the same labels and uncertainties on the same device.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
import torch

from sarcoscreen.inference.engines.unet.manifest import InputSpec
from sarcoscreen.inference.engines.unet.model import BayesianUNet, set_mc_dropout
from sarcoscreen.inference.engines.unet.preprocess import PlaneMapping, normalise

__all__ = ["McPrediction", "mc_probabilities", "predict_slices"]

SliceProgress = Callable[[int, int], None]


@dataclass(frozen=True)
class McPrediction:
    """What MC inference made of a stack of slices (arrays in the stack's own layout)."""

    labels: np.ndarray
    """uint8 catalogue label values ``(n, H, W)``."""
    uncertainty: np.ndarray | None
    """float16 voxel uncertainty ``(n, H, W)``, when kept."""
    uncertainty_sum: np.ndarray
    """Per catalogue label value (256 bins): sum of voxel uncertainty over the voxels predicted as that label."""
    voxel_count: np.ndarray
    """Per catalogue label value: number of voxels predicted as that label."""

    def structure_uncertainty(self) -> dict[int, float]:
        """Label value -> mean voxel uncertainty inside the predicted structure (labels present only)."""
        return {int(v): float(self.uncertainty_sum[v] / self.voxel_count[v])
                for v in np.flatnonzero(self.voxel_count) if v > 0}


@contextlib.contextmanager
def _seeded(seed: int | None, batch: int, device: torch.device) -> Iterator[None]:
    """Dropout masks from ``(seed, batch)`` inside a forked RNG; unchanged randomness when `seed` is None."""
    if seed is None:
        yield
        return
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed((seed * 1_000_003 + batch) % 2**63)
        yield


def mc_probabilities(model: BayesianUNet, x: torch.Tensor, samples: int, batch_images: int,
                     autocast: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and mean square of the softmax over `samples` dropout samples for input ``x`` ``(s, 1, r, c)``:
    two ``(s, C, r, c)`` float32 tensors. Samples are batched, at most `batch_images` images per forward."""
    s = x.shape[0]
    total = torch.zeros((s, model.config.num_classes, *x.shape[-2:]), dtype=torch.float32, device=x.device)
    total_sq = torch.zeros_like(total)
    per_pass = max(1, batch_images // s)
    done = 0
    while done < samples:
        t = min(per_pass, samples - done)
        batch = x.repeat(t, 1, 1, 1)  # sample-major: (t * s, 1, r, c)
        with torch.autocast(x.device.type, dtype=torch.float16, enabled=autocast):
            logits = model(batch)
        p = torch.softmax(logits.float(), dim=1).view(t, s, *total.shape[1:])
        total += p.sum(dim=0)
        total_sq += (p * p).sum(dim=0)
        done += t
    return total / samples, total_sq / samples


@torch.inference_mode()
def predict_slices(
    model: BayesianUNet,
    hu: np.ndarray,
    mapping: PlaneMapping,
    spec: InputSpec,
    label_values: list[int],
    *,
    samples: int,
    measure: str = "variance",
    batch_images: int = 16,
    seed: int | None = 0,
    keep_uncertainty: bool = True,
    autocast: bool = False,
    progress: SliceProgress | None = None,
    labels_out: np.ndarray | None = None,
    uncertainty_out: np.ndarray | None = None,
) -> McPrediction:
    """MC-dropout prediction for the slices ``hu`` ``(n, H, W)`` (canonical orientation, any numpy layout).

    Results are written into `labels_out` / `uncertainty_out` when given (e.g. views of the volume-shaped
    outputs), else into new arrays. `model` must be in eval mode; its MC dropout is switched on here.
    """
    if measure not in ("variance", "entropy"):
        raise ValueError(f"unknown uncertainty measure {measure!r}")
    device = next(model.parameters()).device
    model.eval()
    set_mc_dropout(model, True)
    n = hu.shape[0]
    labels = labels_out if labels_out is not None else np.zeros(hu.shape, np.uint8)
    uncertainty = None
    if keep_uncertainty:
        uncertainty = uncertainty_out if uncertainty_out is not None else np.zeros(hu.shape, np.float16)
    lut = torch.tensor(label_values, dtype=torch.uint8, device=device)
    background = torch.zeros(len(label_values), device=device)
    background[0] = 1.0
    sums = torch.zeros(256, dtype=torch.float64, device=device)
    counts = torch.zeros(256, dtype=torch.float64, device=device)
    slices_per_batch = max(1, batch_images // max(1, min(samples, batch_images)))
    for batch_index, start in enumerate(range(0, n, slices_per_batch)):
        stop = min(start + slices_per_batch, n)
        source = torch.from_numpy(hu[start:stop].astype(np.float32, order="C")).to(device)
        x = normalise(mapping.image(source), spec).unsqueeze(1)
        with _seeded(seed, batch_index, device):
            mean, mean_sq = mc_probabilities(model, x, samples, batch_images, autocast)
        if measure == "variance":
            voxel = (mean_sq - mean * mean).clamp_min(0).sum(dim=1, keepdim=True)
        else:
            voxel = -(mean * torch.log(mean.clamp_min(1e-12))).sum(dim=1, keepdim=True)
        for i in range(stop - start):  # back to the source grid one slice at a time (C x H x W each)
            probabilities = mapping.back(mean[i:i + 1], background)
            index = probabilities.argmax(dim=1)[0]
            value = lut[index]
            u = mapping.back(voxel[i:i + 1], 0.0)[0, 0]
            flat = value.reshape(-1).long()
            sums += torch.bincount(flat, weights=u.reshape(-1).double(), minlength=256)
            counts += torch.bincount(flat, minlength=256).double()
            labels[start + i] = value.cpu().numpy()
            if uncertainty is not None:
                uncertainty[start + i] = u.cpu().numpy().astype(np.float16)
        if progress is not None:
            progress(stop, n)
    return McPrediction(labels, uncertainty, sums.cpu().numpy(), counts.cpu().numpy())
