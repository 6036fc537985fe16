"""A group whose member muscle was not found (issue 12): ``group_results.completeness`` takes ``not found``
(revision 0006), on SQLite and PostgreSQL; going back to 0005 turns it into ``not in scan``, what that version
recorded for a group with a member without voxels."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from db_support import BACKENDS, database_url, done_job_on_an_older_schema
from sqlalchemy import select, text
from sqlalchemy.exc import IntegrityError

from sarcoscreen.db import migrate
from sarcoscreen.db.models import Completeness, GroupResult
from sarcoscreen.db.session import create_engine_from_url, session_scope

_INSERT = text("INSERT INTO group_results (job_id, muscle_group, side, completeness, reason, height_source) "
               "VALUES (:job, :group, 'both', :completeness, 'test', 'dicom')")


@pytest.fixture(params=BACKENDS)
def empty_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    with database_url(request.param, request, tmp_path) as url:
        yield url


def test_not_found_is_stored_and_0005_holds_it_as_not_in_scan(empty_url: str) -> None:
    migrate.upgrade(empty_url, "0005")
    engine = create_engine_from_url(empty_url)
    try:
        job_id = done_job_on_an_older_schema(engine)
        with pytest.raises(IntegrityError), engine.begin() as connection:
            connection.execute(_INSERT, {"job": job_id, "group": "gluteal", "completeness": "not found"})
        with engine.begin() as connection:
            connection.execute(_INSERT, {"job": job_id, "group": "all", "completeness": "not in scan"})
        migrate.upgrade(empty_url)
        engine.dispose()
        with session_scope(engine) as session:
            session.add(GroupResult(job_id=job_id, muscle_group="gluteal", side="both",
                                    completeness=Completeness.NOT_FOUND,
                                    reason="not measurable: not found (segmentation failure, QA): Left gluteus medius",
                                    height_source="dicom"))
        with session_scope(engine) as session:
            stored = {g.muscle_group: g.completeness for g in session.scalars(select(GroupResult))}
        assert stored == {"all": Completeness.NOT_IN_SCAN, "gluteal": Completeness.NOT_FOUND}
        migrate.downgrade(empty_url, "0005")
        engine.dispose()
        with engine.connect() as connection:
            rows = connection.execute(text(
                "SELECT muscle_group, completeness, reason FROM group_results ORDER BY muscle_group")).all()
        assert [tuple(r) for r in rows] == [
            ("all", "not in scan", "test"),
            ("gluteal", "not in scan", "not measurable: not found (segmentation failure, QA): Left gluteus medius")]
        with pytest.raises(IntegrityError), engine.begin() as connection:
            connection.execute(_INSERT, {"job": job_id, "group": "above_knee", "completeness": "not found"})
        migrate.upgrade(empty_url)
        assert migrate.current(empty_url) == migrate.head()
    finally:
        engine.dispose()
