"""The store's read paths on a synthetic store written by our ShardWriter (D=512 float16 embeddings, as ViT-B/32):

  streaming   rows/s of `regions` (every column) through `StoreReader.stream` vs a raw `pyarrow.dataset` scan of
              the same committed files (what a user without our code would run)
  lookup      latency of `StoreReader.find_image(id)` (images + regions) at 1x and 10x the number of shards, on
              the same random ids (all within the 1x store, so both find one image of 9 regions)
  size        bytes per region of the `regions` Parquet files (zstd), against the 2·D bytes of the embedding alone

    .venv/bin/python -m bench.store                       # 1x = 8 shards, 10x = 80 shards
    .venv/bin/python -m bench.store --shards 2 --lookups 20   # quick

A shard is 256 images (configs/shapes/extract_features.yaml shard_size) of 9 regions each (3 GT, 5 proposals — regions.top_k
— and the whole image). Embeddings are random unit vectors: they compress no better than real ones.
"""
from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow.dataset as pads

from bench.common import add_json_flag, at_least, at_most, report, result
from featurestore.reader import StoreReader
from featurestore.stages import EXTRACT_FEATURES
from featurestore.writer import ShardWriter

DIM = 512  # ViT-B/32 embedding width
IMAGES_PER_SHARD = 256  # configs/shapes/extract_features.yaml shard_size
SOURCES = ["gt"] * 3 + ["proposal"] * 5 + ["image"]  # regions.top_k = 5, include_image = true
GOAL_READER_VS_RAW = 0.9  # issue 29 (0.8 in issue 8): verification included
GOAL_LOOKUP_MS = 50.0
GOAL_LOOKUP_FLAT = 1.10  # "flat": 10x within 10% of 1x, the bar issue 8 sets for the scale goal


def shard_tables(shard: int) -> dict:
    """images + regions columns of one synthetic shard; image ids are contiguous per shard, as the job makes them."""
    rng = np.random.default_rng(shard)
    ids = list(range(shard * IMAGES_PER_SHARD + 1, (shard + 1) * IMAGES_PER_SHARD + 1))
    per_image = len(SOURCES)
    n = len(ids) * per_image
    xy = rng.uniform(0, 400, (n, 2))
    wh = rng.uniform(8, 240, (n, 2))
    boxes = np.concatenate([xy, xy + wh], axis=1).tolist()
    sources = SOURCES * len(ids)
    embeddings = rng.standard_normal((n, DIM)).astype(np.float32)
    embeddings /= np.linalg.norm(embeddings, axis=1, keepdims=True)
    image_embeddings = rng.standard_normal((len(ids), DIM)).astype(np.float32)
    image_embeddings /= np.linalg.norm(image_embeddings, axis=1, keepdims=True)
    return {
        "images": {"image_id": ids, "file_name": [f"{i:012d}.jpg" for i in ids], "width": [640] * len(ids),
                   "height": [480] * len(ids), "sha256": [f"{i:064x}" for i in ids],
                   "embedding": image_embeddings.astype(np.float16),
                   "embedding_norm": rng.uniform(8, 12, len(ids)).astype(np.float32)},
        "regions": {"image_id": [i for i in ids for _ in range(per_image)],
                    "region_id": list(range(per_image)) * len(ids), "box": boxes, "source": sources,
                    "category_id": [int(c) if s == "gt" else None for s, c in zip(sources, rng.integers(1, 80, n))],
                    "proposal_score": [float(p) if s == "proposal" else None
                                       for s, p in zip(sources, rng.uniform(0, 1, n))],
                    "max_iou_base": rng.uniform(0, 1, n).astype(np.float32).tolist(), "crop_mode": ["square"] * n,
                    "crop_box": boxes, "embedding": embeddings.astype(np.float16),
                    # Raw ViT-B/32 encode_image lengths are around 10.
                    "embedding_norm": rng.uniform(8, 12, n).astype(np.float32)},
    }


def write_stores(small: Path, large: Path, shards: int, scale: int) -> None:
    """`small` holds shards 0..shards-1, `large` shards 0..shards*scale-1; each shard is built once."""
    writers = [ShardWriter(root, EXTRACT_FEATURES, DIM) for root in (small, large)]
    for writer in writers:
        writer.open_stage({"bench": "store"}, "bench-store")
    for shard in range(shards * scale):
        tables = shard_tables(shard)
        for writer in writers if shard < shards else writers[1:]:
            # Parquet only: the WebDataset twin is not what the reader streams.
            writer.commit(shard, tables, fingerprint=f"bench-{shard}", with_wds=False)
    for writer in writers:
        writer.finish_stage()


def scan_rows_per_second(store: Path, repeats: int) -> tuple[float, float, int]:
    """(reader rows/s, raw pyarrow rows/s, rows): median of `repeats`, the two interleaved so drift hits both."""
    reader = StoreReader(store)
    files = [str(p) for p in reader.files("regions")]
    ours, raw, rows = [], [], 0
    for _ in range(repeats):
        started = time.perf_counter()
        rows = sum(batch.num_rows for batch in reader.stream("regions"))
        ours.append(rows / (time.perf_counter() - started))
        started = time.perf_counter()
        raw_rows = sum(batch.num_rows for batch in pads.dataset(files, format="parquet").to_batches())
        raw.append(raw_rows / (time.perf_counter() - started))
        assert raw_rows == rows, (raw_rows, rows)
    return statistics.median(ours), statistics.median(raw), rows


def lookup_ms(stores: list[Path], lookups: int, seed: int = 0) -> list[tuple[float, float, float]]:
    """Per store: (median ms, 95th percentile ms, ms to open the reader) of `find_image` on random ids.

    The stores take turns on each id, so the shared machine's drift hits all of them alike.
    """
    readers, open_ms = [], []
    for store in stores:
        started = time.perf_counter()
        readers.append(StoreReader(store))
        open_ms.append(1000 * (time.perf_counter() - started))
    top = min(max(c.image_id_max for c in reader.table_commits("images")) for reader in readers)
    ids = np.random.default_rng(seed).integers(1, top + 1, lookups)
    times: list[list[float]] = [[] for _ in readers]
    for reader in readers:
        reader.find_image(int(ids[0]), tables=("images", "regions"))  # warm-up: imports and first open
    for image_id in ids:
        for reader, spent in zip(readers, times):
            started = time.perf_counter()
            found = reader.find_image(int(image_id), tables=("images", "regions"))
            spent.append(1000 * (time.perf_counter() - started))
            assert found["regions"].num_rows == len(SOURCES)
    return [(statistics.median(t), float(np.percentile(t, 95)), o) for t, o in zip(times, open_ms)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shards", type=int, default=8, help="shards of the 1x store")
    parser.add_argument("--scale", type=int, default=10, help="the large store has scale x shards")
    parser.add_argument("--lookups", type=int, default=50)
    # A pass over the 80-shard store takes under half a second: with 3 the median moved the ratio between 0.81 and
    # 0.997 across runs on the idle 2-core machine, with 9 it stayed at 0.96-0.97 (two runs).
    parser.add_argument("--repeats", type=int, default=9, help="streaming passes of each reader (median)")
    add_json_flag(parser)
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="bench-store-") as tmp:
        small, large = Path(tmp) / "store-1x", Path(tmp) / "store-10x"
        started = time.perf_counter()
        write_stores(small, large, args.shards, args.scale)
        print(f"wrote {args.shards} + {args.shards * args.scale} shards in {time.perf_counter() - started:.1f} s")
        ours, raw, rows = scan_rows_per_second(large, args.repeats)
        print(f"  stream regions ({rows} rows, {args.shards * args.scale} shards): reader {ours:,.0f} rows/s   "
              f"raw pyarrow.dataset {raw:,.0f} rows/s   ratio {ours / raw:.2f}")
        (small_median, small_p95, small_open), (large_median, large_p95, large_open) = \
            lookup_ms([small, large], args.lookups)
        for name, median, p95, opened in (("1x", small_median, small_p95, small_open),
                                          (f"{args.scale}x", large_median, large_p95, large_open)):
            print(f"  find_image at {name:3s}: median {median:6.2f} ms   p95 {p95:6.2f} ms   "
                  f"(opening the reader {opened:6.1f} ms)")
        region_files = StoreReader(large).table_commits("regions")
        region_bytes = sum(c.files["regions"].bytes for c in region_files)
        region_rows = sum(c.files["regions"].rows for c in region_files)
    bytes_per_region = region_bytes / region_rows
    print(f"  regions Parquet: {bytes_per_region:.0f} bytes per region (embedding alone {2 * DIM} bytes)")
    metrics = {"dim": DIM, "images_per_shard": IMAGES_PER_SHARD, "regions_per_image": len(SOURCES),
               "shards_1x": args.shards, "shards_large": args.shards * args.scale, "stream_rows": rows,
               "reader_rows_per_s": ours, "raw_pyarrow_rows_per_s": raw, "reader_over_raw": ours / raw,
               "lookup_ms_1x": small_median, "lookup_p95_ms_1x": small_p95, "lookup_ms_large": large_median,
               "lookup_p95_ms_large": large_p95, "lookup_large_over_1x": large_median / small_median,
               "open_reader_ms_1x": small_open, "open_reader_ms_large": large_open,
               "bytes_per_region": bytes_per_region, "embedding_bytes": 2 * DIM}
    goals = [at_least("reader / raw pyarrow rows/s", ours / raw, GOAL_READER_VS_RAW),
             at_most(f"lookup by id at {args.scale}x, median ms", large_median, GOAL_LOOKUP_MS),
             at_most(f"lookup {args.scale}x / 1x (flat)", large_median / small_median, GOAL_LOOKUP_FLAT)]
    return report(result("store", argv, metrics, goals), args.json)


if __name__ == "__main__":
    raise SystemExit(main())
