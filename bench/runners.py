"""What each Beam runner costs here: extract-features on the same ShapesOV images (tiny CLIP teacher) with every
runner `make extract-features RUNNER=…` offers, and with the store on a local disk or in an S3 bucket (moto's
server on loopback, the tests' object store).

Each run is a child process started exactly as the Makefile starts the job (the flags of beam_jobs.runners); the
figures are the whole process's wall time (imports, runner start-up, model loads included) and the job's own wall
time from its summary. A runner that cannot be set up here (the Flink job server jar) is reported with the error.

    .venv/bin/python -m bench.runners                     # 256 images, shard_size 64
    .venv/bin/python -m bench.runners --images 64 --runners DirectRunner PrismRunner
"""
from __future__ import annotations

import argparse
import os
import subprocess
import tempfile
import time
from pathlib import Path

from bench.common import REPO, add_json_flag, report, result
from bench.shapes_workload import child_env, extract_command, job_summary, write_shapes
from beam_jobs.runners import RunnerSetupError, runner_flags
from featurestore.validate import validate_store
from tests.object_store import start_s3_server

RUNS = {  # name → (RUNNER of the Makefile, extra Beam options, store kind)
    "DirectRunner": ("DirectRunner", [], "local"),
    "DirectRunner, store on S3": ("DirectRunner", [], "s3"),
    "DirectRunner multi_processing x2": ("DirectRunner", ["--direct_running_mode=multi_processing",
                                                          "--direct_num_workers=2"], "local"),
    "PrismRunner": ("PrismRunner", [], "local"),
    "FlinkRunner [local] x2": ("FlinkRunner", [], "local"),
}


def run_once(command: list[str], env: dict) -> tuple[dict, float]:
    started = time.perf_counter()
    done = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(f"extract-features failed:\n{done.stderr[-3000:]}")
    return job_summary(done.stdout), seconds


def measure(name: str, shapes: Path, work: Path, shard_size: int, s3_env: dict | None, bucket: str | None) -> dict:
    runner, extra, kind = RUNS[name]
    try:
        flags = runner_flags(runner)
    except RunnerSetupError as error:
        print(f"  {name:34s} not run: {str(error).splitlines()[0]}")
        return {"run": name, "error": str(error)}
    store = f"{bucket}/{runner.lower()}" if kind == "s3" else str(work / name.replace(" ", "-"))
    env = {**child_env(), **(s3_env or {})}
    os.environ.update(s3_env or {})  # validate below reads the bucket from this process
    overrides = [f"shard_size={shard_size}", f"dataset.names={shapes / 'names' / 'train.jsonl'}"]
    summary, seconds = run_once(extract_command(shapes, store, overrides) + flags + extra, env)
    problems = validate_store(store)
    out = {"run": name, "images": summary["images"], "crops": summary["crops"], "shards": summary["shards"],
           "process_seconds": round(seconds, 1), "job_seconds": summary["wall_seconds"],
           "images_per_second": round(summary["images"] / summary["wall_seconds"], 2), "valid": not problems,
           "load_average_1min": round(os.getloadavg()[0], 2)}
    print(f"  {name:34s} {out['images']} images, {out['shards']} shards: process {seconds:6.1f} s, job "
          f"{summary['wall_seconds']:6.1f} s ({out['images_per_second']:.2f} images/s), valid {out['valid']}, "
          f"load {out['load_average_1min']}")
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=256)
    parser.add_argument("--shard-size", type=int, default=64)
    parser.add_argument("--runners", nargs="+", default=list(RUNS), choices=list(RUNS), metavar="RUN")
    add_json_flag(parser)
    args = parser.parse_args(argv)

    print(f"extract-features on {args.images} ShapesOV images, tiny CLIP teacher, shard_size {args.shard_size}")
    runs = []
    with tempfile.TemporaryDirectory(prefix="bench-runners-") as tmp:
        work = Path(tmp)
        shapes = write_shapes(work / "shapes", args.images)
        server = start_s3_server(work / "moto.log") if any(RUNS[r][2] == "s3" for r in args.runners) else None
        try:
            bucket = server.new_bucket() if server else None
            for name in args.runners:
                runs.append(measure(name, shapes, work, args.shard_size, server.env if server else None, bucket))
        finally:
            if server:
                server.stop()
    baseline = next((r for r in runs if r["run"] == "DirectRunner" and "error" not in r), None)
    notes = [f"{r['run']}: {r['job_seconds'] / baseline['job_seconds']:.2f}x the DirectRunner's job time"
             for r in runs if baseline and "error" not in r and r is not baseline]
    return report(result("runners", argv, {"images": args.images, "shard_size": args.shard_size, "runs": runs},
                         [], notes), args.json)


if __name__ == "__main__":
    raise SystemExit(main())
