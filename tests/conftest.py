"""Shared fixtures: where the real DICOM test files are, and the PostgreSQL server when the run has one."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

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
