"""Arrow schemas of every store table, the schema version, and the stage configs.

Everything else in the project depends on this package; it depends on nothing of ours.
"""
from schemas.tables import (
    EMBEDDING_COLUMNS,
    SCHEMA_VERSION,
    TABLES,
    SchemaVersionError,
    schema_for,
)

__all__ = ["EMBEDDING_COLUMNS", "SCHEMA_VERSION", "TABLES", "SchemaVersionError", "schema_for"]
