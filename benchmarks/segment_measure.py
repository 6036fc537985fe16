"""Benchmark: the threshold engine's segmentation and the measurement on a 600-slice 512 x 512 phantom.

    .venv/bin/python benchmarks/segment_measure.py [--slice-mm 1.5] [--work /tmp]

Writes (or reuses, cached under ``--work``) a hip phantom (`sarcoscreen phantom --matrix 512`, 1.5 mm slices:
about 600 slices), then runs in separate subprocesses, one after the other:

* ``load``      - ``load_series`` only: the fixed cost every engine pays, and the memory floor;
* ``baseline``  - load, then the crudest muscle measure: voxels in the HU window anywhere in the body, counted
  with numpy (no anatomy at all) - what the engine's anatomy costs is measured against it;
* ``threshold`` - load, ``ThresholdEngine().segment`` and ``measure`` (structures, groups, SMI, screening).

Wall seconds are timed inside each child around each step (imports and loading excluded from the step times);
peak RSS is the child's ``ru_maxrss`` from ``os.wait4`` (interpreter, imports and the loaded volume included).
Not part of the test suite.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

from bench_support import ensure_made, measure_child


def make_phantom(folder: Path, slice_mm: float) -> None:
    from sarcoscreen.inference.phantom import PhantomParameters
    from sarcoscreen.inference.phantom import make_phantom as make

    ensure_made(folder, str(slice_mm), lambda: make(PhantomParameters(matrix=512, slice_mm=slice_mm, seed=1), folder))


def child(mode: str, folder: Path) -> None:
    """Runs in the measured subprocess; prints one JSON line of step times."""
    import numpy as np

    from sarcoscreen.inference.density import DensityRule
    from sarcoscreen.inference.engines.threshold import ThresholdEngine
    from sarcoscreen.inference.height import choose_height
    from sarcoscreen.inference.measure import measure
    from sarcoscreen.inference.series_loader import load_series

    times: dict[str, float] = {}
    start = time.perf_counter()
    volume = load_series(folder / "dicom")
    times["load"] = time.perf_counter() - start
    if mode == "baseline":
        start = time.perf_counter()
        voxels = 0
        for k in range(0, volume.shape[0], 32):
            slab = volume.hu[k:k + 32]
            voxels += int(np.count_nonzero((slab >= -29) & (slab <= 150)))
        times["window count"] = time.perf_counter() - start
    elif mode == "threshold":
        start = time.perf_counter()
        segmentation = ThresholdEngine().segment(volume)
        times["segment"] = time.perf_counter() - start
        start = time.perf_counter()
        measure(volume, segmentation, DensityRule(), choose_height(None, volume.info.patient_size_m, None))
        times["measure"] = time.perf_counter() - start
    print(json.dumps({"times": times, "shape": list(volume.shape)}))


def run(mode: str, folder: Path) -> dict:
    return measure_child(__file__, [mode, "--folder", str(folder)], mode)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--slice-mm", type=float, default=1.5)
    parser.add_argument("--work", type=Path, default=Path("/tmp"))
    parser.add_argument("--child", choices=["load", "baseline", "threshold"], help=argparse.SUPPRESS)
    parser.add_argument("--folder", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.folder)
        return
    folder = args.work / f"sarcoscreen-bench-phantom-{args.slice_mm:g}"
    started = time.perf_counter()
    make_phantom(folder, args.slice_mm)
    print(f"phantom: {folder} (ready in {time.perf_counter() - started:.1f} s)")
    for path in (folder / "dicom").glob("*.dcm"):  # warm the page cache
        path.read_bytes()
    results = {mode: run(mode, folder) for mode in ("load", "baseline", "threshold")}
    shape = results["load"]["shape"]
    print(f"volume {shape[0]} x {shape[1]} x {shape[2]}; cpus: {os.cpu_count()}; python {sys.version.split()[0]}")
    baseline = results["baseline"]["times"]["window count"]
    for mode, result in results.items():
        steps = ", ".join(f"{name} {seconds:.2f} s" for name, seconds in result["times"].items())
        print(f"{mode:10s} peak RSS {result['peak_rss_mib']:6.0f} MiB   {steps}")
    threshold = results["threshold"]["times"]
    work = threshold["segment"] + threshold["measure"]
    print(f"segment + measure: {work:.2f} s = {work / baseline:.1f} x the window count; peak RSS "
          f"{results['threshold']['peak_rss_mib'] / 1024:.2f} GiB "
          f"({results['threshold']['peak_rss_mib'] / results['load']['peak_rss_mib']:.2f} x loading alone)")


if __name__ == "__main__":
    main()
