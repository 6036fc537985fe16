"""``sarcoscreen train``: make a Bayesian U-Net model bundle from labelled CT (``sarcoscreen evaluate`` scores it).

Thin glue: options -> `sarcoscreen.inference.training` -> messages. Needs the ``unet`` extra (torch,
safetensors); without it it says so and exits with status 1.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from sarcoscreen.node.commands.command import SubParsers
from sarcoscreen.node.commands.errors import ExitCode, UserError
from sarcoscreen.node.config import Settings

__all__ = ["add_parser", "run"]


def add_parser(commands: SubParsers) -> None:
    parser = commands.add_parser(
        "train", help="Train a Bayesian U-Net model bundle on labelled CT (NIfTI pairs, DICOM + SEG); needs the "
                      "'unet' extra.")
    parser.add_argument("--data", type=Path, required=True,
                        help="Data folder: dataset.json, imagesTr/ + labelsTr/, or one folder per case (NIfTI "
                             "image + labels, or dicom/ + labels.nii.gz or seg.dcm).")
    parser.add_argument("--out", type=Path, required=True,
                        help="The bundle to write: a folder, or an archive ending in .zip or .tar.gz. Checkpoints "
                             "and prepared data go to OUT.work/.")
    parser.add_argument("--label-map", type=Path, metavar="JSON",
                        help="Mapping from the data set's label values / segment names to catalogue keys.")
    parser.add_argument("--epochs", type=int, default=50)
    parser.add_argument("--resume", action="store_true", help="Continue from the checkpoint in OUT.work/.")
    parser.add_argument("--levels", type=int, default=5, help="U-Net levels (default 5, as Hiasa et al.).")
    parser.add_argument("--filters", type=int, default=32, help="Filters at the top level (doubling per level).")
    parser.add_argument("--dropout", type=float, default=0.5, help="Dropout after every block (default 0.5).")
    parser.add_argument("--input-size", type=int, default=256, help="Input rows = columns of the network.")
    parser.add_argument("--pixel-spacing", type=float, default=500.0 / 256, metavar="MM",
                        help="Pixel spacing of the network's input grid (default 500/256 mm: a 500 mm field).")
    parser.add_argument("--hu-window", type=float, nargs=2, default=(-300.0, 1000.0), metavar=("LOW", "HIGH"))
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--iterations", type=int, help="Batches per epoch (default: training slices / batch size).")
    parser.add_argument("--crop-size", type=int, metavar="N",
                        help="Train on random N x N crops of the input (cheaper steps); default whole slices.")
    parser.add_argument("--learning-rate", type=float, default=1e-3)
    parser.add_argument("--validation-fraction", type=float, default=0.2, help="Share of cases held out.")
    parser.add_argument("--mc-samples", type=int, default=10, help="The bundle's default MC samples at inference.")
    parser.add_argument("--validation-samples", type=int, default=2,
                        help="MC samples when validating after each epoch (the final validation uses 5).")
    parser.add_argument("--flip-lr", action="store_true",
                        help="Augment with left-right mirroring (right and left labels are swapped with it).")
    parser.add_argument("--rotation", type=float, default=10.0, metavar="DEG",
                        help="Random in-plane rotation up to +-DEG degrees (default 10).")
    parser.add_argument("--scale", type=float, default=0.10, help="Random isotropic scaling up to +-this fraction.")
    parser.add_argument("--elastic", type=float, default=0.0,
                        help="SD of a smooth random elastic displacement as a fraction of the half field (0: off).")
    parser.add_argument("--hu-offset", type=float, default=15.0, help="Random HU shift up to +-this (default 15).")
    parser.add_argument("--hu-gain", type=float, default=0.05, help="Random HU gain up to +-this fraction.")
    parser.add_argument("--noise-hu", type=float, default=15.0, help="Added Gaussian noise SD up to this (HU).")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    parser.add_argument("--threads", type=int, help="CPU threads for torch (default: all cores).")
    parser.add_argument("--name", default="sarcoscreen-unet", help="Bundle name (manifest).")
    parser.add_argument("--version", dest="bundle_version", default="1", help="Bundle version (manifest).")
    parser.add_argument("--description", default="", help="Bundle description (manifest).")
    parser.add_argument("--no-progress", action="store_true", help="No progress bars.")
    parser.set_defaults(run=run, needs_settings=False)


def run(args: argparse.Namespace, settings: Settings | None) -> int:
    from sarcoscreen.node.progress_bars import wanted

    try:
        from sarcoscreen.inference.engines.base import EngineError
        from sarcoscreen.inference.training.augment import AugmentConfig
        from sarcoscreen.inference.training.datasets import DatasetError
        from sarcoscreen.inference.training.train import TrainingConfig, TrainingError, train
    except ImportError:
        raise UserError("train needs PyTorch and safetensors, which are not installed: install the 'unet' extra "
                        "(pip install 'sarcoscreen[unet]')", ExitCode.FAILED) from None
    try:
        config = TrainingConfig(
            epochs=args.epochs, levels=args.levels, base_filters=args.filters, dropout=args.dropout,
            input_size=args.input_size, pixel_spacing_mm=args.pixel_spacing, hu_window=tuple(args.hu_window),
            batch_size=args.batch_size, iterations=args.iterations, crop_size=args.crop_size,
            learning_rate=args.learning_rate,
            validation_fraction=args.validation_fraction, seed=args.seed, mc_samples=args.mc_samples,
            validation_samples=args.validation_samples,
            augmentation=AugmentConfig(rotation_deg=args.rotation, scale=args.scale, elastic=args.elastic,
                                       hu_gain=args.hu_gain, hu_offset=args.hu_offset, noise_hu=args.noise_hu,
                                       flip_lr=args.flip_lr), threads=args.threads, device=args.device,
            name=args.name, version=args.bundle_version, description=args.description,
        )
        result = train(args.data, args.out, config, label_map=args.label_map, resume=args.resume,
                       log=print, progress=wanted(args.no_progress))
    except (TrainingError, DatasetError, EngineError, ValueError) as exc:
        raise UserError(f"cannot train: {exc}", ExitCode.FAILED) from None
    print(f"bundle {result.bundle}: {result.manifest.num_classes - 1} structures, sha256 "
          f"{result.manifest.weights_sha256[:16]}..., {result.seconds:.0f} s")
    if result.manifest.training_data.synthetic:
        print("note: trained on SYNTHETIC data: the bundle is for testing the software only, never for patients")
    return ExitCode.OK
