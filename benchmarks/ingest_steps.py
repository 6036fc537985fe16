"""Benchmark: what each step of the node's C-STORE handler costs, one by one, in one process.

    .venv/bin/python benchmarks/ingest_steps.py [--work /tmp] [--instances 400] [--where DIR]
        [--postgres postgresql+psycopg://postgres@127.0.0.1:5432/test]

Where `node_ingest.py` measures the whole node against a bare SCP, this script times the steps of
`StorageSCP._on_c_store` in isolation on real bytes (one 512 x 512 phantom CT instance, re-stamped with a new SOP
Instance UID per repetition), so that a change to one step shows in that step's row:

* ``encode``: `Event.encoded_dataset` - preamble + File Meta Information + the received bytes (pynetdicom);
* ``header``: reading the header of those bytes and the checks of step 1 (`read_header`: the scanner of
  `sarcoscreen.node.received_header`), and ``header, pydicom`` for comparison: the same attributes by
  `pydicom.dcmread` (what `read_header` falls back to for headers the scanner declines);
* ``sha256``: the checksum of the bytes (part of ``spool``, shown on its own);
* ``spool``: `Spool.store` - temporary file, write, fsync, rename, folder fsync, SHA-256;
* ``record``: what the index records, from the header (`instance_from_header`);
* ``index``: `SqlInstanceIndex.add` - one SQL transaction (SQLite in WAL mode; PostgreSQL with ``--postgres``);
* ``bare``: what the bare SCP of `node_ingest.py` does per instance (write the bytes to a file), as the baseline.

Medians in milliseconds per instance over ``--instances`` repetitions. Not part of the test suite.
"""

from __future__ import annotations

import argparse
import copy
import hashlib
import io
import statistics
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from bench_support import write_phantom
from node_bench_support import bench_database
from pydicom import Dataset, dcmread
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_dataset
from pydicom.uid import generate_uid
from pynetdicom.dsutils import encode_file_meta

from sarcoscreen.db.migrate import upgrade
from sarcoscreen.node.instance_index import SqlInstanceIndex, open_index_db
from sarcoscreen.node.received_header import dataset_attributes
from sarcoscreen.node.scp import instance_from_header, read_header
from sarcoscreen.node.spool import Spool


def sample_instance(work: Path) -> Path:
    folder = work / "sarcoscreen-ingest-steps"
    files = sorted((folder / "dicom").glob("*.dcm")) if folder.is_dir() else []
    if not files:
        write_phantom(folder, "--fov", "hip", "--slice-mm", "10", "--matrix", "512", "--seed", "3")
        files = sorted((folder / "dicom").glob("*.dcm"))
    return files[len(files) // 2]


@contextmanager
def timed(row: list[float]) -> Iterator[None]:
    """Appends the milliseconds the block took to `row`."""
    start = time.perf_counter()
    yield
    row.append((time.perf_counter() - start) * 1000.0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=Path("/tmp"))
    parser.add_argument("--instances", type=int, default=400)
    parser.add_argument("--where", type=Path, help="folder for the spool and the SQLite file (default: the system's "
                        "temporary folder)")
    parser.add_argument("--postgres", help="index into this PostgreSQL database (a schema made for the run)")
    args = parser.parse_args()

    source = dcmread(sample_instance(args.work))
    folder = Path(tempfile.mkdtemp(prefix="ingest-steps-", dir=args.where))
    with bench_database(args.postgres, folder / "index.db") as url:
        time_steps(source, folder, url, args.instances, "PostgreSQL" if args.postgres else "SQLite")


def time_steps(source: Dataset, folder: Path, url: str, instances: int, database: str) -> None:
    """The table: each step of the handler timed on `instances` copies of `source`, spool and index in
    `folder` and the database at `url`."""
    upgrade(url)
    engine = open_index_db(url)
    index = SqlInstanceIndex(engine)
    spool = Spool(folder / "spool", folder / "quarantine")
    bare_folder = folder / "bare"
    bare_folder.mkdir()

    # Each repetition gets its own SOP Instance UID (new file, new row): the data set as a C-STORE carries it.
    payloads = []
    for _ in range(instances):
        source.SOPInstanceUID = generate_uid()
        source.file_meta.MediaStorageSOPInstanceUID = source.SOPInstanceUID
        stream = DicomBytesIO()
        stream.is_little_endian, stream.is_implicit_VR = True, False
        write_dataset(stream, source)
        payloads.append((source.SOPInstanceUID, copy.deepcopy(source.file_meta), stream.getvalue()))

    rows: dict[str, list[float]] = {name: [] for name in (
        "bare", "encode", "header", "header, pydicom", "sha256", "spool", "record", "index")}
    for sop_uid, file_meta, dataset in payloads:
        with timed(rows["encode"]):
            encoded = b"".join((b"\x00" * 128, b"DICM", encode_file_meta(file_meta), dataset))
        with timed(rows["bare"]):
            (bare_folder / f"{sop_uid}.dcm").write_bytes(encoded)
        with timed(rows["header"]):
            header = read_header(encoded, str(source.SOPClassUID), sop_uid)
        with timed(rows["header, pydicom"]):
            dataset_attributes(dcmread(io.BytesIO(encoded), stop_before_pixels=True))
        with timed(rows["sha256"]):
            hashlib.sha256(encoded).hexdigest()
        with timed(rows["spool"]):
            stored = spool.store(encoded, header.series_instance_uid, sop_uid)
        with timed(rows["record"]):
            instance = instance_from_header(
                header, sop_class=header.sop_class_uid, sop_instance=sop_uid, relative_path=stored.relative_path,
                size=stored.size, sha256=stored.sha256, calling_ae_title="SCANNER", duplicate=stored.duplicate)
        with timed(rows["index"]):
            index.add(instance)

    total = sum(statistics.median(rows[name]) for name in ("encode", "header", "spool", "record", "index"))
    print(f"{instances} instances of {len(payloads[0][2]) / 1024:.0f} KiB; spool and database in {folder.parent}; "
          f"database {database}\n")
    print("| step | median ms | p90 ms |")
    print("| --- | --- | --- |")
    for name, values in rows.items():
        ordered = sorted(values)
        print(f"| {name} | {statistics.median(ordered):.3f} | {ordered[int(len(ordered) * 0.9)]:.3f} |")
    print(f"| node's handler, sum of medians | {total:.3f} | |")
    engine.dispose()


if __name__ == "__main__":
    main()
