"""`validate` catches what can go wrong with files after they were committed."""
import json

import pyarrow.parquet as pq

from featurestore.cli import main
from featurestore.validate import validate_store
from tests.featurestore.store_factory import committed_file, write_store


def test_clean_store_is_valid(tmp_path, capsys):
    root = write_store(tmp_path / "store")
    assert validate_store(root) == []
    assert main(["validate", str(root)]) == 0
    assert "valid" in capsys.readouterr().out


def test_truncated_file_is_reported(tmp_path, capsys):
    root = write_store(tmp_path / "store")
    path = committed_file(root, "regions", 1)
    path.write_bytes(path.read_bytes()[:-100])
    problems = validate_store(root)
    assert any(f"regions/{path.name} has" in p and "bytes" in p for p in problems)
    assert any("not a readable Parquet file" in p for p in problems)
    assert main(["validate", str(root)]) == 1
    assert f"regions/{path.name}" in capsys.readouterr().out


def test_row_count_mismatch_is_reported(tmp_path):
    root = write_store(tmp_path / "store")
    commit_path = root / "_commits/extract_features/00000.json"
    record = json.loads(commit_path.read_text())
    record["files"]["regions"]["rows"] += 1
    commit_path.write_text(json.dumps(record))
    problems = validate_store(root)
    assert any("has 12 rows, the manifest says 13" in p for p in problems), problems


def test_rewritten_file_fails_the_checksum_and_join_keys(tmp_path):
    root = write_store(tmp_path / "store")
    path = committed_file(root, "regions", 0)
    table = pq.read_table(path)
    pq.write_table(table.slice(0, 4), path)  # same schema, fewer rows: sizes and keys no longer agree
    problems = validate_store(root)
    assert any(f"regions/{path.name}" in p for p in problems)
    assert any("pseudo_labels rows match no regions row" in p for p in problems)


def test_validate_json_lists_every_problem(tmp_path, capsys):
    root = write_store(tmp_path / "store")
    committed_file(root, "images", 0).unlink()
    committed_file(root, "wds", 1).unlink()
    assert main(["validate", str(root), "--json"]) == 1
    report = json.loads(capsys.readouterr().out)
    assert report["valid"] is False
    assert sum("is missing" in p for p in report["problems"]) == 2
