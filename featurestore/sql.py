"""DuckDB over a store: one view per table over exactly the committed files (never a glob, which would
also pick up the files of an interrupted write).

An object store is read through its fsspec filesystem registered on the connection: DuckDB's own httpfs extension
is not bundled and needs a download that offline machines cannot make.
"""
from __future__ import annotations

from pathlib import Path

from featurestore.reader import StoreReader
from schemas.tables import TABLES


def connect(store: str | Path, verify: bool = True):
    """A DuckDB connection with views `images`, `regions`, … over the committed shards of `store`.

    DuckDB opens the files itself, so with `verify` each one is checked against its commit record here, before any
    view names it (a damaged file raises featurestore.integrity.DamagedFileError): one read of every committed
    file per connection."""
    import duckdb

    reader = StoreReader(store, verify=verify)
    connection = duckdb.connect()
    if reader.store.fs is not None:
        connection.register_filesystem(reader.store.fs)
    for table in TABLES:
        files = [str(path) for path in reader.files(table)]
        if verify:
            for path in files:
                reader.file_bytes(path)
        if files:
            listed = ", ".join("'" + f.replace("'", "''") + "'" for f in files)
            connection.execute(f"CREATE VIEW {table} AS SELECT * FROM read_parquet([{listed}], union_by_name=true)")
    return connection
