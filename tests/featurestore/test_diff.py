"""featurestore diff: stores written through the real ShardWriter, compared table by table."""
import json
import shutil
import uuid

import numpy as np
import pytest

from featurestore.cli import main
from featurestore.writer import ShardWriter
from tests.featurestore.store_factory import DIM, pseudo_label_tables, shard_tables, write_store


@pytest.fixture()
def stores(tmp_path):
    return write_store(tmp_path / "a"), write_store(tmp_path / "b")


def recommit(root, stage: str, shard: int, tables: dict) -> None:
    """Rewrite one shard of `stage` in place, as a rerun with changed inputs would (a new fingerprint each time: a
    commit with the fingerprint already committed keeps that record)."""
    ShardWriter(root, stage, DIM).commit(shard, tables, fingerprint=f"changed-{shard}-{uuid.uuid4().hex}")


def test_a_store_matches_itself_a_copy_and_a_rewrite(stores, tmp_path, capsys):
    a, b = stores
    assert main(["diff", str(a), str(a)]) == 0
    copy = shutil.copytree(a, tmp_path / "copy")
    assert main(["diff", str(a), str(copy)]) == 0
    assert main(["diff", str(a), str(b)]) == 0  # the same rows written again, at other times
    out = capsys.readouterr().out
    assert "regions: match (24 rows in A, 24 in B, embedding min cosine 1.00000)" in out
    assert out.rstrip().endswith("the stores match (embeddings within cosine 0.999, floats within 0.0001)")


def test_a_changed_label_is_listed_and_exits_1(stores, capsys):
    a, b = stores
    tables = pseudo_label_tables(1)
    tables["pseudo_labels"]["label"][2] = "circle"
    recommit(b, "pseudo_labels", 1, tables)
    assert main(["diff", str(a), str(b)]) == 1
    out = capsys.readouterr().out
    key = (tables["pseudo_labels"]["image_id"][2], tables["pseudo_labels"]["region_id"][2])
    assert f"  - column label: 1 matched rows differ, e.g. {key}: 'star' vs 'circle'" in out
    assert "pseudo_labels: DIFFERS" in out and "1 of 5 tables differ" in out


def test_embeddings_by_cosine_within_and_beyond_the_tolerance(stores, capsys):
    a, b = stores
    tables = shard_tables(0)
    embedding = tables["regions"]["embedding"].astype(np.float32)
    rng = np.random.default_rng(7)
    nudged = embedding + 0.02 * np.abs(embedding).mean() * rng.standard_normal(embedding.shape)
    tables["regions"]["embedding"] = nudged.astype(np.float16)  # a little float noise, as another device gives
    recommit(b, "extract_features", 0, tables)
    assert main(["diff", str(a), str(b), "--json"]) == 0
    min_cos = json.loads(capsys.readouterr().out)["tables"]["regions"]["embeddings"]["embedding"]["min_cos"]
    assert 0.999 < min_cos < 0.99999  # moved, but not turned
    turned = nudged.copy()
    turned[5] = -turned[5]
    tables["regions"]["embedding"] = turned.astype(np.float16)
    recommit(b, "extract_features", 0, tables)
    assert main(["diff", str(a), str(b), "--json"]) == 1
    report = json.loads(capsys.readouterr().out)
    found = report["tables"]["regions"]["embeddings"]["embedding"]
    key = [tables["regions"]["image_id"][5], tables["regions"]["region_id"][5]]
    assert report["match"] is False and found["below"] == 1 and found["compared"] == 24
    assert found["min_cos"] == pytest.approx(-1.0, abs=1e-3) and found["examples"][0][0] == key
    assert report["tables"]["images"]["differs"] is False  # image embeddings were not touched


def test_missing_rows_and_tables(stores, tmp_path, capsys):
    a, b = stores
    tables = shard_tables(1)
    keep = [i for i, region in enumerate(tables["regions"]["region_id"]) if region != 3]  # drop the image regions
    tables["regions"] = {k: (v[keep] if isinstance(v, np.ndarray) else [v[i] for i in keep])
                         for k, v in tables["regions"].items()}
    recommit(b, "extract_features", 1, tables)
    bare = write_store(tmp_path / "bare", with_pseudo_labels=False)
    assert main(["diff", str(a), str(b)]) == 1
    out = capsys.readouterr().out
    assert "24 rows in A, 21 in B" in out and "3 keys only in A, e.g. (2000, 3), (2001, 3), (2002, 3)" in out
    assert main(["diff", str(a), str(bare)]) == 1
    out = capsys.readouterr().out
    assert "table pseudo_labels is only in A" in out and "note: stage pseudo_labels is recorded only in A" in out


def test_a_missing_store_is_an_error(stores, tmp_path, capsys):
    assert main(["diff", str(stores[0]), str(tmp_path / "none")]) == 2
    assert "is not a feature store" in capsys.readouterr().out


def test_a_failure_with_another_message_is_one_differing_row(stores, capsys):
    a, b = stores
    tables = shard_tables(0)
    tables["failures"]["message"] = ["/elsewhere/broken.jpg: image file is truncated"]  # another image root
    recommit(b, "extract_features", 0, tables)
    assert main(["diff", str(a), str(b)]) == 1
    out = capsys.readouterr().out
    assert "failures: DIFFERS (2 rows in A, 2 in B)" in out and "column message: 1 matched rows differ" in out
    assert "keys only in" not in out
