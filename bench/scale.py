"""extract-features at 1x and 4x the number of images: peak memory and time per image should both stay flat.

Our job (`python -m beam_jobs.extract_features`, DirectRunner, tiny CLIP teacher) runs as a child process on
generated ShapesOV sets of N and 4N train images. Peak memory is the largest resident set of the child and all its
descendants together, polled every 50 ms with psutil. Time per image is reported three ways: the whole process
(imports and model load included), the job's own wall time, and the sum of its per-step timings (decode, crop,
model, write). The goals use the job's wall time.

The job runs `runtime.shards_per_run` (4) shards at a time, so memory is bounded by 4 x shard_size images, not by
the dataset. `--shard-size` (default 50) is chosen so that 1x already fills those 4 shards; with the default config
(shard_size 256) 1x would hold 1 shard and 4x 4, and the comparison would show the bound being reached, not flatness.

    .venv/bin/python -m bench.scale                      # N = 200 and 800
    .venv/bin/python -m bench.scale --images 80 --shard-size 20   # quick
"""
from __future__ import annotations

import argparse
import subprocess
import tempfile
import time
from pathlib import Path

import psutil

from bench.common import REPO, add_json_flag, at_most, report, result
from bench.shapes_workload import child_env, extract_command, job_summary, write_shapes

GOAL_FLAT = 1.10  # issue 8: memory and per-image time flat from 1x to 4x, within 10%
POLL_SECONDS = 0.05


def tree_rss(process: psutil.Process) -> int:
    """Resident bytes of a process and all its descendants (0 for those that ended meanwhile)."""
    total = 0
    for member in [process, *process.children(recursive=True)]:
        try:
            total += member.memory_info().rss
        except psutil.NoSuchProcess:
            pass
    return total


def run_job(argv: list[str]) -> tuple[dict, float, int]:
    """(job summary, process seconds, peak resident bytes of the process tree)."""
    started = time.perf_counter()
    child = subprocess.Popen(argv, cwd=REPO, env=child_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True)
    watched = psutil.Process(child.pid)
    peak = 0
    while child.poll() is None:
        try:
            peak = max(peak, tree_rss(watched))
        except psutil.NoSuchProcess:
            break
        time.sleep(POLL_SECONDS)
    stdout, stderr = child.communicate()
    seconds = time.perf_counter() - started
    if child.returncode != 0:
        raise RuntimeError(f"extract-features failed:\n{stderr[-3000:]}")
    return job_summary(stdout), seconds, peak


def measure(work: Path, images: int, shard_size: int) -> dict:
    shapes = write_shapes(work / f"shapes-{images}", images)
    summary, process_seconds, peak = run_job(
        extract_command(shapes, work / f"store-{images}", [f"shard_size={shard_size}"]))
    done = summary["images"]
    step_seconds = sum(summary["seconds"].values())
    out = {"images": done, "regions": summary["regions"], "shards": summary["shards"], "peak_rss_mib": peak / 2 ** 20,
           "process_ms_per_image": 1000 * process_seconds / done,
           "job_ms_per_image": 1000 * summary["wall_seconds"] / done,
           "steps_ms_per_image": 1000 * step_seconds / done}
    print(f"  {done:5d} images, {summary['shards']:3d} shards: peak RSS {out['peak_rss_mib']:7.0f} MiB   "
          f"ms/image: process {out['process_ms_per_image']:6.1f}, job {out['job_ms_per_image']:6.1f}, "
          f"steps {out['steps_ms_per_image']:6.1f}")
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=200, help="N; the large run has --factor x N images")
    parser.add_argument("--factor", type=int, default=4)
    parser.add_argument("--shard-size", type=int, default=50)
    add_json_flag(parser)
    args = parser.parse_args(argv)

    print(f"extract-features (DirectRunner, tiny CLIP teacher), shard_size {args.shard_size}")
    with tempfile.TemporaryDirectory(prefix="bench-scale-") as tmp:
        small = measure(Path(tmp), args.images, args.shard_size)
        large = measure(Path(tmp), args.images * args.factor, args.shard_size)
    memory_ratio = large["peak_rss_mib"] / small["peak_rss_mib"]
    time_ratio = large["job_ms_per_image"] / small["job_ms_per_image"]
    steps_ratio = large["steps_ms_per_image"] / small["steps_ms_per_image"]
    print(f"  {args.factor}x / 1x: peak memory {memory_ratio:.2f}, job time per image {time_ratio:.2f}, "
          f"step time per image {steps_ratio:.2f}")
    metrics = {"shard_size": args.shard_size, "factor": args.factor, "1x": small, f"{args.factor}x": large,
               "memory_ratio": memory_ratio, "job_time_per_image_ratio": time_ratio,
               "steps_time_per_image_ratio": steps_ratio}
    goals = [at_most(f"peak memory {args.factor}x / 1x", memory_ratio, GOAL_FLAT, "child process tree, psutil RSS"),
             at_most(f"time per image {args.factor}x / 1x", time_ratio, GOAL_FLAT, "job wall time incl. start-up")]
    return report(result("scale", argv, metrics, goals), args.json)


if __name__ == "__main__":
    raise SystemExit(main())
