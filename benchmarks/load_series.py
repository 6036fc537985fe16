"""Benchmark: `load_series` against plain pydicom on a synthetic 512 x 512 int16 CT series.

    .venv/bin/python benchmarks/load_series.py [--slices 600] [--work /tmp]

Writes (or reuses, cached under ``--work``) a series of ``--slices`` uncompressed single-frame CT files (signed
16-bit stored values, intercept -1024, an elliptical body with fat, muscle and bone), then runs in separate
subprocesses, one after the other:

* ``imports``  - the interpreter with numpy, pydicom and the loader imported, nothing loaded (fixed overhead);
* ``baseline`` - ``np.stack([pydicom.dcmread(f).pixel_array for f in files])`` (stored values, file-name order);
* ``loader``   - ``load_series(folder)`` (HU, sorted and validated).

Wall seconds are measured inside each child around the work (imports excluded); peak RSS is the child's
``ru_maxrss`` from ``os.wait4``. Ratios are to the baseline and to the int16 volume (slices x 512 x 512 x 2
bytes). Not part of the test suite.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

from bench_support import ensure_made, measure_child

SIZE = 512


def write_series(folder: Path, slices: int) -> None:
    """The synthetic series, unless `folder` already holds a complete one (marker file)."""
    ensure_made(folder, str(slices), lambda: _write_series(folder, slices))


def _write_series(folder: Path, slices: int) -> None:
    import numpy as np
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

    folder.mkdir(parents=True, exist_ok=True)
    for stale in folder.glob("*.dcm"):
        stale.unlink()
    rng = np.random.default_rng(0)
    ii, jj = np.mgrid[:SIZE, :SIZE]
    study, series, frame = generate_uid(), generate_uid(), generate_uid()
    for k in range(slices):
        phase = k / max(slices - 1, 1)
        a, b = 180 + 40 * np.sin(np.pi * phase), 130 + 20 * np.sin(np.pi * phase)
        body = ((ii - 256) / b) ** 2 + ((jj - 256) / a) ** 2
        hu = np.full((SIZE, SIZE), -1000, np.int16)
        hu[body <= 1] = -100  # subcutaneous fat
        hu[body <= 0.7] = 50  # muscle
        bone = ((ii - 300) / 20) ** 2 + ((jj - 256 - 90 * np.cos(phase * 3)) / 25) ** 2 <= 1
        hu[bone] = 700
        hu += rng.integers(-20, 21, size=hu.shape, dtype=np.int16)
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID = CTImageStorage, generate_uid()
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds = Dataset()
        ds.file_meta = meta
        ds.SOPClassUID, ds.SOPInstanceUID = CTImageStorage, meta.MediaStorageSOPInstanceUID
        ds.Modality, ds.ImageType = "CT", ["ORIGINAL", "PRIMARY", "AXIAL"]
        ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.FrameOfReferenceUID = study, series, frame
        ds.InstanceNumber = slices - k
        ds.ImagePositionPatient = [-250.0, -250.0, -100.0 - 1.25 * k]
        ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
        ds.PixelSpacing, ds.SliceThickness = [0.9765625, 0.9765625], 1.25
        ds.Rows = ds.Columns = SIZE
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
        ds.RescaleIntercept, ds.RescaleSlope = -1024, 1
        ds.PixelData = (hu + 1024).astype(np.int16).tobytes()
        ds.save_as(folder / f"IM{k:05d}.dcm", enforce_file_format=True)


def child(mode: str, folder: Path) -> None:
    """Runs in the measured subprocess; prints one JSON line."""
    import numpy as np
    import pydicom

    from sarcoscreen.inference.series_loader import load_series

    start = time.perf_counter()
    if mode == "baseline":
        files = sorted(folder.glob("*.dcm"))
        array = np.stack([pydicom.dcmread(f).pixel_array for f in files])
        shape, dtype = array.shape, str(array.dtype)
    elif mode == "loader":
        volume = load_series(folder)
        shape, dtype = volume.shape, str(volume.hu.dtype)
    else:
        shape, dtype = (), ""
    print(json.dumps({"seconds": time.perf_counter() - start, "shape": list(shape), "dtype": dtype}))


def measure(mode: str, folder: Path) -> dict[str, float | str | list[int]]:
    """Run `child(mode)` in a fresh interpreter; its own peak RSS comes from os.wait4."""
    return measure_child(__file__, [mode, "--folder", str(folder)], mode)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--slices", type=int, default=600)
    parser.add_argument("--work", type=Path, default=Path("/tmp"), help="where the synthetic series is cached")
    parser.add_argument("--child", choices=["imports", "baseline", "loader"], help=argparse.SUPPRESS)
    parser.add_argument("--folder", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.folder)
        return
    folder = args.work / f"sarcoscreen-bench-ct-{args.slices}"
    started = time.perf_counter()
    write_series(folder, args.slices)
    print(f"series: {folder} ({args.slices} x {SIZE} x {SIZE}, ready in {time.perf_counter() - started:.1f} s)")
    for path in folder.glob("*.dcm"):  # warm the page cache so both readers start equal
        path.read_bytes()
    volume_mib = args.slices * SIZE * SIZE * 2 / 2**20
    results = {mode: measure(mode, folder) for mode in ("imports", "baseline", "loader")}
    base = results["baseline"]
    print(f"int16 volume: {volume_mib:.0f} MiB; cpus: {os.cpu_count()}; python {sys.version.split()[0]}")
    print(f"{'':10s} {'wall s':>8s} {'peak RSS MiB':>13s} {'RSS/volume':>11s} {'time/base':>10s} {'RSS/base':>9s}"
          "  output")
    for mode, r in results.items():
        seconds, rss = float(r["seconds"]), float(r["peak_rss_mib"])
        output = f"{r['dtype']} {tuple(r['shape'])}" if r["dtype"] else "-"
        print(f"{mode:10s} {seconds:8.2f} {rss:13.0f} {rss / volume_mib:11.2f} "
              f"{seconds / float(base['seconds']):10.2f} {rss / float(base['peak_rss_mib']):9.2f}  {output}")


if __name__ == "__main__":
    main()
