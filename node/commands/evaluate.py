"""``sarcoscreen evaluate``: Dice and volume error per structure of a Bayesian U-Net model bundle on labelled CT
(`sarcoscreen.inference.training.evaluate`), optionally every score as JSON. Needs the ``unet`` extra (torch,
safetensors); without it it says so and exits with status 1.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict
from pathlib import Path

from sarcoscreen.node.commands.command import SubParsers
from sarcoscreen.node.commands.errors import ExitCode, UserError
from sarcoscreen.node.config import Settings

__all__ = ["add_parser", "run"]


def add_parser(commands: SubParsers) -> None:
    parser = commands.add_parser(
        "evaluate", help="Dice and volume error per structure of a model bundle on labelled CT.")
    parser.add_argument("--bundle", type=Path, required=True, help="Model bundle folder or archive.")
    parser.add_argument("--data", type=Path, required=True, help="Data folder (same layouts as train).")
    parser.add_argument("--label-map", type=Path, metavar="JSON", help="Label mapping file.")
    parser.add_argument("--mc-samples", type=int, help="MC samples (default: the bundle's).")
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    parser.add_argument("--seed", type=int, default=0, help="Seed of the dropout masks.")
    parser.add_argument("--json", type=Path, metavar="FILE", help="Also write every score as JSON.")
    parser.set_defaults(run=run, needs_settings=False)


def run(args: argparse.Namespace, settings: Settings | None) -> int:
    try:
        from sarcoscreen.inference.engines.base import EngineError
        from sarcoscreen.inference.training.datasets import DatasetError
        from sarcoscreen.inference.training.evaluate import evaluate_bundle, format_evaluation
    except ImportError:
        raise UserError("evaluate needs PyTorch and safetensors, which are not installed: install the 'unet' extra "
                        "(pip install 'sarcoscreen[unet]')", ExitCode.FAILED) from None
    try:
        evaluation = evaluate_bundle(args.bundle, args.data, label_map=args.label_map, device=args.device,
                                     mc_samples=args.mc_samples, seed=args.seed)
    except (DatasetError, EngineError) as exc:
        raise UserError(f"cannot evaluate: {exc}", ExitCode.FAILED) from None
    print(format_evaluation(evaluation))
    if args.json is not None:
        args.json.write_text(json.dumps({
            "bundle": evaluation.bundle, "cases": list(evaluation.cases),
            "structures": [asdict(s) for s in evaluation.structures()],
            "scores": [{**asdict(s), "volume_error_pct": s.volume_error_pct} for s in evaluation.scores],
            "false_positives": [list(f) for f in evaluation.false_positives],
            "mean_dice": evaluation.mean_dice(),
        }, indent=2) + "\n")
        print(f"json      {args.json}")
    return ExitCode.OK
