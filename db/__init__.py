"""sarcoscreen's database: models, engines and sessions from a URL, migrations, and the height registry.

See ``docs/database.md`` for the tables and what each row means.
"""

from sarcoscreen.db.heights import HeightImportReport, import_heights_csv, registry_height
from sarcoscreen.db.migrate import MigrationError, current, downgrade, ensure_schema, head, upgrade
from sarcoscreen.db.session import create_engine_from_url, mask_url, session_scope, sqlite_file

__all__ = [
    "HeightImportReport",
    "MigrationError",
    "create_engine_from_url",
    "current",
    "downgrade",
    "ensure_schema",
    "head",
    "import_heights_csv",
    "mask_url",
    "registry_height",
    "session_scope",
    "sqlite_file",
    "upgrade",
]
