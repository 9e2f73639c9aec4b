"""Our files are read by DuckDB, pyarrow.dataset and the webdataset library without our code."""
import io
import json

import duckdb
import numpy as np
import pyarrow.dataset as ds
import webdataset as wds

from featurestore.arrow import embeddings_to_numpy
from featurestore.reader import StoreReader
from schemas.tables import SCHEMA_VERSION
from tests.featurestore.store_factory import (IMAGES_PER_SHARD, REGIONS_PER_IMAGE, committed_file, shard_tables,
                                             write_store)


def test_duckdb_reads_the_parquet_files_directly(tmp_path):
    root = write_store(tmp_path / "store", shards=2)
    glob = str(root / "regions" / "*.parquet")
    count, = duckdb.execute(f"SELECT count(*) FROM read_parquet('{glob}')").fetchone()
    assert count == 2 * IMAGES_PER_SHARD * REGIONS_PER_IMAGE
    first = duckdb.execute(f"SELECT embedding FROM read_parquet('{glob}') ORDER BY image_id, region_id LIMIT 1"
                       ).fetchone()[0]
    expected = shard_tables(0)["regions"]["embedding"][0]
    np.testing.assert_allclose(np.asarray(first, dtype=np.float32), expected.astype(np.float32))
    joined = duckdb.execute(
        f"SELECT count(*) FROM read_parquet('{glob}') r JOIN read_parquet('{root}/pseudo_labels/*.parquet') p "
        "USING (image_id, region_id)").fetchone()[0]
    assert joined == 2 * IMAGES_PER_SHARD * 2


def test_pyarrow_dataset_reads_the_tables(tmp_path):
    root = write_store(tmp_path / "store", shards=2)
    table = ds.dataset(root / "images", format="parquet").to_table()
    assert table.num_rows == 2 * IMAGES_PER_SHARD
    assert table.schema.metadata[b"ovd_distill.schema_version"] == str(SCHEMA_VERSION).encode()


def test_webdataset_reads_our_tars(tmp_path):
    root = write_store(tmp_path / "store", shards=2)
    urls = [str(committed_file(root, "wds", shard)) for shard in range(2)]
    samples = list(wds.WebDataset(urls, shardshuffle=False))
    assert [s["__key__"] for s in samples] == [str(1000 * (k + 1) + i) for k in range(2) for i in range(3)]
    sample = samples[0]
    meta = json.loads(sample["json"])
    region_emb = np.load(io.BytesIO(sample["region_emb.npy"]))
    expected = shard_tables(0)["regions"]["embedding"][:REGIONS_PER_IMAGE]
    np.testing.assert_array_equal(region_emb, expected)
    assert len(meta["regions"]) == REGIONS_PER_IMAGE and "." not in sample["__key__"]


def test_our_wds_reader_agrees_with_the_parquet_tables(tmp_path):
    reader = StoreReader(write_store(tmp_path / "store", shards=1))
    samples = list(reader.wds_samples())
    regions = reader.read_shard("regions", 0)
    stacked = np.concatenate([s["region_emb.npy"] for s in samples])
    np.testing.assert_array_equal(stacked, embeddings_to_numpy(regions.column("embedding")))
