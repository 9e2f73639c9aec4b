"""Regions: one record of equal-length columns, converted to and from the regions table exactly."""
import numpy as np
import pyarrow as pa
import pytest

from featurestore.reader import StoreReader
from featurestore.regions import Regions
from tests.featurestore.store_factory import DIM, shard_tables, write_store


def test_arrow_round_trip_is_exact(tmp_path):
    root = write_store(tmp_path / "store", shards=1, with_pseudo_labels=False)
    table = StoreReader(root).read_shard("regions", 0)
    regions = Regions.from_arrow(table)
    expected = shard_tables(0)["regions"]
    assert len(regions) == len(expected["image_id"])
    assert regions.image_id.dtype == np.int64 and regions.region_id.dtype == np.int32
    np.testing.assert_array_equal(regions.box, np.asarray(expected["box"], np.float32))
    np.testing.assert_array_equal(regions.embedding, expected["embedding"])
    assert regions.category_id == expected["category_id"] and regions.names == expected["names"]
    assert regions.to_arrow(DIM).replace_schema_metadata(None).equals(table.replace_schema_metadata(None))


def test_a_subset_of_columns_and_the_rows_of_each_image():
    table = pa.table({"image_id": pa.array([7, 5, 7, 5], pa.int64()), "region_id": pa.array([0, 0, 1, 1], pa.int32()),
                      "source": ["gt", "image", "proposal", "proposal"], "label": ["x", None, "y", None]})
    regions = Regions.from_arrow(table)
    assert regions.box is None and regions.embedding is None  # not read
    groups = regions.rows_by_image()
    assert list(groups) == [5, 7] and [g.tolist() for g in groups.values()] == [[1, 3], [0, 2]]
    proposals = regions.take(regions.source == "proposal")
    assert proposals.image_id.tolist() == [7, 5] and proposals.region_id.tolist() == [1, 1]
    assert regions.take(np.array([3, 0])).to_rows(("image_id", "source")) == [{"image_id": 5, "source": "proposal"},
                                                                                {"image_id": 7, "source": "gt"}]
    with pytest.raises(ValueError, match=r"fields \['box'\] were not read"):
        regions.to_rows(("box",))


def test_fields_of_another_length_are_refused():
    with pytest.raises(ValueError, match="field 'box' has 1 rows, image_id has 2"):
        Regions(image_id=np.array([1, 2]), region_id=np.array([0, 0], np.int32), box=np.zeros((1, 4), np.float32))
