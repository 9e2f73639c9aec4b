"""A process killed between writing a shard's files and its commit record leaves no visible shard;
a rerun completes it and the store equals one written without a crash."""
import multiprocessing
import os

from featurestore.gc import collect_garbage
from featurestore.reader import StoreReader
from featurestore.storage import StoreLocation
from featurestore.validate import validate_store
from featurestore.writer import ShardWriter
from tests.featurestore.store_factory import DIM, shard_tables, write_store


def die_before_commit_record(root, shard=2):
    """Commit `shard` in this process and die (exit 17) as its commit record is about to be written."""
    def crash(original):
        def write(self, relative, data):
            if relative.startswith("_commits/"):
                os._exit(17)  # the process dies here, like a worker killed by its runner
            return original(self, relative, data)
        return write

    StoreLocation.write = crash(StoreLocation.write)
    StoreLocation.create = crash(StoreLocation.create)
    ShardWriter(root, "extract_features", DIM).commit(shard, shard_tables(shard), fingerprint=f"fp-{shard}")


def test_crash_before_commit_record_then_rerun(tmp_path):
    root = write_store(tmp_path / "store", shards=2, with_pseudo_labels=False)
    child = multiprocessing.get_context("fork").Process(target=die_before_commit_record, args=(root,))
    child.start()
    child.join()
    assert child.exitcode == 17
    # The files of shard 2 exist on disk, but no reader sees the shard, and validate names the leftovers.
    (leftover,) = (root / "regions").glob("00002-*.parquet")
    assert StoreReader(root).shards("regions") == [0, 1]
    problems = validate_store(root)
    assert any(f"regions/{leftover.name}: uncommitted file" in p for p in problems)
    # A rerun of the shard completes it (under names of its own); gc removes the killed attempt's files.
    ShardWriter(root, "extract_features", DIM).commit(2, shard_tables(2), fingerprint="fp-2")
    assert StoreReader(root).shards("regions") == [0, 1, 2]
    assert len(collect_garbage(root, min_age_seconds=0).removed) == 4  # images, regions, failures, wds
    assert validate_store(root) == []
    clean = write_store(tmp_path / "clean", shards=2, with_pseudo_labels=False)
    ShardWriter(clean, "extract_features", DIM).commit(2, shard_tables(2), fingerprint="fp-2")
    assert StoreReader(root).read_table("regions").equals(StoreReader(clean).read_table("regions"))


def test_failed_write_leaves_no_temporary_files(tmp_path):
    root = write_store(tmp_path / "store", shards=1, with_pseudo_labels=False)
    bad = shard_tables(5)
    bad["regions"]["embedding"] = bad["regions"]["embedding"][:, :3]  # wrong dimension: refused mid-commit
    try:
        ShardWriter(root, "extract_features", DIM).commit(5, bad, fingerprint="x")
    except ValueError as error:
        assert "(N, 16)" in str(error)
    else:
        raise AssertionError("a wrong embedding dimension must be refused")
    assert not [p for p in root.rglob(".tmp-*")]
    assert validate_store(root) == []


def test_resume_fingerprint(tmp_path):
    root = write_store(tmp_path / "store", shards=1, with_pseudo_labels=False)
    writer = ShardWriter(root, "extract_features", DIM)
    assert writer.is_current(0, "fp-0")
    assert not writer.is_current(0, "fp-changed")
    assert not writer.is_current(7, "fp-7")
