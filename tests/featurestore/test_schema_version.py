"""A store or file of another schema version is refused with an error that states both versions."""
import json

import pyarrow.parquet as pq
import pytest

from featurestore.reader import StoreReader
from schemas.tables import SCHEMA_VERSION, SchemaVersionError
from tests.featurestore.store_factory import write_store


def test_store_of_other_version_is_refused(tmp_path):
    root = write_store(tmp_path / "store", shards=1)
    manifest = json.loads((root / "manifest.json").read_text())
    manifest["schema_version"] = SCHEMA_VERSION + 1
    (root / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(SchemaVersionError) as error:
        StoreReader(root)
    message = str(error.value)
    assert f"schema version {SCHEMA_VERSION + 1}" in message and f"schema version {SCHEMA_VERSION}" in message


def test_file_of_other_version_is_refused(tmp_path):
    root = write_store(tmp_path / "store", shards=1)
    path = root / "regions/00000.parquet"
    table = pq.read_table(path)
    metadata = dict(table.schema.metadata)
    metadata[b"ovd_distill.schema_version"] = b"0"
    pq.write_table(table.replace_schema_metadata(metadata), path)
    with pytest.raises(SchemaVersionError, match="regions/00000.parquet has schema version 0"):
        StoreReader(root).read_shard("regions", 0)


def test_missing_store_names_the_path(tmp_path):
    with pytest.raises(FileNotFoundError, match="nothing-here is not a feature store"):
        StoreReader(tmp_path / "nothing-here")
