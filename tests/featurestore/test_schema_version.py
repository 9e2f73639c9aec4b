"""A store or file of another schema version is refused with an error that states both versions and how to proceed."""
import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from featurestore.cli import main as featurestore_cli
from featurestore.reader import StoreReader
from featurestore.validate import validate_store
from schemas.tables import SCHEMA_VERSION, SchemaVersionError, check_schema_version
from tests.featurestore.store_factory import (assert_says_how_to_proceed, committed_file, downgrade_to_version_1,
                                             rewrite_committed, write_store)


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
    path = committed_file(root, "regions", 0)
    table = pq.read_table(path)
    metadata = dict(table.schema.metadata)
    metadata[b"ovd_distill.schema_version"] = b"0"
    sink = pa.BufferOutputStream()
    pq.write_table(table.replace_schema_metadata(metadata), sink)
    rewrite_committed(root, path, sink.getvalue().to_pybytes())  # written so by a writer, not damaged
    with pytest.raises(SchemaVersionError, match=f"regions/{path.name} has schema version 0"):
        StoreReader(root).read_shard("regions", 0)


def test_missing_store_names_the_path(tmp_path):
    with pytest.raises(FileNotFoundError, match="nothing-here is not a feature store"):
        StoreReader(tmp_path / "nothing-here")


def test_every_reader_of_a_version_1_store_says_how_to_proceed(tmp_path, capsys):
    root = downgrade_to_version_1(write_store(tmp_path / "store", shards=1))
    with pytest.raises(SchemaVersionError) as error:
        StoreReader(root)
    assert_says_how_to_proceed(str(error.value))
    [problem] = validate_store(root)
    assert_says_how_to_proceed(problem)
    for command in (["inspect", str(root)], ["validate", str(root)], ["head", str(root), "regions"]):
        assert featurestore_cli(command) in (1, 2)
        assert_says_how_to_proceed(capsys.readouterr().out)
    with pytest.raises(SchemaVersionError) as error:
        check_schema_version(pq.ParquetFile(committed_file(root, "regions", 0)).schema_arrow.metadata, "regions/00000")
    assert_says_how_to_proceed(str(error.value))


def test_a_store_of_newer_code_says_to_read_it_with_that_code(tmp_path):
    root = write_store(tmp_path / "store", shards=1)
    manifest = json.loads((root / "manifest.json").read_text())
    manifest["schema_version"] = SCHEMA_VERSION + 1
    (root / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(SchemaVersionError, match="written by newer code"):
        StoreReader(root)
