"""Reads are verified: a flipped byte anywhere in a committed Parquet file, WebDataset tar or stats file is refused
by every reader (naming the file, its shard and the command that repairs it), never read as changed values; the
trainer's streaming dataset and DuckDB views included. Records written before the checksum existed are checked
with their sha256; a file a record names that is gone is refused too, or named as re-committed meanwhile."""
import json

import pyarrow as pa
import pytest

from featurestore.cli import main
from featurestore.integrity import DamagedFileError
from featurestore.reader import ShardReplacedError, StoreReader
from featurestore.sql import connect
from featurestore.writer import ShardWriter
from tests.featurestore.store_factory import DIM, committed_file, shard_tables, write_store
from trainers.config import StreamConfig
from trainers.data.streaming import StoreDetectionDataset

READS = {
    "regions": [lambda r: r.read_shard("regions", 1), lambda r: r.read_table("regions"),
                lambda r: list(r.stream("regions")), lambda r: r.zip_shard(1), lambda r: r.find_image(2001),
                lambda r: connect(r.root)],
    "images": [lambda r: r.read_shard("images", 1, ["image_id"]), lambda r: r.find_image(2000, ("images",))],
    "pseudo_labels": [lambda r: r.read_shard("pseudo_labels", 1)],
    "wds": [lambda r: list(r.wds_samples([1]))],
    "stats": [lambda r: r.shard_stats("extract_features", 1)],
}


def flip(path, position: int) -> bytes:
    """Flip every bit of one byte of `path`; returns the original bytes."""
    original = path.read_bytes()
    damaged = bytearray(original)
    damaged[position] ^= 0xFF
    path.write_bytes(bytes(damaged))
    return original


@pytest.mark.parametrize("table", sorted(READS))
def test_a_flipped_byte_anywhere_is_refused_by_every_reader(tmp_path, table):
    root = write_store(tmp_path / "store")
    stage = "pseudo_labels" if table == "pseudo_labels" else "extract_features"
    path = committed_file(root, table, 1, stage)
    size = path.stat().st_size
    positions = sorted({0, 1, size // 3, size // 2, size - 9, size - 1} | set(range(7, size, max(size // 25, 1))))
    for position in positions:
        original = flip(path, position)
        for read in READS[table]:
            with pytest.raises(DamagedFileError) as error:
                read(StoreReader(root))
            message = str(error.value)
            assert path.name in message and f"shard 1 of stage {stage}" in message, message
            assert f"python -m beam_jobs.{stage}" in message and "validate" in message
        path.write_bytes(original)
    for read in READS[table]:  # intact again: every reader reads it
        read(StoreReader(root))


def test_the_command_line_and_the_trainer_refuse_a_damaged_shard(tmp_path, capsys):
    root = write_store(tmp_path / "store")
    flip(committed_file(root, "regions", 0), 100)
    assert main(["head", str(root), "regions"]) == 2
    assert "does not match its commit record" in capsys.readouterr().out
    assert main(["sql", str(root), "SELECT count(*) FROM images"]) == 2
    assert "python -m beam_jobs.extract_features" in capsys.readouterr().out
    images = tmp_path / "images"  # the trainer fails on the store before it opens any image
    dataset = StoreDetectionDataset(root, images, {3: 0}, StreamConfig(shuffle_buffer=0))
    with pytest.raises(DamagedFileError, match="shard 0 of stage extract_features"):
        list(dataset)


def test_a_record_without_checksum_is_checked_with_its_sha256(tmp_path):
    root = write_store(tmp_path / "store", shards=1, with_pseudo_labels=False)
    record_path = root / "_commits/extract_features/00000.json"
    record = json.loads(record_path.read_text())
    for entry in record["files"].values():
        entry.pop("checksum")  # as records were written before it
    record_path.write_text(json.dumps(record))
    assert StoreReader(root).read_shard("regions", 0).num_rows == 12
    flip(committed_file(root, "regions", 0), 50)
    with pytest.raises(DamagedFileError, match="its sha256 differs"):
        StoreReader(root).read_shard("regions", 0)


def test_a_missing_file_is_damage_and_a_recommitted_one_says_so(tmp_path):
    root = write_store(tmp_path / "store", shards=2, with_pseudo_labels=False)
    committed_file(root, "images", 1).unlink()
    with pytest.raises(DamagedFileError, match="the file is missing"):
        StoreReader(root).read_shard("images", 1)
    reader = StoreReader(root)  # listed before shard 0 is committed again by another writer
    ShardWriter(root, "extract_features", DIM).commit(0, shard_tables(5), fingerprint="fp-new")
    with pytest.raises(ShardReplacedError, match="committed again after this reader listed"):
        reader.read_shard("regions", 0)
    assert StoreReader(root).read_shard("regions", 0).column("image_id")[0].as_py() == 6000


def test_streaming_reads_ahead_yet_refuses_a_damaged_file_in_its_turn(tmp_path):
    """`stream` reads, verifies and decodes the next files on other threads while the caller works on one: the
    batches still come in shard order, every batch of the files before a damaged one comes first, and a caller that
    stops before the damaged file never sees its refusal."""
    root = write_store(tmp_path / "store", shards=4)
    expected = [StoreReader(root).read_shard("regions", shard) for shard in range(4)]
    streamed = [batch for batch in StoreReader(root).stream("regions", batch_size=5)]
    assert all(len(batch) <= 5 for batch in streamed)
    assert pa.Table.from_batches(streamed).equals(pa.concat_tables(expected))

    flip(committed_file(root, "regions", 2), 100)
    seen = []
    with pytest.raises(DamagedFileError, match="shard 2 of stage extract_features"):
        for batch in StoreReader(root).stream("regions", readahead=3):
            seen.append(batch)
    assert pa.Table.from_batches(seen).equals(pa.concat_tables(expected[:2]))
    first = StoreReader(root).stream("regions", readahead=3)
    assert next(first).num_rows > 0  # shards 2 and 3 are read ahead by now, yet stopping here raises nothing
    first.close()


@pytest.mark.parametrize("stage, command", [("proposals", "python -m beam_jobs.proposals"),
                                            ("extract_features.vocab", "python -m beam_jobs.extract_features"),
                                            ("pseudo_labels", "python -m beam_jobs.pseudo_labels")])
def test_a_damaged_shard_names_the_job_that_recomputes_it(stage, command):
    from featurestore.integrity import repair_command

    assert repair_command(stage) == command
