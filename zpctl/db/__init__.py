"""The platform database: where it is (:mod:`.connect`) and its versioned schema
(:mod:`.schema`), on sqlite (a single-node lab) or PostgreSQL (the default)."""

from zpctl.db.connect import Db, DbTarget, connect
from zpctl.db.schema import (
    LATEST,
    MIGRATIONS,
    Migration,
    SchemaMismatch,
    create_sqlite,
    current_version,
    migrate,
    require_current,
    status,
)

__all__ = [
    "LATEST",
    "MIGRATIONS",
    "Db",
    "DbTarget",
    "Migration",
    "SchemaMismatch",
    "connect",
    "create_sqlite",
    "current_version",
    "migrate",
    "require_current",
    "status",
]
