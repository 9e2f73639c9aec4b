"""Every table written through ShardWriter reads back exactly (fp16 embeddings bit for bit)."""
import numpy as np
import pytest

from featurestore.arrow import embeddings_to_numpy
from featurestore.reader import StoreReader
from tests.featurestore.store_factory import DIM, pseudo_label_tables, shard_tables, write_store


@pytest.fixture()
def store(tmp_path):
    return write_store(tmp_path / "store")


@pytest.mark.parametrize("table", ["images", "regions", "failures"])
def test_sharded_tables_round_trip(store, table):
    reader = StoreReader(store)
    for shard in reader.shards(table):
        expected = shard_tables(shard)[table]
        got = reader.read_shard(table, shard)
        for column, values in expected.items():
            if column == "embedding":
                np.testing.assert_array_equal(embeddings_to_numpy(got.column(column)), values)
            else:
                assert got.column(column).to_pylist() == list(values), column


def test_pseudo_labels_and_vocab_round_trip(store):
    reader = StoreReader(store)
    expected = pseudo_label_tables(1)["pseudo_labels"]
    got = reader.read_shard("pseudo_labels", 1)
    np.testing.assert_array_equal(embeddings_to_numpy(got.column("text_embedding")), expected["text_embedding"])
    assert got.column("candidates").to_pylist() == expected["candidates"]
    vocab = reader.read_table("vocab")
    assert vocab.column("name").to_pylist() == ["star", "circle", "red star", "star"]
    assert vocab.column("kind").to_pylist() == ["class", "class", "name", "name"]
    assert embeddings_to_numpy(vocab.column("embedding")).dtype == np.float16


def test_embedding_columns_are_fixed_size_float16(store):
    schema = StoreReader(store).read_shard("regions", 0).schema
    field_type = schema.field("embedding").type
    assert field_type.list_size == DIM and str(field_type.value_type) == "halffloat"


def test_stream_covers_every_row_in_bounded_batches(store):
    reader = StoreReader(store)
    batches = list(reader.stream("regions", batch_size=5))
    assert max(b.num_rows for b in batches) <= 5
    assert sum(b.num_rows for b in batches) == reader.read_table("regions").num_rows


def test_zip_shard_matches_pseudo_labels_to_their_regions(store):
    zipped = StoreReader(store).zip_shard(0, ("regions", "pseudo_labels"))
    for row in zipped.to_pylist():
        assert (row["label"] == "star") == (row["source"] == "proposal")
    assert "text_embedding" in zipped.column_names


def test_find_image_reads_only_the_covering_shard(store, tmp_path):
    reader = StoreReader(store)
    # Remove shard 0's files: a lookup of an image of shard 1 must not need them.
    for commit in reader.commits:
        if commit.shard == 0 and commit.stage in ("extract_features", "pseudo_labels"):
            for entry in commit.files.values():
                (store / entry.path).unlink()
    found = reader.find_image(2001)
    assert found["images"].column("image_id").to_pylist() == [2001]
    assert found["regions"].num_rows == 4 and found["pseudo_labels"].num_rows == 2
    with pytest.raises(KeyError, match="image id 424242"):
        reader.find_image(424242)
