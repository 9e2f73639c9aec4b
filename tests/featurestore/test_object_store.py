"""A store on object storage: `memory://` in process and `s3://` on a real S3-compatible server (moto on loopback).
No rename there: attempt-unique data keys, the commit record created last and create-only, readers that open only
what records name, validate and gc for the rest; and every tool reads it as it reads a local folder."""
import json
import multiprocessing
import os
import re
import signal
import uuid

import pytest

from featurestore.cli import main
from featurestore.gc import collect_garbage
from featurestore.reader import StoreReader
from featurestore.storage import StoreLocation
from featurestore.validate import validate_store
from featurestore.writer import ShardWriter
from schemas.tables import TABLES
from tests.featurestore.store_factory import DIM, shard_tables, write_store

ATTEMPT_KEY = re.compile(r"^(proposals|images|regions|failures|pseudo_labels|vocab|wds|_stats)/[\w.-]+-[0-9a-f]{12}\.\w+$")


@pytest.fixture(params=["memory", pytest.param("s3", marks=pytest.mark.slow)])
def store_url(request) -> str:
    if request.param == "memory":
        return f"memory://stores/{uuid.uuid4().hex[:8]}"
    return request.getfixturevalue("s3_bucket") + "/store"


def _tables(root) -> dict:
    reader = StoreReader(root)
    return {table: reader.read_table(table) for table in TABLES if reader.table_commits(table)}


def test_store_on_object_storage_validates_and_equals_a_local_store(store_url, tmp_path):
    remote, local = (write_store(root, with_proposals=True) for root in (store_url, tmp_path / "local"))
    assert validate_store(remote) == []
    assert _tables(remote).keys() == _tables(local).keys() == set(TABLES)
    for table, rows in _tables(remote).items():
        assert rows.equals(_tables(local)[table]), table
    listed = [entry.path for record in StoreReader(remote).commits for entry in record.files.values()]
    assert listed and all(ATTEMPT_KEY.match(path) for path in listed)  # no rename: attempt-unique keys
    assert [s["__key__"] for s in StoreReader(remote).wds_samples()] == \
        [s["__key__"] for s in StoreReader(local).wds_samples()]


def test_a_retried_attempt_keeps_the_committed_record(store_url):
    root = write_store(store_url, shards=1, with_pseudo_labels=False)
    store = StoreLocation(root)
    before = store.files_under("")
    record = ShardWriter(root, "extract_features", DIM).committed(0)
    again = ShardWriter(root, "extract_features", DIM).commit(0, shard_tables(0), fingerprint="fp-0", stats={})
    assert again == record and store.files_under("") == before


def test_an_attempt_that_loses_the_create_removes_its_files(store_url, monkeypatch):
    """Two attempts of one shard race: both found no record, the other created it first. Create-only refuses
    this one's record; its own (attempt-unique) files go and the winner's record stands."""
    root = write_store(store_url, shards=1, with_pseudo_labels=False)
    store = StoreLocation(root)
    before = store.files_under("")
    winner = ShardWriter(root, "extract_features", DIM).committed(0)
    monkeypatch.setattr(ShardWriter, "committed", lambda self, shard: None)  # the check ran before the winner's
    assert ShardWriter(root, "extract_features", DIM).commit(0, shard_tables(0), fingerprint="fp-0") == winner
    assert store.files_under("") == before


def test_a_new_fingerprint_replaces_the_record_and_its_files(store_url):
    root = write_store(store_url, shards=1, with_pseudo_labels=False)
    old = {entry.path for entry in ShardWriter(root, "extract_features", DIM).committed(0).files.values()}
    ShardWriter(root, "extract_features", DIM).commit(0, shard_tables(5), fingerprint="fp-new")
    reader = StoreReader(root)
    assert reader.read_table("images").column("image_id").to_pylist() == [6000, 6001, 6002]
    assert not old & set(StoreLocation(root).files_under("")) and validate_store(root) == []
    assert ShardWriter(root, "extract_features", DIM).forget_shards(keep=set()) == [0]
    assert StoreLocation(root).files_under("regions") == []


def _die_before_the_commit_record(root):
    """Commit shard 2 and get killed (SIGKILL, as `kill -9`) when its commit record is about to be created."""
    def killed(self, relative, data):
        os.kill(os.getpid(), signal.SIGKILL)

    StoreLocation.create = killed
    StoreLocation.write = killed
    ShardWriter(root, "extract_features", DIM).commit(2, shard_tables(2), fingerprint="fp-2")


def test_kill_before_the_commit_record_then_gc_and_rerun(s3_bucket, tmp_path):
    root = write_store(f"{s3_bucket}/store", shards=2, with_pseudo_labels=False)
    child = multiprocessing.get_context("spawn").Process(target=_die_before_the_commit_record, args=(root,))
    child.start()
    child.join()
    assert child.exitcode == -signal.SIGKILL
    assert StoreReader(root).shards("regions") == [0, 1]  # the files are there, the shard is not
    problems = validate_store(root)
    assert len(problems) == 4 and all("uncommitted file" in p for p in problems)  # images, regions, failures, wds
    assert collect_garbage(root).removed == []  # too young: a running job may still commit them
    assert len(collect_garbage(root, min_age_seconds=0).removed) == 4 and validate_store(root) == []
    ShardWriter(root, "extract_features", DIM).commit(2, shard_tables(2), fingerprint="fp-2")
    clean = write_store(tmp_path / "clean", shards=3, with_pseudo_labels=False)
    assert StoreReader(root).read_table("regions").equals(StoreReader(clean).read_table("regions"))


def test_the_tools_read_an_s3_store(s3_bucket, tmp_path, capsys):
    url, local = write_store(f"{s3_bucket}/store"), write_store(tmp_path / "local")
    assert main(["validate", url]) == 0 and "valid" in capsys.readouterr().out
    assert main(["inspect", url, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["tables"]["regions"]["rows"] == 24
    query = "SELECT source, count(*) AS n FROM regions GROUP BY 1 ORDER BY 1"
    assert main(["sql", url, query, "--json"]) == 0  # DuckDB through the fsspec filesystem on its connection
    counts = json.loads(capsys.readouterr().out)
    assert counts == [{"source": "gt", "n": 6}, {"source": "image", "n": 6}, {"source": "proposal", "n": 12}]
    assert main(["head", url, "images", "-n", "2", "--json"]) == 0
    assert [row["image_id"] for row in json.loads(capsys.readouterr().out)] == [1000, 1001]
    for name, store in (("s3", url), ("local", local)):
        assert main(["export-coco", str(store), str(tmp_path / f"export-{name}.json"), "--with-gt"]) == 0
    exported = {name: json.loads((tmp_path / f"export-{name}.json").read_text()) for name in ("s3", "local")}
    assert {k: v for k, v in exported["s3"].items() if k != "info"} == \
        {k: v for k, v in exported["local"].items() if k != "info"}  # `info` names the store it came from
    capsys.readouterr()
    assert main(["gc", url, "--min-age", "0", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["removed"] == []  # a clean store has nothing to collect
