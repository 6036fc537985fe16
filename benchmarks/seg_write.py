"""Benchmark: DICOM-SEG write time and file size for a ~600-slice phantom with every structure labelled.

    .venv/bin/python benchmarks/seg_write.py [--work /tmp] [--slice-mm 1.5] [--matrix 512]

Makes (or reuses, cached under ``--work``) the digital phantom's hip CT (``sarcoscreen phantom --fov hip``: from
above the iliac crest to below the ankle; 1.5 mm slices give about 600 slices) and its exact per-muscle label map,
loads both as ``sarcoscreen analyze --labels`` does, then writes the SEG once per configuration, each in its own
fresh interpreter (so one configuration's memory does not carry into the next):

* BINARY, uncompressed (the default) and JPEG 2000 lossless;
* LABELMAP, uncompressed, RLE lossless and JPEG 2000 lossless.

Empty frames are omitted (the default). Reported per configuration: seconds to build the data set with highdicom
(``build_seg``: segment descriptions, frame encoding, per-frame functional groups), seconds to write the file,
the number of frames, the file size, and the child's peak RSS (``ru_maxrss`` from ``os.wait4``; it includes the
loaded CT volume and label map). Not part of the test suite.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from bench_support import ensure_made, measure_child, write_phantom

CONFIGURATIONS = (
    ("binary", "none"),
    ("binary", "jpeg2000"),
    ("labelmap", "none"),
    ("labelmap", "rle"),
    ("labelmap", "jpeg2000"),
)


def make_phantom(folder: Path, slice_mm: float, matrix: int) -> None:
    """The phantom, unless `folder` already holds one made with these parameters (marker file)."""
    ensure_made(folder, f"{slice_mm} {matrix}",
                lambda: write_phantom(folder, "--fov", "hip", "--slice-mm", str(slice_mm), "--matrix", str(matrix)))


def child(folder: Path, seg_type: str, compression: str, out: Path) -> dict[str, float | int]:
    """Run in a fresh interpreter: load, build the SEG, write it; report the numbers as JSON."""
    from sarcoscreen.inference.engines.labelmap import LabelMapEngine
    from sarcoscreen.inference.series_loader import load_series
    from sarcoscreen.reports.dicom_uids import output_uids, source_identity
    from sarcoscreen.reports.seg import SegCompression, SegOptions, SegType, build_seg, produced_structures
    from sarcoscreen.reports.source_attributes import read_source_instances

    volume = load_series(folder / "dicom")
    segmentation = LabelMapEngine(path=folder / "labels.nii.gz").segment(volume)
    source = read_source_instances(folder / "dicom", volume)
    uids = output_uids("2.25", source_identity(source.series_instance_uid, []), "labelmap", "1", "benchmark")
    start = time.perf_counter()
    seg, segments = build_seg(source, volume, segmentation, series_instance_uid=uids.seg_series,
                              sop_instance_uid=uids.seg_instance,
                              tracking_uids={s.key: uids.tracking_uid(s.key) for s in segmentation.structures},
                              options=SegOptions(SegType(seg_type), SegCompression(compression)))
    built = time.perf_counter()
    seg.save_as(out)
    written = time.perf_counter()
    return {
        "slices": volume.shape[0], "rows": volume.shape[1], "columns": volume.shape[2],
        "structures": len(produced_structures(segmentation)), "segments": len(segments),
        "frames": int(seg.NumberOfFrames), "build_s": built - start, "write_s": written - built,
        "bytes": out.stat().st_size,
    }


def run(folder: Path, seg_type: str, compression: str, out: Path) -> dict[str, float | int]:
    return measure_child(__file__, [str(folder), seg_type, compression, str(out)], f"{seg_type}/{compression}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=Path("/tmp"))
    parser.add_argument("--slice-mm", type=float, default=1.5)
    parser.add_argument("--matrix", type=int, default=512)
    parser.add_argument("--child", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        folder, seg_type, compression, out = args.child
        print(json.dumps(child(Path(folder), seg_type, compression, Path(out))))
        return
    folder = args.work / f"sarcoscreen-seg-benchmark-{args.slice_mm}-{args.matrix}"
    make_phantom(folder, args.slice_mm, args.matrix)
    print("| SEG | transfer syntax | frames | build s | write s | file MiB | peak RSS MiB |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for seg_type, compression in CONFIGURATIONS:
        result = run(folder, seg_type, compression, folder / f"seg-{seg_type}-{compression}.dcm")
        print(f"| {seg_type.upper()} | {compression} | {result['frames']} | {result['build_s']:.1f} | "
              f"{result['write_s']:.1f} | {result['bytes'] / 2**20:.1f} | {result['peak_rss_mib']:.0f} |",
              flush=True)
    print(f"\n{result['slices']} slices of {result['rows']} x {result['columns']}, "
          f"{result['structures']} structures labelled")


if __name__ == "__main__":
    main()
