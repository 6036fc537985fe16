"""The files a done job left in its output folder, found from the database, never from what a request says.

The worker writes a job's files into ``<storage.outputs>/<SeriesInstanceUID>/job-<id>/`` (`sarcoscreen.node.worker`):
``overlay.png``, ``measurements.json`` and the DICOM outputs, whose ``outputs.path`` rows are relative to
``storage.outputs``. `job_folder` takes the folder from those rows (the layout, from the series' UID in the
database, when the job has none), refuses any folder outside ``storage.outputs``, and says when retention deleted
it (``outputs.purged_at``). The landmarks are not in the database: `landmarks` reads them from
``measurements.json``.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from sarcoscreen.db.models import Job, JobStatus, Output, Series

__all__ = ["OVERLAY", "JobFolder", "Landmark", "job_folder", "landmarks"]

OVERLAY = "overlay.png"
MEASUREMENTS = "measurements.json"
_UID = re.compile(r"^[0-9]+(\.[0-9]+)*$")


@dataclass(frozen=True)
class JobFolder:
    """Where a done job's files are, and whether retention deleted them."""

    job_id: int
    path: Path
    purged: bool

    def file(self, name: str) -> Path | None:
        """The file `name` of the folder when it is there (``None`` when the folder was purged or the file is
        missing)."""
        if self.purged:
            return None
        path = self.path / name
        return path if path.is_file() else None


@dataclass(frozen=True)
class Landmark:
    """A landmark as ``measurements.json`` has it."""

    name: str
    side: str
    slice_index: int | None
    z_mm: float | None
    certainty: str
    method: str
    note: str


def _inside(path: Path, root: Path) -> bool:
    return path.resolve().is_relative_to(root.resolve())


def job_folder(session: Session, outputs_root: Path, job_id: int) -> JobFolder | None:
    """The output folder of the done job `job_id`; ``None`` when there is no such done job or its folder is not
    under `outputs_root` (a database row that does not follow the layout)."""
    row = session.execute(select(Job.status, Series.series_instance_uid).join(Series, Series.id == Job.series_id)
                          .where(Job.id == job_id)).one_or_none()
    if row is None or row.status is not JobStatus.DONE:
        return None
    outputs = session.execute(select(Output.path, Output.purged_at).where(Output.job_id == job_id)).all()
    if outputs:  # the folder holding every DICOM output of the job
        folder = Path(os.path.commonpath([(outputs_root / path).parent for path, _ in outputs]))
    elif _UID.match(row.series_instance_uid):
        folder = outputs_root / row.series_instance_uid / f"job-{job_id}"
    else:
        return None
    if not _inside(folder, outputs_root) or folder.resolve() == outputs_root.resolve():
        return None
    return JobFolder(job_id, folder, any(purged is not None for _, purged in outputs))


def landmarks(folder: JobFolder) -> tuple[Landmark, ...] | None:
    """The landmarks of the job's ``measurements.json``, head first; ``None`` when the file is gone or
    unreadable."""
    path = folder.file(MEASUREMENTS)
    if path is None:
        return None
    try:
        data: Any = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    found = data.get("landmarks") if isinstance(data, dict) else None
    if not isinstance(found, list):
        return ()
    out = []
    for item in found:
        if not isinstance(item, dict):
            continue
        index, z_mm = item.get("slice_index"), item.get("z_mm")
        out.append(Landmark(str(item.get("name", "")).replace("_", " "), str(item.get("side") or ""),
                            index if isinstance(index, int) else None,
                            float(z_mm) if isinstance(z_mm, int | float) else None,
                            str(item.get("certainty", "")), str(item.get("method", "")), str(item.get("note", ""))))
    # head first: the largest position along the slice normal (towards the head in the usual axial orientation)
    return tuple(sorted(out, key=lambda lm: (lm.z_mm is None, -(lm.z_mm or 0.0), lm.name, lm.side)))
