"""How long the Bayesian U-Net engine takes for a realistic pelvis series: `BayesianUNetEngine.segment` end to end.

    .venv/bin/python benchmarks/unet_inference_speed.py                       # shipped bundle, CPU, T = 10 vs 1
    .venv/bin/python benchmarks/unet_inference_speed.py --input real          # the real Pelvic-Ref-002 CT instead
    .venv/bin/python benchmarks/unet_inference_speed.py --bundle site.zip --device cuda --batch-images 64

What is timed: `BayesianUNetEngine.segment` (inference/engines/unet/__init__.py) on one series of 150 axial slices
at 3 mm - everything the worker's engine step does: canonical view, in-plane resampling to the bundle's grid and
back, T Monte-Carlo dropout samples per slice batched by ``batch_images``, the mean softmax, the argmax, the voxel
and structure-wise uncertainty. Not timed: loading the bundle (once per worker process) and one warm-up call on
two slices (first-call allocation). The engine is created as the node creates it (``engine.seed`` 0, the
configured defaults), once with T = 1 (the baseline: one sample, no uncertainty) and once with ``--samples``
(default 10, the reference study's T); printed are seconds, seconds per slice, slices per second, T's time as a
multiple of the baseline's, and the process's peak RSS.

The series (``--input``):

* ``simulated`` (default): CT simulated from the real label map of ``../shared/data/pelvic-annotation/
  Pelvic-Ref-001`` (`inference/phantom/realistic/simulate.py`, `simulate_series` with the default protocol: 1 mm
  pixels over the annotation's 512 mm field, 3 mm slices, the measured noise; seed 0), as a `Volume` from
  ``.volume(3.0)``; the middle 150 of its slices. Realistic size and content, no DICOM involved.
* ``real``: the real planning CT ``../shared/data/pelvic-ref-ct/Pelvic-Ref-002/ct`` (512 x 512, 3 mm), loaded
  with the node's loader, the middle 150 of its 163 slices.

Threads: torch uses ``--threads`` (default: every CPU this process may run on, ``os.sched_getaffinity``), and
says so. On a machine shared with other work the figures vary by tens of per cent; run twice.

GPU path: ``--device cuda`` (or ``cuda:N``) runs the same engine on CUDA with float16 autocast (``engine.
mixed_precision``, on by default; the softmax and statistics stay float32). Check it on a machine with an NVIDIA
GPU and the CUDA build of torch (``python -c "import torch; print(torch.cuda.is_available())"`` must print True; a
CPU build says CUDA is not available and the engine refuses ``cuda`` with that message). Raise
``--batch-images`` (64 or more: about 60 MB of activations per 256 x 256 image in float16) so a batch fills the
GPU. What to expect (docs/unet-engine.md, "GPU"; not measured on the development machine, which has no GPU): the
default network is about 25 GFLOP per 256 x 256 slice-sample, so a current GPU does several hundred
slice-samples per second and 150 slices at T = 10 take seconds rather than many minutes; T = 10 then costs well
under 10 times T = 1, because the CPU-side work per slice (moving the slices and the probability maps between
host and GPU, the label and uncertainty maps on the series grid) is the same for every T. The labels agree with
the CPU's up to floating-point rounding (argmax ties can flip single voxels).

The figures belong in docs/benchmarks.md with the bundle (name, version, sha256), the machine, the threads and
the commit; this script records nothing by itself (``--json FILE`` writes the figures for that).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import sys
import time
from pathlib import Path
from typing import Any

PROJECT_ROOT = Path(__file__).resolve().parent.parent
SHARED_DATA = PROJECT_ROOT.parent / "shared" / "data"
ANNOTATION = SHARED_DATA / "pelvic-annotation" / "Pelvic-Ref-001"
REAL_CT = SHARED_DATA / "pelvic-ref-ct" / "Pelvic-Ref-002" / "ct"
SLICE_MM = 3.0


def _series(kind: str, slices: int) -> tuple[Any, str]:
    """The series to segment (a `Volume` of the middle `slices` slices) and a description of it."""
    from sarcoscreen.inference.labelled_ct import slice_volume

    start = time.perf_counter()
    if kind == "simulated":
        from sarcoscreen.inference.phantom.realistic.parameters import SimulationParameters
        from sarcoscreen.inference.phantom.realistic.simulate import simulate_series
        from sarcoscreen.inference.phantom.realistic.source import read_annotation

        if not ANNOTATION.is_dir():
            sys.exit(f"the annotation {ANNOTATION} is not here (../shared/data): use --input real or run where it is")
        volume = simulate_series(read_annotation(ANNOTATION), SimulationParameters(seed=0)).volume(SLICE_MM)
        what = f"CT simulated from {ANNOTATION.name} (inference/phantom/realistic, seed 0)"
    else:
        from sarcoscreen.inference.series_loader import load_series

        if not REAL_CT.is_dir():
            sys.exit(f"the real CT {REAL_CT} is not here (../shared/data): use --input simulated")
        volume = load_series(REAL_CT)
        what = f"real CT {REAL_CT.parent.name}"
    n = volume.shape[0]
    if n < slices:
        sys.exit(f"{what} has {n} slices, fewer than --slices {slices}")
    first = (n - slices) // 2
    volume = slice_volume(volume, first, first + slices)
    rows, columns = volume.shape[1:]
    return volume, (f"{what}: slices {first}..{first + slices - 1} of {n}, {slices} x {rows} x {columns} at "
                    f"{volume.spacing[1]:g} x {volume.spacing[2]:g} x {volume.spacing[0]:g} mm "
                    f"(made in {time.perf_counter() - start:.0f} s)")


def _time_segment(bundle: Path | None, volume: Any, samples: int, args: argparse.Namespace) -> dict[str, Any]:
    """Seconds of one `segment` call with `samples` MC samples (after a 2-slice warm-up)."""
    from sarcoscreen.inference.engines import create_engine
    from sarcoscreen.inference.labelled_ct import slice_volume

    engine = create_engine("bayesian-unet", bundle_path=bundle, device=args.device, mc_samples=samples,
                           batch_images=args.batch_images, keep_voxel_uncertainty=True)
    engine.segment(slice_volume(volume, 0, 2))  # warm-up: first-call allocations, kernels
    start = time.perf_counter()
    segmentation = engine.segment(volume)
    seconds = time.perf_counter() - start
    n = volume.shape[0]
    return {"samples": samples, "slices": n, "seconds": seconds, "seconds_per_slice": seconds / n,
            "slices_per_s": n / seconds, "structures_found": len(segmentation.structure_uncertainty),
            "engine_version": engine.version}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bundle", type=Path, help="Model bundle folder or archive (default: the shipped one).")
    parser.add_argument("--device", default="cpu", help="cpu (default) | cuda | cuda:N | auto")
    parser.add_argument("--input", choices=("simulated", "real"), default="simulated",
                        help="Simulated CT from Pelvic-Ref-001's label map (default) or the real Pelvic-Ref-002 CT.")
    parser.add_argument("--slices", type=int, default=150, help="Slices of the series (the middle ones; default 150).")
    parser.add_argument("--samples", type=int, default=10, help="MC samples T to time against T = 1 (default 10).")
    parser.add_argument("--batch-images", type=int, default=16, help="Images per forward pass (engine default 16).")
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: every CPU available to this process).")
    parser.add_argument("--json", type=Path, metavar="FILE", help="Also write the figures as JSON.")
    args = parser.parse_args()

    import torch

    from sarcoscreen.inference.engines import EngineError
    from sarcoscreen.inference.engines.unet import describe_bundle
    from sarcoscreen.inference.engines.unet.shipped_bundle import shipped_bundle_path

    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    torch.set_num_threads(args.threads or cpus)
    try:
        bundle_path = args.bundle or shipped_bundle_path()
        manifest = describe_bundle(bundle_path)
    except EngineError as exc:
        sys.exit(f"unet_inference_speed: {exc}")
    volume, series = _series(args.input, args.slices)
    arch, spec = manifest.architecture, manifest.input
    print(f"bundle: {manifest.name} {manifest.version} ({bundle_path}{'' if args.bundle else ', shipped'}; sha256 "
          f"{manifest.weights_sha256[:12]}): {arch.get('levels')} levels, {arch.get('base_filters')} filters, "
          f"{manifest.num_classes} classes, input {spec.size[0]} x {spec.size[1]} at {spec.pixel_spacing_mm[0]:g} mm")
    print(f"machine: {platform.processor() or platform.machine()}, {cpus} CPUs available, torch {torch.__version__} "
          f"with {torch.get_num_threads()} threads; device {args.device}; batch_images {args.batch_images}")
    print(f"series: {series}")
    print()
    print("| T | slices | seconds | s per slice | slices/s | x T = 1 |")
    print("| --- | --- | --- | --- | --- | --- |")
    figures = []
    for samples in dict.fromkeys((1, args.samples)):
        try:
            result = _time_segment(args.bundle, volume, samples, args)
        except EngineError as exc:
            sys.exit(f"unet_inference_speed: {exc}")
        result["ratio_to_t1"] = result["seconds"] / figures[0]["seconds"] if figures else 1.0
        figures.append(result)
        print(f"| {samples} | {result['slices']} | {result['seconds']:.1f} | {result['seconds_per_slice']:.3f} | "
              f"{result['slices_per_s']:.2f} | {result['ratio_to_t1']:.2f} |", flush=True)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    cuda = (f", CUDA peak {torch.cuda.max_memory_allocated() / 2**20:.0f} MiB" if args.device.startswith("cuda")
            else "")
    print(f"\npeak RSS {peak:.0f} MiB (interpreter, torch, the series, the simulation){cuda}; engine version "
          f"{figures[0]['engine_version']}")
    if args.json is not None:
        args.json.write_text(json.dumps({
            "bundle": {"name": manifest.name, "version": manifest.version, "sha256": manifest.weights_sha256,
                       "path": str(bundle_path)},
            "series": series, "device": args.device, "threads": torch.get_num_threads(), "cpus": cpus,
            "batch_images": args.batch_images, "peak_rss_mib": peak, "runs": figures,
        }, indent=2) + "\n")
        print(f"json {args.json}")


if __name__ == "__main__":
    main()
