"""Bayesian U-Net inference speed and memory on the CPU (or CUDA), at the model's input size.

    .venv/bin/python benchmarks/unet_inference.py                     # default network, 256 px, T = 1 and 10
    .venv/bin/python benchmarks/unet_inference.py --slices 64 --samples 10 --device cuda

Each configuration runs in a fresh interpreter: the default network of the reference study (5 levels, 32
filters, dropout 0.5; random weights - speed does not depend on the weights) segments a synthetic stack of
slices already at the model's size and spacing (so only the network, the MC sampling and the per-slice
statistics are measured, not resampling of 512 x 512 slices) through `predict_slices`, exactly as the engine
does. One slice batch is run first as a warm-up. Reported: slices per second (wall), seconds, and the child's
peak RSS (``ru_maxrss``: interpreter, torch and the outputs included).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time


def _child(args: argparse.Namespace) -> None:
    import numpy as np
    import torch

    from sarcoscreen.inference.engines.unet.inference import predict_slices
    from sarcoscreen.inference.engines.unet.manifest import InputSpec
    from sarcoscreen.inference.engines.unet.model import BayesianUNet, UNetConfig
    from sarcoscreen.inference.engines.unet.preprocess import PlaneMapping

    samples = args.samples[0]
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    torch.manual_seed(0)
    model = BayesianUNet(UNetConfig(num_classes=args.classes)).to(device).eval()
    size = (args.size, args.size)
    spec = InputSpec(size, (500.0 / args.size, 500.0 / args.size), (-300.0, 1000.0), -600.0, 450.0)
    yy, xx = np.mgrid[: args.size, : args.size]
    body = ((yy - args.size / 2) / (0.3 * args.size)) ** 2 + ((xx - args.size / 2) / (0.42 * args.size)) ** 2 < 1
    hu = np.where(body, 40, -1000).astype(np.int16)[None].repeat(args.slices, axis=0)
    mapping = PlaneMapping.create(size, spec.pixel_spacing_mm, spec)
    values = list(range(args.classes))
    warm = max(1, args.batch_images // samples)
    predict_slices(model, hu[:warm], mapping, spec, values, samples=samples, batch_images=args.batch_images,
                   autocast=device.type == "cuda")
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    predict_slices(model, hu, mapping, spec, values, samples=samples, batch_images=args.batch_images,
                   autocast=device.type == "cuda")
    if device.type == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    result = {"samples": samples, "slices": args.slices, "seconds": seconds,
              "slices_per_s": args.slices / seconds, "threads": torch.get_num_threads(),
              "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}
    if device.type == "cuda":
        result["cuda_peak_mib"] = torch.cuda.max_memory_allocated() / 2**20
    print(json.dumps(result))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=256, help="Input rows = columns of the network.")
    parser.add_argument("--classes", type=int, default=51, help="Output labels (background + 50 muscles).")
    parser.add_argument("--slices", type=int, default=16)
    parser.add_argument("--samples", type=int, nargs="+", default=[1, 10], help="MC samples T to measure.")
    parser.add_argument("--batch-images", type=int, default=16)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default).")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        _child(args)
        return
    print(f"machine: {os.cpu_count()} CPUs; network 5 levels, 32 filters, {args.classes} classes, "
          f"{args.size} x {args.size}; batch_images {args.batch_images}; device {args.device}")
    print("| T | slices | seconds | slices/s | slice-samples/s | peak RSS MiB |")
    print("| --- | --- | --- | --- | --- | --- |")
    for samples in args.samples:
        command = [sys.executable, __file__, "--child", "--size", str(args.size), "--classes", str(args.classes),
                   "--slices", str(args.slices), "--samples", str(samples), "--batch-images", str(args.batch_images),
                   "--threads", str(args.threads), "--device", args.device]
        out = subprocess.run(command, stdout=subprocess.PIPE, text=True, check=True).stdout
        result = json.loads(out.strip().splitlines()[-1])
        cuda = f" (CUDA peak {result['cuda_peak_mib']:.0f} MiB)" if "cuda_peak_mib" in result else ""
        print(f"| {samples} | {result['slices']} | {result['seconds']:.1f} | {result['slices_per_s']:.2f} | "
              f"{result['slices_per_s'] * samples:.2f} | {result['peak_rss_mib']:.0f}{cuda} |")


if __name__ == "__main__":
    main()
