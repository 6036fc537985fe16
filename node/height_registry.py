"""The registry height of the patient of a series folder (for ``sarcoscreen analyze`` and the worker).

Reads PatientID from the first DICOM file of the folder (headers only) and looks it up in the height registry
(`sarcoscreen.db.heights`). A look-up never creates a database: without the SQLite file there is no registry.
Neither the patient ID nor the folder name (which may contain a patient's name) is ever logged.
"""

from __future__ import annotations

import logging
from pathlib import Path

from pydicom import dcmread
from pydicom.errors import InvalidDicomError
from sqlalchemy.exc import SQLAlchemyError

from sarcoscreen.db.heights import registry_height
from sarcoscreen.db.session import create_engine_from_url, session_scope, sqlite_file
from sarcoscreen.inference.dicom_files import find_dicom_files
from sarcoscreen.node.config import Settings

__all__ = ["patient_id_of_series", "registry_height_for_series"]

logger = logging.getLogger(__name__)

_CONNECT_TIMEOUT_S = 10
"""A registry on an unreachable PostgreSQL server must not hold up an analysis for minutes."""


def patient_id_of_series(series_path: Path) -> str | None:
    """PatientID (0010,0020) of the first DICOM file (in path order) under `series_path`; ``None`` if empty."""
    for path in find_dicom_files(series_path):
        try:
            dataset = dcmread(path, stop_before_pixels=True, specific_tags=["PatientID"])
        except (InvalidDicomError, OSError, EOFError, ValueError):
            continue
        value = str(dataset.get("PatientID", "") or "").strip()
        return value or None
    return None


def registry_height_for_series(settings: Settings, series_path: Path) -> float | None:
    """The registry height (metres) of the patient of `series_path`, or ``None`` when there is none to use.

    ``None`` when the folder has no DICOM file with a PatientID, when the configured SQLite database does not
    exist, when the registry has no entry, or when the database cannot be read (logged as a warning, without
    patient data).
    """
    patient_id = patient_id_of_series(Path(series_path))
    if patient_id is None:
        return None
    url = settings.database_url
    path = sqlite_file(url)
    if path is not None and not path.is_file():
        return None
    options = {} if path is not None else {"connect_args": {"connect_timeout": _CONNECT_TIMEOUT_S}}
    try:
        engine = create_engine_from_url(url, **options)
    except ValueError as exc:
        logger.warning("height registry not consulted: %s", exc)
        return None
    try:
        with session_scope(engine) as session:
            return registry_height(session, patient_id)
    except SQLAlchemyError as exc:
        # The exception text may quote SQL; name only its kind (bound values are hidden by the engine anyway).
        logger.warning("height registry not consulted: database error (%s)", type(exc).__name__)
        return None
    finally:
        engine.dispose()
