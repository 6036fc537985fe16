"""A bone has no mass (issue 11): ``structure_measurements.mass_g`` takes ``NULL`` (revision 0005), on SQLite and
PostgreSQL; going back to 0004 removes the rows without a mass, which that version cannot hold."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from db_support import BACKENDS, database_url, done_job_on_an_older_schema
from sqlalchemy import inspect, select, text

from sarcoscreen.db import migrate
from sarcoscreen.db.models import StructureMeasurement
from sarcoscreen.db.session import create_engine_from_url, session_scope


@pytest.fixture(params=BACKENDS)
def empty_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    with database_url(request.param, request, tmp_path) as url:
        yield url


def _row(job_id: int, key: str, mass_g: float | None) -> StructureMeasurement:
    return StructureMeasurement(job_id=job_id, structure_key=key, label=1, name=key, side="left", voxels=10,
                                volume_cm3=465.0, mean_hu=700.0, mass_g=mass_g, truncated=False,
                                density_rule="constant 1.04 g/cm3")


def test_a_bone_is_stored_without_a_mass_and_0004_cannot_hold_it(empty_url: str) -> None:
    migrate.upgrade(empty_url, "0004")
    engine = create_engine_from_url(empty_url)
    insert = text("INSERT INTO structure_measurements (job_id, structure_key, label, name, side, voxels, volume_cm3, "
                  "mass_g, truncated, density_rule) VALUES (:job, 'gluteus_maximus_left', 1, 'x', 'left', 10, 1.0, "
                  "1.04, false, 'constant 1.04 g/cm3')")
    try:
        job_id = done_job_on_an_older_schema(engine)
        with engine.begin() as connection:
            connection.execute(insert, {"job": job_id})  # a row of the older version, with its mass
        migrate.upgrade(empty_url)
        engine.dispose()
        with session_scope(engine) as session:
            session.add(_row(job_id, "femur_left", None))
        with session_scope(engine) as session:
            stored = {m.structure_key: m.mass_g for m in session.scalars(select(StructureMeasurement))}
        assert stored == {"gluteus_maximus_left": 1.04, "femur_left": None}
        migrate.downgrade(empty_url, "0004")
        engine.dispose()
        with engine.connect() as connection:
            keys = connection.execute(text("SELECT structure_key FROM structure_measurements")).scalars().all()
        assert keys == ["gluteus_maximus_left"]
        mass = next(c for c in inspect(engine).get_columns("structure_measurements") if c["name"] == "mass_g")
        assert mass["nullable"] is False
        migrate.upgrade(empty_url)
    finally:
        engine.dispose()
