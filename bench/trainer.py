"""The trainer's input pipeline: share of step time spent waiting for data, and images/s, with the tiny detector.

A generated ShapesOV train set goes through our extract-features job (tiny CLIP teacher), then
`python -m trainers.train --config configs/train_shapes.yaml` (the demo's detector, batch 8, one loader worker) runs
`--steps` steps on that store. The trainer itself measures the wait: `data_share` in OUT/scalars.jsonl is the share of
each logging window spent in `next(batch)`; the first window (worker start-up, first shuffle buffer) is reported
separately and left out of the goal.

    .venv/bin/python -m bench.trainer                        # 200 images, 120 steps
    .venv/bin/python -m bench.trainer --images 64 --steps 30  # quick
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

from bench.common import REPO, add_json_flag, at_most, report, result
from bench.shapes_workload import child_env, extract_command, write_shapes

GOAL_DATA_SHARE = 0.10
TRAIN_CONFIG = REPO / "configs" / "train_shapes.yaml"
BATCH_SIZE = 8  # configs/train_shapes.yaml


def train(store: Path, image_root: Path, out_dir: Path, steps: int, log_every: int) -> list[dict]:
    """Run the trainer; returns its scalars.jsonl rows."""
    argv = [sys.executable, "-m", "trainers.train", "--config", str(TRAIN_CONFIG), "--no-eval",
            "--set", f"store={store}", "--set", f"image_root={image_root}", "--set", f"out_dir={out_dir}",
            "--set", f"max_steps={steps}", "--set", f"log_every={log_every}"]
    done = subprocess.run(argv, cwd=REPO, env=child_env(), capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"the trainer failed:\n{done.stderr[-3000:]}")
    return [json.loads(line) for line in (out_dir / "scalars.jsonl").read_text().splitlines() if line.strip()]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=200, help="ShapesOV train images in the store")
    parser.add_argument("--steps", type=int, default=120)
    parser.add_argument("--log-every", type=int, default=20)
    add_json_flag(parser)
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="bench-trainer-") as tmp:
        work = Path(tmp)
        shapes = write_shapes(work / "shapes", args.images)
        subprocess.run(extract_command(shapes, work / "store"), cwd=REPO, env=child_env(), check=True,
                       capture_output=True)
        rows = train(work / "store", shapes / "images" / "train", work / "run", args.steps, args.log_every)
    first, steady = rows[0], rows[1:] or rows
    # Windows have equal step counts, so the plain mean over windows is the share over those steps.
    data_share = sum(r["data_share"] for r in steady) / len(steady)
    it_per_s = sum(r["it_per_s"] for r in steady) / len(steady)
    images_per_s = it_per_s * BATCH_SIZE
    print(f"tiny detector, batch {BATCH_SIZE}, {args.steps} steps on {args.images} ShapesOV images")
    print(f"  first {args.log_every} steps: data wait {100 * first['data_share']:.1f}% of step time, "
          f"{first['it_per_s']:.2f} it/s")
    print(f"  after that: data wait {100 * data_share:.1f}% of step time, {it_per_s:.2f} it/s = "
          f"{images_per_s:.1f} images/s")
    metrics = {"images": args.images, "steps": args.steps, "batch_size": BATCH_SIZE,
               "data_share": data_share, "it_per_s": it_per_s, "images_per_s": images_per_s,
               "first_window_data_share": first["data_share"], "first_window_it_per_s": first["it_per_s"],
               "windows": [{"step": r["step"], "data_share": r["data_share"], "it_per_s": r["it_per_s"]}
                           for r in rows]}
    goals = [at_most("share of step time waiting for data", data_share, GOAL_DATA_SHARE,
                     f"mean over logging windows after the first {args.log_every} steps")]
    return report(result("trainer", argv, metrics, goals), args.json)


if __name__ == "__main__":
    raise SystemExit(main())
