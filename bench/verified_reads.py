"""What verified reads cost: readers check every file against its commit record (featurestore.integrity), measured
on the synthetic D=512 store of bench/store.py (256 images x 9 regions per shard), warm page cache, in one run with
the variants interleaved so the shared machine's drift hits them alike (the fastest of --repeats rounds: on a shared
machine the other rounds measure the neighbours):

  digests     GB/s of sha256 (OpenSSL, hashlib), zlib's crc32 and XXH3-64 over the same committed files: which
              check is cheap enough to run on every read
  reader      rows/s streaming `regions` (every column) with our reader verifying (XXH3-64, what it does), with a
              sha256 check instead, without any check, and with a raw pyarrow.dataset scan of the same files
  trainer     seconds the streaming trainer's dataset spends reading the store (StoreDetectionDataset's per-shard
              records: images + regions zipped per image, everything but the pixels) with and without the check,
              and the time of the checks alone (XXH3-64 over the files it reads) as a share of its read time: the
              trainer's verification cost, held under 5%

    .venv/bin/python -m bench.verified_reads                # 8 shards, 7 rounds
    .venv/bin/python -m bench.verified_reads --shards 2 --repeats 3   # quick
"""
from __future__ import annotations

import argparse
import hashlib
import tempfile
import time
import zlib
from pathlib import Path
from typing import Callable

import pyarrow as pa
import pyarrow.dataset as pads
import pyarrow.parquet as pq
import xxhash

from bench.common import add_json_flag, at_most, report, result
from bench.store import DIM, IMAGES_PER_SHARD, SOURCES, shard_tables
from featurestore.integrity import content_checksum
from featurestore.reader import StoreReader
from featurestore.stages import EXTRACT_FEATURES
from featurestore.writer import ShardWriter
from trainers.config import StreamConfig
from trainers.data.streaming import StoreDetectionDataset

GOAL_TRAINER_COST = 1.05  # verified / unverified read time of the trainer's dataset (issue 24: under 5%)
DIGESTS = {"sha256": lambda data: hashlib.sha256(data).digest(), "crc32": zlib.crc32,
           "xxh3_64": xxhash.xxh3_64_digest}


def write_store(root: Path, shards: int) -> None:
    writer = ShardWriter(root, EXTRACT_FEATURES, DIM)
    writer.open_stage({"bench": "verified_reads"}, "bench-verified-reads")
    for shard in range(shards):
        writer.commit(shard, shard_tables(shard), fingerprint=f"bench-{shard}", with_wds=False)
    writer.finish_stage()


def seconds(work: Callable[[], object]) -> tuple[float, float]:
    """(wall seconds, CPU seconds of this process, every thread) of one call."""
    started, cpu = time.perf_counter(), time.process_time()
    work()
    return time.perf_counter() - started, time.process_time() - cpu


def stream_rows(reader: StoreReader) -> int:
    return sum(batch.num_rows for batch in reader.stream("regions"))


def stream_rows_sha256(reader: StoreReader) -> int:
    """What the reader would do with a sha256 check: read the bytes, hash them, parse from memory."""
    rows = 0
    for commit in reader.table_commits("regions"):
        data = reader.store.read_bytes(commit.files["regions"].path)
        assert hashlib.sha256(data).hexdigest() == commit.files["regions"].sha256
        rows += sum(b.num_rows for b in pq.ParquetFile(pa.BufferReader(data)).iter_batches(batch_size=4096))
    return rows


def trainer_records(root: Path, verify: bool) -> int:
    """The trainer dataset's reading of every shard (no pixels), through a reader that verifies or not."""
    dataset = StoreDetectionDataset(root, root, {}, StreamConfig(shuffle_buffer=0))
    reader = StoreReader(root, verify=verify)
    return sum(1 for shard in dataset.shards for _ in dataset._shard_records(reader, shard))


def measure(root: Path, repeats: int) -> dict:
    """The fastest wall and CPU seconds of each variant over `repeats` interleaved rounds."""
    files = [str(path) for path in StoreReader(root).files("regions")]
    contents = [Path(path).read_bytes() for path in files]
    reader = StoreReader(root)
    trainer_files = [reader.store.read_bytes(c.files[t].path) for t in ("images", "regions")
                     for c in reader.table_commits(t)]
    variants = {
        "verified": lambda: stream_rows(StoreReader(root)),
        "sha256": lambda: stream_rows_sha256(StoreReader(root, verify=False)),
        "unverified": lambda: stream_rows(StoreReader(root, verify=False)),
        "raw": lambda: sum(b.num_rows for b in pads.dataset(files, format="parquet").to_batches()),
        "trainer_verified": lambda: trainer_records(root, True),
        "trainer_unverified": lambda: trainer_records(root, False),
        "trainer_checks": lambda: [content_checksum(data) for data in trainer_files],
        **{f"digest_{name}": (lambda digest=digest: [digest(data) for data in contents])
           for name, digest in DIGESTS.items()},
    }
    times: dict[str, list[tuple[float, float]]] = {name: [] for name in variants}
    for work in variants.values():
        work()  # warm-up: imports, page cache
    for _ in range(repeats):
        for name, work in variants.items():
            times[name].append(seconds(work))
    return {"rows": stream_rows(reader), "bytes": sum(len(data) for data in contents),
            "wall": {name: min(wall for wall, _ in spent) for name, spent in times.items()},
            "cpu": {name: min(cpu for _, cpu in spent) for name, spent in times.items()}}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shards", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=7, help="rounds of every variant (the fastest counts)")
    add_json_flag(parser)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bench-verified-") as tmp:
        write_store(Path(tmp) / "store", args.shards)
        measured = measure(Path(tmp) / "store", args.repeats)
    rows, size, wall, cpu = measured["rows"], measured["bytes"], measured["wall"], measured["cpu"]
    rates = {name: rows / wall[name] for name in ("verified", "sha256", "unverified", "raw")}
    digests = {name: size / wall[f"digest_{name}"] / 1e9 for name in DIGESTS}
    ratios = {"verified_over_unverified_wall": wall["verified"] / wall["unverified"],
              "verified_over_unverified_cpu": cpu["verified"] / cpu["unverified"],
              "sha256_over_unverified_wall": wall["sha256"] / wall["unverified"],
              "sha256_over_unverified_cpu": cpu["sha256"] / cpu["unverified"],
              "verified_over_raw_rows_per_s": rates["verified"] / rates["raw"],
              "trainer_verified_over_unverified_wall": wall["trainer_verified"] / wall["trainer_unverified"],
              "trainer_verified_over_unverified_cpu": cpu["trainer_verified"] / cpu["trainer_unverified"],
              "trainer_check_share": wall["trainer_checks"] / wall["trainer_unverified"]}
    print(f"{args.shards} shards x {IMAGES_PER_SHARD} images x {len(SOURCES)} regions, D={DIM}: {rows} regions rows, "
          f"{size / 1e6:.1f} MB of regions Parquet; fastest of {args.repeats} interleaved rounds")
    print("  digests over those bytes: " + "   ".join(f"{name} {rate:.2f} GB/s" for name, rate in digests.items()))
    print(f"  stream regions rows/s: verified (xxh3_64) {rates['verified']:,.0f}   sha256-checked "
          f"{rates['sha256']:,.0f}   unverified {rates['unverified']:,.0f}   raw pyarrow {rates['raw']:,.0f}")
    print(f"  verified / unverified read time: xxh3_64 {ratios['verified_over_unverified_wall']:.3f} wall, "
          f"{ratios['verified_over_unverified_cpu']:.3f} CPU   sha256 {ratios['sha256_over_unverified_wall']:.3f} "
          f"wall, {ratios['sha256_over_unverified_cpu']:.3f} CPU")
    print(f"  trainer dataset, store reading: verified {wall['trainer_verified']:.3f} s, unverified "
          f"{wall['trainer_unverified']:.3f} s: {ratios['trainer_verified_over_unverified_wall']:.3f} wall, "
          f"{ratios['trainer_verified_over_unverified_cpu']:.3f} CPU; the checks alone "
          f"{1000 * wall['trainer_checks']:.2f} ms = {100 * ratios['trainer_check_share']:.2f}% of its read time")
    metrics = {"shards": args.shards, "repeats": args.repeats, "rows": rows, "bytes": size,
               **{f"{name}_gb_per_s": rate for name, rate in digests.items()},
               **{f"{name}_rows_per_s": rate for name, rate in rates.items()}, **ratios}
    goals = [at_most("trainer's store reading, verified / unverified CPU time",
                     ratios["trainer_verified_over_unverified_cpu"], GOAL_TRAINER_COST, "XXH3-64 of every file"),
             at_most("trainer's checks alone / its read time, plus one", 1 + ratios["trainer_check_share"],
                     GOAL_TRAINER_COST)]
    return report(result("verified_reads", argv, metrics, goals), args.json)


if __name__ == "__main__":
    raise SystemExit(main())
