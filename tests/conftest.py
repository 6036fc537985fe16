"""Shared fixtures: where the real DICOM test files are, the PostgreSQL server when the run has one, and a
migrated database on each backend."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from db_support import BACKENDS, database_url
from sqlalchemy.engine import Engine

from sarcoscreen.db import migrate
from sarcoscreen.db.session import create_engine_from_url

PROJECT_ROOT = Path(__file__).resolve().parent.parent
SHARED_DATA = PROJECT_ROOT.parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """`../shared/data` (real DICOM files from other tools); the test is skipped when the folder is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real DICOM test data not found at {SHARED_DATA} (see README: Tests)")
    return SHARED_DATA


@pytest.fixture(scope="session")
def postgres_url() -> str:
    """The PostgreSQL URL given by SARCOSCREEN_TEST_POSTGRES_URL; the test is skipped without it."""
    url = os.environ.get("SARCOSCREEN_TEST_POSTGRES_URL")
    if not url:
        pytest.skip("SARCOSCREEN_TEST_POSTGRES_URL is not set: PostgreSQL tests skipped")
    return url


@pytest.fixture(params=BACKENDS)
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A database migrated to head, on SQLite and on PostgreSQL (each test its own; modules that need an empty
    database override this fixture)."""
    with database_url(request.param, request, tmp_path) as url:
        migrate.upgrade(url)
        yield url


@pytest.fixture
def engine(db_url: str) -> Iterator[Engine]:
    """A SQLAlchemy engine on `db_url`, disposed after the test."""
    engine = create_engine_from_url(db_url)
    yield engine
    engine.dispose()


FIRST_FILES = ("test_unet_training.py",)
"""Files handed out first: the U-Net training fixture takes several minutes, and with two test processes
(`scripts/test.sh`) it should run beside the rest rather than alone at the end."""


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Put the tests of `FIRST_FILES` first, keeping every other order (the same on every xdist worker)."""
    items.sort(key=lambda item: item.path.name not in FIRST_FILES)
