"""Evaluating a bundle: Dice and volume error per structure on a data folder, through the real engine.

Every case is segmented by `BayesianUNetEngine` exactly as ``sarcoscreen analyze`` would (full resolution,
MC dropout, the bundle's preprocessing) and compared with its reference labels voxel by voxel on the series'
own grid:

* Dice = 2 |A n B| / (|A| + |B|) per structure and case;
* volume error = (predicted voxels - reference voxels) / reference voxels, in percent (signed);
* the structure-wise uncertainty the engine reported;
* per muscle (both sides pooled): the mean Dice, next to the reference study's mean over its 19 muscles
  (`REFERENCE_MEAN_DICE`; Hiasa et al. report per-muscle figures too, which are not reproduced here);
* per group of the reference study (gluteal, above knee, all) and side: the volume error of the sum of its
  member muscles that the bundle produces;
* whether the structure-wise uncertainty ranks the poorly segmented structures: Spearman's rank correlation of
  uncertainty against 1 - Dice over every (case, structure).

Structures are scored on the cases whose reference has them; a structure the engine predicts in a case whose
reference lacks it is listed as a false positive (voxels).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from sarcoscreen.inference.catalogue import CATALOGUE, Group, Kind
from sarcoscreen.inference.engines.unet import BayesianUNetEngine
from sarcoscreen.inference.engines.unet.manifest import SYNTHETIC_WARNING
from sarcoscreen.inference.training.datasets import LabelMapping, find_cases, load_case

__all__ = ["REFERENCE_MEAN_DICE", "CaseScore", "Evaluation", "GroupVolume", "StructureScore", "evaluate_bundle",
           "format_evaluation"]

REFERENCE_MEAN_DICE = 0.891
"""Hiasa et al., IEEE TMI 39(4), 2020: Dice 0.891 +- 0.016 (mean +- SD) over 19 muscles, 20 CTs, cross-validated."""


@dataclass(frozen=True)
class CaseScore:
    case: str
    key: str
    dice: float
    reference_voxels: int
    predicted_voxels: int
    uncertainty: float | None

    @property
    def volume_error_pct(self) -> float:
        return 100.0 * (self.predicted_voxels - self.reference_voxels) / self.reference_voxels


@dataclass(frozen=True)
class StructureScore:
    key: str
    name: str
    cases: int
    dice_mean: float
    dice_min: float
    volume_error_pct_mean: float
    abs_volume_error_pct_mean: float
    uncertainty_mean: float | None


@dataclass(frozen=True)
class Evaluation:
    bundle: str
    cases: tuple[str, ...]
    scores: tuple[CaseScore, ...]
    false_positives: tuple[tuple[str, str, int], ...]
    """(case, structure key, voxels) predicted where the reference has no such structure."""
    notes: tuple[str, ...] = ()

    def structures(self) -> tuple[StructureScore, ...]:
        by_key: dict[str, list[CaseScore]] = {}
        for score in self.scores:
            by_key.setdefault(score.key, []).append(score)
        out = []
        for key in sorted(by_key, key=lambda k: CATALOGUE.by_key(k).label):
            rows = by_key[key]
            uncertain = [r.uncertainty for r in rows if r.uncertainty is not None]
            out.append(StructureScore(
                key, CATALOGUE.by_key(key).name, len(rows), float(np.mean([r.dice for r in rows])),
                float(np.min([r.dice for r in rows])), float(np.mean([r.volume_error_pct for r in rows])),
                float(np.mean([abs(r.volume_error_pct) for r in rows])),
                float(np.mean(uncertain)) if uncertain else None,
            ))
        return tuple(out)

    def muscle_dice(self) -> dict[str, float]:
        """Anatomy key -> mean Dice over every case and side, for the muscles (catalogue order)."""
        pooled: dict[str, list[float]] = {}
        for score in self.scores:
            structure = CATALOGUE.by_key(score.key)
            if structure.anatomy.kind is Kind.MUSCLE:
                pooled.setdefault(structure.anatomy.key, []).append(score.dice)
        order = sorted(pooled, key=lambda k: min(s.label for s in CATALOGUE if s.anatomy.key == k))
        return {k: float(np.mean(pooled[k])) for k in order}

    def group_volumes(self) -> tuple[GroupVolume, ...]:
        return _group_volumes(self.scores)

    def uncertainty_rank_correlation(self) -> tuple[float, float, int] | None:
        """Spearman's rho and p of structure-wise uncertainty against 1 - Dice over every (case, structure) with an
        uncertainty, and their number; None with fewer than 3."""
        pairs = [(s.uncertainty, 1.0 - s.dice) for s in self.scores if s.uncertainty is not None]
        if len(pairs) < 3:
            return None
        from scipy.stats import spearmanr

        result = spearmanr([u for u, _ in pairs], [e for _, e in pairs])
        return float(result.statistic), float(result.pvalue), len(pairs)

    def mean_dice(self, keys: Iterable[str] | None = None) -> float:
        """Mean over structures (each the mean over its cases) of the Dice, optionally of `keys` only."""
        wanted = None if keys is None else set(keys)
        values = [s.dice_mean for s in self.structures() if wanted is None or s.key in wanted]
        return float(np.mean(values)) if values else float("nan")


@dataclass(frozen=True)
class GroupVolume:
    """One group of the reference study on one side of one case: its member muscles' voxels summed."""

    case: str
    group: str
    side: str
    reference_voxels: int
    predicted_voxels: int

    @property
    def error_pct(self) -> float:
        return 100.0 * (self.predicted_voxels - self.reference_voxels) / self.reference_voxels


def _group_volumes(scores: Iterable[CaseScore]) -> tuple[GroupVolume, ...]:
    by_case: dict[str, dict[str, CaseScore]] = {}
    for score in scores:
        by_case.setdefault(score.case, {})[score.key] = score
    out = []
    for case, rows in by_case.items():
        for group in (Group.GLUTEAL, Group.ABOVE_KNEE, Group.ALL):
            for side in ("right", "left"):
                members = [s.key for s in CATALOGUE.group_members(group)
                           if s.side.value == side and s.anatomy.kind is Kind.MUSCLE and s.key in rows]
                if members:
                    out.append(GroupVolume(case, group.value, side, sum(rows[k].reference_voxels for k in members),
                                           sum(rows[k].predicted_voxels for k in members)))
    return tuple(out)


def _dice(pred: np.ndarray, truth: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    pred_count = np.zeros(256, np.int64)
    true_count = np.zeros(256, np.int64)
    both = np.zeros(256, np.int64)
    for start in range(0, pred.shape[0], 32):
        p, t = pred[start:start + 32], truth[start:start + 32]
        pred_count += np.bincount(p.ravel(), minlength=256)
        true_count += np.bincount(t.ravel(), minlength=256)
        both += np.bincount(p[p == t].ravel(), minlength=256)
    return pred_count, true_count, both


def evaluate_bundle(bundle: Path | str, data_dir: Path | str, *, label_map: Path | str | None = None,
                    device: str = "auto", mc_samples: int | None = None, seed: int | None = 0,
                    batch_images: int = 16, progress: Callable[[str, int, int], None] | None = None) -> Evaluation:
    """Segment every case of `data_dir` with the bundle and score it against its labels."""
    engine = BayesianUNetEngine(bundle, device=device, mc_samples=mc_samples, seed=seed, batch_images=batch_images,
                                keep_voxel_uncertainty=False)
    cases, meta = find_cases(data_dir)
    map_path = label_map or (Path(data_dir) / meta["label_mapping"] if meta.get("label_mapping") else None)
    mapping = LabelMapping.read(map_path) if map_path else LabelMapping()
    produced = {s.label for s in engine.structures()}
    scores: list[CaseScore] = []
    false_positives: list[tuple[str, str, int]] = []
    for number, case in enumerate(cases):
        if progress is not None:
            progress("cases", number, len(cases))
        volume, truth = load_case(case, mapping)
        segmentation = engine.segment(volume)
        pred_count, true_count, both = _dice(segmentation.labels, truth)
        for value in sorted(produced):
            key = CATALOGUE.by_label(value).key
            if true_count[value]:
                scores.append(CaseScore(
                    case.name, key, float(2 * both[value] / (pred_count[value] + true_count[value])),
                    int(true_count[value]), int(pred_count[value]), segmentation.structure_uncertainty.get(key)))
            elif pred_count[value]:
                false_positives.append((case.name, key, int(pred_count[value])))
    if progress is not None:
        progress("cases", len(cases), len(cases))
    notes = (f"WARNING: {SYNTHETIC_WARNING}",) if engine.manifest.training_data.synthetic else ()
    return Evaluation(str(bundle), tuple(c.name for c in cases), tuple(scores), tuple(false_positives), notes)


def format_evaluation(evaluation: Evaluation) -> str:
    """The evaluation as a text table."""
    lines = [f"bundle {evaluation.bundle}: {len(evaluation.cases)} cases", *evaluation.notes, "",
             f"{'structure':40s} {'cases':>5s} {'Dice':>6s} {'min':>6s} {'vol err %':>9s} {'|vol err| %':>11s} "
             f"{'uncert.':>8s}"]
    for s in evaluation.structures():
        uncertainty = "" if s.uncertainty_mean is None else f"{s.uncertainty_mean:.4f}"
        lines.append(f"{s.name[:40]:40s} {s.cases:5d} {s.dice_mean:6.3f} {s.dice_min:6.3f} "
                     f"{s.volume_error_pct_mean:+9.1f} {s.abs_volume_error_pct_mean:11.1f} {uncertainty:>8s}")
    lines.append("")
    lines.append(f"mean Dice over structures: {evaluation.mean_dice():.3f}")
    muscles = evaluation.muscle_dice()
    if muscles:
        lines += ["", f"{'muscle (both sides)':40s} {'Dice':>6s}"]
        names = {s.anatomy.key: s.anatomy.name for s in CATALOGUE}
        lines += [f"{names[k][:40]:40s} {d:6.3f}" for k, d in muscles.items()]
        lines.append(f"mean Dice over {len(muscles)} muscles: {np.mean(list(muscles.values())):.3f} (reference "
                     f"study: {REFERENCE_MEAN_DICE} over 19 muscles, 20 training CTs)")
    groups = evaluation.group_volumes()
    if groups:
        lines += ["", f"{'group volume (member muscles)':30s} {'case':>20s} {'side':>6s} {'ref. voxels':>13s} "
                  f"{'error %':>8s}"]
        for g in groups:
            lines.append(f"{g.group:30s} {g.case[:20]:>20s} {g.side:>6s} {g.reference_voxels:13d} {g.error_pct:+8.1f}")
    rank = evaluation.uncertainty_rank_correlation()
    if rank is not None:
        lines.append("")
        lines.append(f"uncertainty vs 1 - Dice: Spearman rho {rank[0]:+.2f} (p {rank[1]:.2g}, {rank[2]} structures)")
    if evaluation.false_positives:
        lines.append(f"predicted but not in the reference: {len(evaluation.false_positives)} (case, structure) "
                     f"pairs, {sum(v for _, _, v in evaluation.false_positives)} voxels")
    return "\n".join(lines)
