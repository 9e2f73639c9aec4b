"""Where the time goes: py-spy samples of the extract-features job and of the store reader, each sample counted
against the stage its stack is in (read, decode, crop, preprocess, batch formation, forward, copy back, Arrow
conversion, write, commit; for the reader: file read, checksum, Arrow decode, numpy conversion, Python per row).

    .venv/bin/python -m bench.where_time_goes extract --images 128 --dtype fp32   # the extract benchmark's job
    .venv/bin/python -m bench.where_time_goes reader                              # bench.store's 80-shard store

The extract job is the one `bench.extract` runs (ViT-B-32 with random weights, square crops, batch 64, the host
path, the in-process runner), profiled whole: driver planning, Beam start-up and the worker's model load included.
The reader streams `regions` of the store `bench.store` streams and turns every batch into numpy arrays
(`Regions.from_arrow`), as a trainer does. py-spy samples Python threads that are not idle (`--idle` is off), so a
thread waiting on another's lock is not counted and a share is of busy samples. A sample belongs to the innermost
frame on its stack that a stage names (STAGES below); samples under no named frame are "Beam runner, coders, other".
py-spy must be installed (`pip install py-spy`; it is a profiler, not a dependency of the project).
"""
from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import sysconfig
import tempfile
import time
from collections import Counter
from pathlib import Path

from bench.common import REPO, machine

# (stage, function name, a fragment of its file path): the innermost frame matching one names the sample's stage.
EXTRACT_STAGES = [
    ("forward", "encode_image", "open_clip"),
    ("copy back (embeddings to numpy rows)", "host_rows", "clip_handler"),
    ("copy back (embeddings to numpy rows)", "unit_embeddings", "vlm/embeddings"),
    ("preprocess (normalise a batch)", "normalise_batch", "clip_preprocess"),
    ("preprocess (resize each crop)", "resize_crop", "clip_preprocess"),
    ("crop", "cut", "pipelines/crops"),
    ("crop", "crop_windows", "extract_steps"),
    ("crop", "crop_batch", "extract_steps"),
    ("decode", "decode_image", "vlm/images"),
    ("read", "read_bytes", "vlm/images"),
    ("batch formation", "stacked_pixels", "clip_handler"),
    ("batch formation", "run_inference", "clip_handler"),
    ("batch formation", "", "apache_beam/transforms/util"),
    ("RunInference bookkeeping", "", "apache_beam/ml/inference"),
    ("Arrow conversion", "shard_tables", "shard_rows"),
    ("Arrow conversion", "build_table", "featurestore/arrow"),
    ("Arrow conversion", "sort_by_keys", "featurestore/arrow"),
    ("write (Parquet, WebDataset, files)", "_encode_shard", "featurestore/writer"),
    ("write (Parquet, WebDataset, files)", "put_all", "featurestore/storage"),
    ("commit (record, manifest)", "_publish_record", "featurestore/writer"),
    ("model load (driver and worker)", "load_clip", "vlm/clip"),
    ("dtype probe", "", "vlm/dtype_probe"),
    ("driver: plan, vocab, weights hash", "plan_dataset", "pipelines/extract_plan"),
    ("driver: plan, vocab, weights hash", "store_vocab", "beam_jobs/extract_features"),
    ("driver: plan, vocab, weights hash", "sha256_file", "featurestore/atomic"),
]
READER_STAGES = [
    ("file read", "read_bytes", "featurestore/storage"),
    ("checksum (XXH3-64)", "content_checksum", "featurestore/integrity"),
    ("checksum (XXH3-64)", "mismatch", "featurestore/integrity"),
    ("Python per row (to_pylist)", "_as_list", "featurestore/regions"),
    ("numpy conversion", "", "featurestore/regions"),
    ("numpy conversion", "embeddings_to_numpy", "featurestore/arrow"),
    ("Arrow decode (Parquet)", "", "pyarrow/parquet"),
    ("Arrow decode (Parquet)", "_parquet", "featurestore/reader"),
    # ParquetFile.iter_batches is Cython, which py-spy does not see: its decoding shows as the `stream` frame.
    ("Arrow decode (Parquet)", "stream", "featurestore/reader"),
    ("reader bookkeeping", "", "featurestore/reader"),
]
IMPORTS = "start-up: imports"
OTHER = "Beam runner, coders, other"
# Innermost frames of a thread that waits (on a lock, a queue, a future) though py-spy did not see it idle, and
# stacks with no Python frame below the process (threads of native pools): not counted as work.
WAITING = "waiting (not counted)"
WAITS = [("wait", "threading.py"), ("_worker", "concurrent/futures/thread.py"), ("get", "queue.py"),
         ("result", "concurrent/futures/_base.py")]


def py_spy() -> str:
    """The py-spy binary: on PATH, or next to this interpreter or the one whose packages it runs with."""
    found = shutil.which("py-spy")
    candidates = [Path(sys.executable).parent / "py-spy", Path(sysconfig.get_path("scripts")) / "py-spy"]
    candidates += [Path(p).parents[2] / "bin" / "py-spy" for p in sys.path if p.endswith("site-packages")]
    found = found or next((str(c) for c in candidates if c.is_file()), None)
    if not found:
        raise SystemExit("py-spy is not installed: pip install py-spy")
    return found


def record(argv: list[str], out: Path, rate: int) -> None:
    """Collapsed stacks ("frame;frame;… count" lines, root first) of `argv` and its child processes."""
    command = [py_spy(), "record", "--rate", str(rate), "--format", "raw", "--subprocesses", "--output", str(out),
               "--", *argv]
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True)
    if done.returncode != 0 or not out.is_file():
        raise RuntimeError(f"py-spy failed ({done.returncode}):\n{done.stderr[-3000:]}")


def frame_matches(frame: str, function: str, path_fragment: str) -> bool:
    """`frame` is "function (path:line)" as py-spy writes it."""
    name, _, where = frame.partition(" (")
    named = not function or name == function or name.endswith(f".{function}")  # methods: "Class.method"
    return named and path_fragment in where


def stage_of(frames: list[str], stages: list[tuple[str, str, str]]) -> str:
    if len(frames) < 2 or any(frame_matches(frames[-1], function, fragment) for function, fragment in WAITS):
        return WAITING
    if any("importlib._bootstrap" in frame for frame in frames):
        return IMPORTS
    for frame in reversed(frames):  # innermost first
        for stage, function, fragment in stages:
            if frame_matches(frame, function, fragment):
                return stage
    return OTHER


def stage_samples(collapsed: Path, stages: list[tuple[str, str, str]]) -> tuple[Counter, Counter]:
    """(samples per stage, samples per (stage, innermost frame))."""
    counts: Counter = Counter()
    leaves: Counter = Counter()
    for line in collapsed.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if stack:
            # py-spy prefixes each stack with its process and thread (with --subprocesses); those never match.
            frames = stack.split(";")
            stage = stage_of(frames, stages)
            counts[stage] += int(count)
            leaves[(stage, frames[-1])] += int(count)
    return counts, leaves


def table(counts: Counter, rate: int, order: list[str]) -> list[str]:
    counts = Counter({stage: count for stage, count in counts.items() if stage != WAITING})
    total = sum(counts.values())
    rows = ["| stage | busy samples | share | seconds |", "| --- | --- | --- | --- |"]
    for stage in sorted(counts, key=lambda s: (order.index(s) if s in order else len(order), -counts[s])):
        rows.append(f"| {stage} | {counts[stage]} | {100 * counts[stage] / total:.1f}% | {counts[stage] / rate:.1f} |")
    rows.append(f"| all | {total} | 100% | {total / rate:.1f} |")
    return rows


def profile_extract(args, tmp: Path) -> tuple[Counter, Counter, list[str]]:
    from bench.extract import write_dataset, write_model

    overrides = write_dataset(tmp / "data", args.images) + [
        f"model.clip={write_model(tmp / 'model', args.model)}", f"model.dtype={args.dtype}", "runtime.device=auto",
        f"runtime.max_batch_size={args.batch}", f"runtime.min_batch_size={args.batch}", "crop.mode=square",
        "vocab.prompts=single", f"shard_size={args.shard_size}", "runtime.crop_on=host"]
    argv = [sys.executable, "-m", "beam_jobs.extract_features", "--store", str(tmp / "store")]
    record(argv + [f"--set={o}" for o in overrides], tmp / "extract.txt", args.rate)
    return (*stage_samples(tmp / "extract.txt", EXTRACT_STAGES), [s for s, _, _ in EXTRACT_STAGES])


def profile_reader(args, tmp: Path) -> tuple[Counter, Counter, list[str]]:
    from bench.store import write_stores

    write_stores(tmp / "small", tmp / "store", 1, args.shards)
    argv = [sys.executable, "-m", "bench.where_time_goes", "read-store", str(tmp / "store"),
            "--passes", str(args.passes)]
    record(argv, tmp / "reader.txt", args.rate)
    return (*stage_samples(tmp / "reader.txt", READER_STAGES), [s for s, _, _ in READER_STAGES])


def read_store(store: str, passes: int) -> None:
    """The profiled reader work: every `regions` batch streamed, verified and turned into numpy arrays."""
    from featurestore.reader import StoreReader
    from featurestore.regions import Regions

    for _ in range(passes):
        reader = StoreReader(store)
        for batch in reader.stream("regions"):
            Regions.from_arrow(batch)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="what", required=True)
    extract = sub.add_parser("extract", help="the extract-features job of bench.extract")
    extract.add_argument("--model", default="ViT-B-32")
    extract.add_argument("--dtype", default="fp32", choices=["fp32", "bf16", "auto"])
    extract.add_argument("--images", type=int, default=128)
    extract.add_argument("--batch", type=int, default=64)
    extract.add_argument("--shard-size", type=int, default=64)
    extract.add_argument("--rate", type=int, default=50, help="samples per second")
    reader = sub.add_parser("reader", help="streaming bench.store's store into numpy arrays")
    reader.add_argument("--shards", type=int, default=80)
    reader.add_argument("--passes", type=int, default=5)
    reader.add_argument("--rate", type=int, default=200, help="samples per second")
    for command in (extract, reader):
        command.add_argument("--top", type=int, default=0, help="also list the N busiest innermost frames")
    work = sub.add_parser("read-store", help=argparse.SUPPRESS)
    work.add_argument("store")
    work.add_argument("--passes", type=int, default=5)
    args = parser.parse_args(argv)

    if args.what == "read-store":
        read_store(args.store, args.passes)
        return 0
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="bench-profile-") as tmp:
        profile = profile_extract if args.what == "extract" else profile_reader
        counts, leaves, order = profile(args, Path(tmp))
    m = machine()
    print(f"{args.what}: {time.perf_counter() - started:.0f} s, {m['cpu_model']}, {m['nproc']} cores, 1-minute load "
          f"average {m['load_average_1min']}, py-spy at {args.rate} Hz")
    print("\n".join(table(counts, args.rate, order + [IMPORTS, OTHER])))
    if args.top:
        print(f"\nthe {args.top} innermost frames with the most samples:")
        for (stage, frame), count in leaves.most_common(args.top):
            print(f"  {count:6d}  {stage:40s} {frame}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
