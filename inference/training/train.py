"""Training a Bayesian U-Net bundle: data preparation, the loop, validation Dice, checkpoints and resume.

``train(data_dir, out, config)``:

1. finds the cases (`datasets.find_cases`), splits them into training and validation cases (by case, never by
   slice; seeded), loads each (`datasets.load_case`) and brings it onto the model's grid with the same code as
   inference (`PlaneMapping`): HU as int16 and catalogue labels as uint8, cached as ``.npy`` files in the work
   folder (``OUT.work/``; memory-mapped while training, so the data set need not fit in memory);
2. the label table is background + every catalogue structure present in the training labels, in label order;
   the HU normalisation is the mean and SD of the clipped HU of the training slices;
3. each epoch draws ``iterations`` batches of random slices (slices without any label are drawn 4x less often),
   augments them (`augment`) and minimises cross-entropy + soft Dice with Adam (cosine learning-rate decay),
   dropout active as in the network's design;
4. after each epoch the validation cases are segmented with MC dropout (few samples; dropout switched off
   would shift the statistics that batch normalisation learnt with dropout on) and the Dice of every structure
   is computed over each case's volume; the best mean Dice so far is kept;
5. a checkpoint (model, optimiser, best weights, history, random states) is written after every epoch;
   ``resume=True`` continues from it (the number of epochs may be raised);
6. at the end the best weights are run with MC dropout on the validation cases to record the validation Dice and
   the structure-wise uncertainties; the 95th percentile of those becomes the bundle's suggested QA threshold;
   the bundle (weights + manifest) is written.
"""

from __future__ import annotations

import json
import logging
import math
import os
import platform
import random
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812
from tqdm import tqdm

from sarcoscreen.inference.catalogue import CATALOGUE
from sarcoscreen.inference.engines.orientation import axial_frame
from sarcoscreen.inference.engines.unet.bundle import save_bundle
from sarcoscreen.inference.engines.unet.inference import predict_slices
from sarcoscreen.inference.engines.unet.manifest import InputSpec, LabelEntry, Manifest, TrainingData
from sarcoscreen.inference.engines.unet.model import BayesianUNet, UNetConfig, set_mc_dropout
from sarcoscreen.inference.engines.unet.preprocess import PlaneMapping, body_centre, normalise
from sarcoscreen.inference.training.augment import AugmentConfig, augment, swap_lut
from sarcoscreen.inference.training.datasets import Case, DatasetError, LabelMapping, find_cases, load_case
from sarcoscreen.inference.volume import Volume

__all__ = ["PreparedCase", "TrainingConfig", "TrainingError", "TrainingResult", "prepare_case", "train"]

logger = logging.getLogger(__name__)

Log = Callable[[str], None]
_EMPTY_SLICE_WEIGHT = 0.25
_CHECKPOINT = "checkpoint.pt"


class TrainingError(Exception):
    """Training cannot start or continue; the message says why."""


@dataclass(frozen=True)
class TrainingConfig:
    """Everything that shapes a training run (recorded in the checkpoint and the manifest)."""

    epochs: int = 50
    levels: int = 5
    base_filters: int = 32
    dropout: float = 0.5
    input_size: int = 256
    pixel_spacing_mm: float = 500.0 / 256
    hu_window: tuple[float, float] = (-300.0, 1000.0)
    batch_size: int = 8
    iterations: int | None = None
    """Batches per epoch; default: training slices / batch size."""
    crop_size: int | None = None
    """Train on random square crops of this size (a multiple of 2**(levels-1)), centred on a random labelled pixel
    for 3 of 4 crops: cheaper steps; inference always sees whole slices. None: whole slices."""
    learning_rate: float = 1e-3
    weight_decay: float = 1e-5
    validation_fraction: float = 0.2
    seed: int = 0
    mc_samples: int = 10
    """The bundle's default number of MC samples at inference."""
    validation_samples: int = 2
    """MC samples for the validation after each epoch."""
    validation_mc_samples: int = 5
    """MC samples for the final validation of the best weights (Dice and uncertainty threshold)."""
    augmentation: AugmentConfig = field(default_factory=AugmentConfig)
    threads: int | None = None
    """CPU threads for torch (default: all)."""
    device: str = "auto"
    name: str = "sarcoscreen-unet"
    version: str = "1"
    description: str = ""

    def __post_init__(self) -> None:
        if self.epochs < 1:
            raise TrainingError(f"epochs must be at least 1, got {self.epochs}")
        if self.batch_size < 2:
            raise TrainingError(f"batch size must be at least 2 (batch normalisation), got {self.batch_size}")
        if self.input_size % 2 ** (self.levels - 1):
            raise TrainingError(f"input size {self.input_size} must be a multiple of {2 ** (self.levels - 1)} for "
                                f"{self.levels} levels")
        if self.crop_size is not None and (self.crop_size % 2 ** (self.levels - 1) or
                                           not 0 < self.crop_size <= self.input_size):
            raise TrainingError(f"crop size {self.crop_size} must be a multiple of {2 ** (self.levels - 1)} and at "
                                f"most the input size {self.input_size}")
        if not 0.0 <= self.validation_fraction < 1.0:
            raise TrainingError(f"validation fraction {self.validation_fraction} must be in [0, 1)")

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["hu_window"] = list(self.hu_window)
        return data


@dataclass
class PreparedCase:
    """One case on the model's grid: HU (int16) and catalogue labels (uint8), ``(slices, rows, cols)``."""

    name: str
    images: np.ndarray
    labels: np.ndarray
    synthetic: bool = False


@dataclass(frozen=True)
class TrainingResult:
    manifest: Manifest
    bundle: Path
    history: list[dict[str, Any]]
    seconds: float
    validation_dice: dict[str, float]
    """Structure key -> mean Dice over the validation cases (MC dropout, best epoch)."""


def prepare_case(volume: Volume, labels: np.ndarray, size: tuple[int, int], spacing: tuple[float, float],
                 chunk: int = 32) -> tuple[np.ndarray, np.ndarray]:
    """A case's HU and labels on the model grid (same mapping as inference): int16 and uint8 arrays."""
    frame = axial_frame(volume)
    hu = frame.view(volume.hu)
    lab = frame.view(labels)
    spec = InputSpec(size, spacing, (-1024.0, 3071.0), 0.0, 1.0)
    mapping = PlaneMapping.create(hu.shape[1:], (frame.spacing[1], frame.spacing[2]), spec, body_centre(hu))
    images = np.zeros((hu.shape[0], *size), np.int16)
    out = np.zeros((hu.shape[0], *size), np.uint8)
    for start in range(0, hu.shape[0], chunk):
        stop = min(start + chunk, hu.shape[0])
        x = torch.from_numpy(hu[start:stop].astype(np.float32, order="C"))
        images[start:stop] = mapping.image(x).round().clamp(-32768, 32767).to(torch.int16).numpy()
        y = torch.from_numpy(lab[start:stop].astype(np.int16, order="C"))
        out[start:stop] = mapping.labels(y).to(torch.uint8).numpy()
    return images, out


def _prepare_all(cases: list[Case], mapping: LabelMapping, config: TrainingConfig, work: Path,
                 log: Log) -> list[PreparedCase]:
    folder = work / "prepared"
    folder.mkdir(parents=True, exist_ok=True)
    size = (config.input_size, config.input_size)
    spacing = (config.pixel_spacing_mm, config.pixel_spacing_mm)
    key = json.dumps({"size": size, "spacing": spacing, "mapping": mapping.source}, sort_keys=True)
    prepared = []
    for case in tqdm(cases, desc="preparing cases", unit="case", leave=False, disable=None):
        stem = folder / case.name
        tag = stem.with_suffix(".json")
        if tag.is_file() and tag.read_text() == key and stem.with_suffix(".img.npy").is_file():
            images = np.load(stem.with_suffix(".img.npy"), mmap_mode="r")
            labels = np.load(stem.with_suffix(".lab.npy"), mmap_mode="r")
        else:
            volume, catalogue_labels = load_case(case, mapping)
            images, labels = prepare_case(volume, catalogue_labels, size, spacing)
            np.save(stem.with_suffix(".img.npy"), images)
            np.save(stem.with_suffix(".lab.npy"), labels)
            tag.write_text(key)
            del volume, catalogue_labels
        prepared.append(PreparedCase(case.name, images, labels, case.synthetic))
    log(f"prepared {len(prepared)} cases ({sum(p.images.shape[0] for p in prepared)} slices) on a "
        f"{size[0]} x {size[1]} grid at {spacing[0]:.3g} mm")
    return prepared


def _split(cases: list[Case], fraction: float, seed: int) -> tuple[list[Case], list[Case]]:
    order = list(cases)
    random.Random(seed).shuffle(order)
    n_val = 0 if len(order) < 2 or fraction == 0 else max(1, round(fraction * len(order)))
    validation = sorted(order[:n_val], key=lambda c: c.name)
    training = sorted(order[n_val:], key=lambda c: c.name)
    return training, validation


def _dice_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """1 - mean soft Dice over the foreground classes present in the target or the prediction."""
    p = torch.softmax(logits, dim=1)
    onehot = F.one_hot(target, logits.shape[1]).permute(0, 3, 1, 2).to(p.dtype)
    dims = (0, 2, 3)
    intersection = (p * onehot).sum(dims)
    total = p.sum(dims) + onehot.sum(dims)
    present = (onehot.sum(dims) > 0) | (p.detach().amax(dim=dims) > 0.5)
    present[0] = False
    dice = (2 * intersection + 1.0) / (total + 1.0)
    return 1.0 - dice[present].mean() if present.any() else logits.new_zeros(())


def _dice_per_label(pred: np.ndarray, truth: np.ndarray, label_values: list[int]) -> dict[int, float]:
    """3-D Dice of every label present in `truth` (catalogue values)."""
    pred_count = np.bincount(pred.ravel(), minlength=256)
    true_count = np.bincount(truth.ravel(), minlength=256)
    both = np.bincount(pred[pred == truth].ravel(), minlength=256)
    return {v: float(2 * both[v] / (pred_count[v] + true_count[v])) for v in label_values if v and true_count[v]}


def _crop(images: torch.Tensor, labels: torch.Tensor, size: int,
          generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Random ``size`` x ``size`` crops; 3 of 4 centred on a random labelled pixel (when the slice has any)."""
    b, h, w = labels.shape
    out_images = torch.empty((b, size, size), dtype=images.dtype)
    out_labels = torch.empty((b, size, size), dtype=labels.dtype)
    for i in range(b):
        foreground = torch.nonzero(labels[i])
        if len(foreground) and torch.rand(1, generator=generator).item() < 0.75:
            r, c = foreground[int(torch.randint(len(foreground), (1,), generator=generator))].tolist()
        else:
            r = int(torch.randint(h, (1,), generator=generator))
            c = int(torch.randint(w, (1,), generator=generator))
        r0 = min(max(r - size // 2, 0), h - size)
        c0 = min(max(c - size // 2, 0), w - size)
        out_images[i] = images[i, r0:r0 + size, c0:c0 + size]
        out_labels[i] = labels[i, r0:r0 + size, c0:c0 + size]
    return out_images, out_labels


def _class_lut(label_values: list[int]) -> np.ndarray:
    lut = np.zeros(256, np.int64)
    for i, v in enumerate(label_values):
        lut[v] = i
    return lut


def _validate(model: BayesianUNet, cases: list[PreparedCase], spec: InputSpec, label_values: list[int],
              samples: int, seed: int) -> tuple[dict[str, float], list[float]]:
    """Mean Dice per structure key over the validation cases with MC dropout (as the engine runs), and every
    (case, structure) structure-wise predictive variance."""
    scores: dict[int, list[float]] = {}
    uncertainties: list[float] = []
    for case in cases:
        images = np.asarray(case.images)
        mapping = PlaneMapping.create(images.shape[1:], spec.pixel_spacing_mm, spec)
        prediction = predict_slices(model, images, mapping, spec, label_values, samples=samples, seed=seed,
                                    keep_uncertainty=False)
        for v, d in _dice_per_label(prediction.labels, np.asarray(case.labels), label_values).items():
            scores.setdefault(v, []).append(d)
        uncertainties.extend(prediction.structure_uncertainty().values())
    return {CATALOGUE.by_label(v).key: float(np.mean(d)) for v, d in sorted(scores.items())}, uncertainties


def _normalisation(cases: list[PreparedCase], window: tuple[float, float], seed: int) -> tuple[float, float]:
    rng = np.random.default_rng(seed)
    samples = []
    for case in cases:
        picks = rng.choice(case.images.shape[0], size=min(8, case.images.shape[0]), replace=False)
        samples.append(np.clip(np.asarray(case.images[np.sort(picks)], dtype=np.float32), *window).ravel())
    values = np.concatenate(samples)
    return float(values.mean()), float(max(values.std(), 1.0))


def _resolve_device(name: str) -> torch.device:
    from sarcoscreen.inference.engines.unet import resolve_device

    return resolve_device(name)


def train(data_dir: Path | str, out: Path | str, config: TrainingConfig, *, label_map: Path | str | None = None,
          resume: bool = False, work_dir: Path | str | None = None, log: Log | None = None,
          progress: bool = True) -> TrainingResult:
    """Train on the cases of `data_dir` and write the bundle `out` (a folder, or an archive by its suffix)."""
    started = time.perf_counter()
    say = log or (lambda text: logger.info("%s", text))
    out = Path(out)
    work = Path(work_dir) if work_dir is not None else out.with_name(out.name + ".work")
    work.mkdir(parents=True, exist_ok=True)
    checkpoint_path = work / _CHECKPOINT
    if config.threads:
        torch.set_num_threads(config.threads)
    device = _resolve_device(config.device)

    cases, meta = find_cases(data_dir)
    map_path = label_map or (Path(data_dir) / meta["label_mapping"] if meta.get("label_mapping") else None)
    mapping = LabelMapping.read(map_path) if map_path else LabelMapping()
    state: dict[str, Any] | None = None
    if resume:
        if not checkpoint_path.is_file():
            raise TrainingError(f"nothing to resume: no checkpoint {checkpoint_path}")
        state = torch.load(checkpoint_path, map_location="cpu", weights_only=False)
        saved = state["config"]
        for key in ("levels", "base_filters", "input_size", "pixel_spacing_mm", "dropout"):
            if saved[key] != getattr(config, key):
                raise TrainingError(f"cannot resume: the checkpoint was made with {key} = {saved[key]}, now "
                                    f"{getattr(config, key)}")
        by_name = {c.name: c for c in cases}
        missing = [n for n in (*state["split"]["training"], *state["split"]["validation"]) if n not in by_name]
        if missing:
            raise TrainingError(f"cannot resume: cases {', '.join(missing[:5])} of the checkpoint are not in "
                                f"{data_dir}")
        training_cases = [by_name[n] for n in state["split"]["training"]]
        validation_cases = [by_name[n] for n in state["split"]["validation"]]
    elif any(c.validation for c in cases):
        training_cases = [c for c in cases if not c.validation]
        validation_cases = [c for c in cases if c.validation]
    else:
        training_cases, validation_cases = _split(cases, config.validation_fraction, config.seed)
    if not training_cases:
        raise TrainingError("no training cases")
    say(f"{len(training_cases)} training and {len(validation_cases)} validation cases from {data_dir}")
    train_data = _prepare_all(training_cases, mapping, config, work, say)
    val_data = _prepare_all(validation_cases, mapping, config, work, say) if validation_cases else []

    if state is not None:
        label_values = list(state["label_values"])
        mean, std = state["normalisation"]
    else:
        present = np.zeros(256, bool)
        for case in train_data:
            present[np.unique(np.asarray(case.labels))] = True
        label_values = [0, *(int(v) for v in np.flatnonzero(present) if v)]
        if len(label_values) < 2:
            raise TrainingError("the training labels contain no catalogue structure")
        mean, std = _normalisation(train_data, config.hu_window, config.seed)
    size = (config.input_size, config.input_size)
    spec = InputSpec(size, (config.pixel_spacing_mm, config.pixel_spacing_mm), config.hu_window, mean, std)
    lut = _class_lut(label_values)
    unet_config = UNetConfig(num_classes=len(label_values), levels=config.levels, base_filters=config.base_filters,
                             dropout=config.dropout)
    torch.manual_seed(config.seed)  # reproducible initial weights and dropout masks
    model = BayesianUNet(unet_config).to(device)
    optimiser = torch.optim.Adam(model.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay)
    generator = torch.Generator().manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    history: list[dict[str, Any]] = []
    best_dice, best_epoch, best_state = -1.0, 0, None
    first_epoch = 1
    if state is not None:
        model.load_state_dict(state["model"])
        optimiser.load_state_dict(state["optimiser"])
        generator.set_state(state["generator"])
        rng.bit_generator.state = state["numpy_rng"]
        torch.set_rng_state(state["torch_rng"])
        history = state["history"]
        best_dice, best_epoch, best_state = state["best_dice"], state["best_epoch"], state["best_state"]
        first_epoch = state["epoch"] + 1
        say(f"resuming after epoch {state['epoch']} (best mean Dice {best_dice:.3f} at epoch {best_epoch})")

    # Slice index for sampling: (case, slice) with weights favouring labelled slices.
    index = [(c, k) for c, case in enumerate(train_data) for k in range(case.images.shape[0])]
    weights = np.array([1.0 if np.asarray(train_data[c].labels[k]).any() else _EMPTY_SLICE_WEIGHT
                        for c, k in index])
    weights /= weights.sum()
    iterations = config.iterations or max(1, math.ceil(len(index) / config.batch_size))
    swap = swap_lut(label_values)
    lut_t = torch.from_numpy(lut)

    for epoch in range(first_epoch, config.epochs + 1):
        model.train()
        set_mc_dropout(model, True)
        lr = config.learning_rate * 0.5 * (1.0 + math.cos(math.pi * (epoch - 1) / config.epochs))
        for group in optimiser.param_groups:
            group["lr"] = lr
        losses = []
        epoch_start = time.perf_counter()
        bar = tqdm(range(iterations), desc=f"epoch {epoch}/{config.epochs}", unit="batch", leave=False,
                   disable=not progress)
        for _ in bar:
            picks = rng.choice(len(index), size=config.batch_size, p=weights)
            images = torch.from_numpy(np.stack([np.asarray(train_data[index[i][0]].images[index[i][1]],
                                                           dtype=np.float32) for i in picks]))
            labels = lut_t[torch.from_numpy(np.stack([np.asarray(train_data[index[i][0]].labels[index[i][1]])
                                                      for i in picks]).astype(np.int64))]
            images, labels = augment(images, labels, config.augmentation, generator, swap)
            if config.crop_size is not None:
                images, labels = _crop(images, labels, config.crop_size, generator)
            x = normalise(images, spec).unsqueeze(1).to(device)
            y = labels.to(device)
            logits = model(x)
            loss = F.cross_entropy(logits, y) + _dice_loss(logits, y)
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            optimiser.step()
            losses.append(float(loss.detach()))
            bar.set_postfix(loss=f"{np.mean(losses[-20:]):.3f}")
        bar.close()
        record: dict[str, Any] = {"epoch": epoch, "loss": float(np.mean(losses)), "learning_rate": lr,
                                  "seconds": round(time.perf_counter() - epoch_start, 1)}
        if val_data:
            validation_start = time.perf_counter()
            dice, _ = _validate(model, val_data, spec, label_values, config.validation_samples, config.seed)
            mean_dice = float(np.mean(list(dice.values()))) if dice else 0.0
            record.update(validation_mean_dice=mean_dice, validation_dice=dice,
                          validation_seconds=round(time.perf_counter() - validation_start, 1))
            improved = mean_dice > best_dice
        else:
            mean_dice, improved = float("nan"), True
        if improved:
            best_dice, best_epoch = (mean_dice if val_data else -1.0), epoch
            best_state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
        history.append(record)
        say(f"epoch {epoch}/{config.epochs}: loss {record['loss']:.4f}"
            + (f", validation mean Dice {mean_dice:.3f}{' (best)' if improved else ''}" if val_data else "")
            + f" [{record['seconds']:.0f} s]")
        torch.save({
            "epoch": epoch, "config": config.to_dict(), "model": model.state_dict(),
            "optimiser": optimiser.state_dict(),
            "best_state": best_state, "best_dice": best_dice, "best_epoch": best_epoch, "history": history,
            "label_values": label_values, "normalisation": (mean, std),
            "split": {"training": [c.name for c in training_cases], "validation": [c.name for c in validation_cases]},
            "generator": generator.get_state(), "numpy_rng": rng.bit_generator.state,
            "torch_rng": torch.get_rng_state(),
        }, checkpoint_path.with_suffix(".tmp"))
        checkpoint_path.with_suffix(".tmp").replace(checkpoint_path)

    assert best_state is not None
    model.load_state_dict(best_state)
    model.eval()
    validation_dice: dict[str, float] = {}
    threshold = None
    if val_data:
        validation_dice, uncertainties = _validate(model, val_data, spec, label_values,
                                                   config.validation_mc_samples, config.seed)
        if uncertainties:
            threshold = float(np.percentile(uncertainties, 95))
    synthetic = any(c.synthetic for c in (*train_data, *val_data))
    description = str(meta.get("description") or "")
    if not description:
        description = (f"{len(train_data)} training cases from {Path(data_dir).name}"
                       + (" (SYNTHETIC phantoms)" if synthetic else ""))
    manifest = Manifest(
        name=config.name, version=config.version,
        description=config.description or "Bayesian U-Net (Hiasa et al. 2020) trained with sarcoscreen train",
        created=datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        architecture=unet_config.to_dict(),
        labels=tuple(LabelEntry(i, "background" if v == 0 else CATALOGUE.by_label(v).key, v)
                     for i, v in enumerate(label_values)),
        input=spec,
        training_data=TrainingData(description=description, synthetic=synthetic, cases=len(train_data),
                                   validation_cases=len(val_data), sources=(str(Path(data_dir).name),),
                                   label_mapping=mapping.description or mapping.source,
                                   subjects=int(meta.get("subjects", 0)),
                                   provenance=tuple(str(v) for v in meta.get("provenance", ())),
                                   licences=tuple(str(v) for v in meta.get("licences", ())),
                                   intended_use=str(meta.get("intended_use", ""))),
        weights_sha256="0" * 64, mc_samples=config.mc_samples, uncertainty_measure="variance",
        uncertainty_threshold=threshold,
        training={
            "config": config.to_dict(), "best_epoch": best_epoch, "epochs_run": len(history),
            "validation": {"dice_per_epoch_best": history[best_epoch - 1].get("validation_dice", {}) if val_data
                           else {}, "dice_mc": validation_dice, "mc_samples": config.validation_mc_samples,
                           "uncertainty_threshold_rule": "95th percentile of the structure-wise predictive variance "
                                                         "over the validation cases"},
            "cases": {"training": [c.name for c in training_cases],
                      "validation": [c.name for c in validation_cases]},
            "software": {"torch": torch.__version__, "python": platform.python_version(),
                         "threads": torch.get_num_threads(), "cpu_count": os.cpu_count()},
            "seconds": round(time.perf_counter() - started, 1),
        },
    )
    manifest = save_bundle(model.cpu(), manifest, out)
    (work / "history.json").write_text(json.dumps(history, indent=2) + "\n")
    say(f"bundle written to {out} (best epoch {best_epoch}"
        + (f", validation mean Dice with MC dropout {np.mean(list(validation_dice.values())):.3f}"
           if validation_dice else "") + ")")
    return TrainingResult(manifest, out, history, time.perf_counter() - started, validation_dice)


def config_with(config: TrainingConfig, **changes: Any) -> TrainingConfig:
    """`config` with some fields changed (None values ignored)."""
    return replace(config, **{k: v for k, v in changes.items() if v is not None})


__all__ += ["DatasetError", "config_with"]
