"""The trainer's input pipeline: share of step time spent waiting for data, and images/s, with the tiny detector.

A generated ShapesOV train set goes through our extract-features job (tiny CLIP teacher), then
`python -m trainers.train --config configs/shapes/hdovd.yaml` (the demo's detector, batch 8, one loader worker) runs
`--steps` steps on that store. The trainer itself measures the wait: `data_share` in OUT/scalars.jsonl is the share of
each logging window spent in `next(batch)`; the first window (worker start-up, first shuffle buffer) is reported
separately and left out of the goal.

Then, in this process, the training process's share of moving a batch: the time `next(loader)` takes per batch when
the worker is ahead (a simulated step of `--step-seconds` between batches), with the batch crossing as tensors
(`collate_samples`) and as numpy arrays (`trainers.data.worker_transfer`, what the trainer uses), alternating, in
one run; the ratio is the figure (trainers/data/worker_transfer.py says why they differ).

    .venv/bin/python -m bench.trainer                        # 200 images, 120 steps
    .venv/bin/python -m bench.trainer --images 64 --steps 30  # quick
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

from bench.common import REPO, add_json_flag, at_most, report, result
from bench.shapes_workload import child_env, extract_command, write_shapes

GOAL_DATA_SHARE = 0.10
# Numpy transfer should at least halve the training process's receive time (measured: 0.21 in one run; PERFORMANCE.md).
GOAL_RECEIVE_RATIO = 0.5
TRAIN_CONFIG = REPO / "configs" / "shapes" / "hdovd.yaml"
BATCH_SIZE = 8  # configs/shapes/hdovd.yaml


def train(store: Path, image_root: Path, out_dir: Path, steps: int, log_every: int) -> list[dict]:
    """Run the trainer; returns its scalars.jsonl rows."""
    argv = [sys.executable, "-m", "trainers.train", "--config", str(TRAIN_CONFIG), "--no-eval",
            "--set", f"store={store}", "--set", f"image_root={image_root}", "--set", f"out_dir={out_dir}",
            "--set", f"max_steps={steps}", "--set", f"log_every={log_every}",
            # The workload's store has regions only (no pseudo-labels job): the benchmark measures the data path,
            # which reads the same rows with or without pseudo classes.
            "--set", "hdovd.allow_no_pseudo_labels=true"]
    done = subprocess.run(argv, cwd=REPO, env=child_env(), capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"the trainer failed:\n{done.stderr[-3000:]}")
    return [json.loads(line) for line in (out_dir / "scalars.jsonl").read_text().splitlines() if line.strip()]


def receive_ms(store: Path, image_root: Path, collate: Callable, received: Callable, batches: int,
               step_seconds: float) -> float:
    """Mean ms per batch the training process spends in `next(loader)` (receiving included) with one loader worker
    that is ahead: `step_seconds` of sleep stand for a training step between batches."""
    import torch
    from torch.utils.data import DataLoader

    from trainers.config import StreamConfig
    from trainers.data.streaming import StoreDetectionDataset
    from trainers.vocabulary import load_class_vocabulary

    base = load_class_vocabulary(store).subset(novel=False)
    dataset = StoreDetectionDataset(store, image_root, base.index_of, StreamConfig(image_size=128), BATCH_SIZE)
    spent, measured, epoch = 0.0, 0, 0
    while measured < batches:  # as many epochs as it takes
        dataset.set_position(epoch, 0)
        loader = iter(DataLoader(dataset, batch_size=BATCH_SIZE, num_workers=1, collate_fn=collate,
                                 generator=torch.Generator().manual_seed(epoch)))
        received(next(loader))  # worker start-up and the first shuffle buffer are not what is measured
        for _ in range(batches - measured):
            time.sleep(step_seconds)
            started = time.perf_counter()
            try:
                batch = next(loader)
            except StopIteration:
                break
            received(batch)
            spent += time.perf_counter() - started
            measured += 1
        epoch += 1
    return 1000 * spent / batches


def transfer_comparison(store: Path, image_root: Path, batches: int, step_seconds: float, rounds: int = 2) -> dict:
    """receive_ms with tensors and with numpy arrays, alternating `rounds` times; the mean of each."""
    from trainers.data.streaming import collate_samples
    from trainers.data.worker_transfer import collate_for_transfer, received_batch

    tensors, arrays = [], []
    for _ in range(rounds):
        tensors.append(receive_ms(store, image_root, collate_samples, lambda b: b, batches, step_seconds))
        arrays.append(receive_ms(store, image_root, collate_for_transfer, received_batch, batches, step_seconds))
    tensor_ms, numpy_ms = sum(tensors) / rounds, sum(arrays) / rounds
    return {"tensor_receive_ms": tensor_ms, "numpy_receive_ms": numpy_ms, "receive_ratio": numpy_ms / tensor_ms,
            "receive_batches": batches, "receive_rounds": rounds, "step_seconds": step_seconds}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=200, help="ShapesOV train images in the store")
    parser.add_argument("--steps", type=int, default=120)
    parser.add_argument("--log-every", type=int, default=20)
    parser.add_argument("--receive-batches", type=int, default=40, help="batches per receive-time measurement")
    parser.add_argument("--step-seconds", type=float, default=0.3, help="simulated step between received batches")
    add_json_flag(parser)
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="bench-trainer-") as tmp:
        work = Path(tmp)
        shapes = write_shapes(work / "shapes", args.images)
        subprocess.run(extract_command(shapes, work / "store"), cwd=REPO, env=child_env(), check=True,
                       capture_output=True)
        rows = train(work / "store", shapes / "images" / "train", work / "run", args.steps, args.log_every)
        transfer = transfer_comparison(work / "store", shapes / "images" / "train", args.receive_batches,
                                       args.step_seconds)
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
    print(f"  receiving a batch from the worker: {transfer['tensor_receive_ms']:.1f} ms as tensors, "
          f"{transfer['numpy_receive_ms']:.1f} ms as numpy arrays (ratio {transfer['receive_ratio']:.2f})")
    metrics = {"images": args.images, "steps": args.steps, "batch_size": BATCH_SIZE,
               "data_share": data_share, "it_per_s": it_per_s, "images_per_s": images_per_s,
               "first_window_data_share": first["data_share"], "first_window_it_per_s": first["it_per_s"],
               "windows": [{"step": r["step"], "data_share": r["data_share"], "it_per_s": r["it_per_s"]}
                           for r in rows], **transfer}
    goals = [at_most("share of step time waiting for data", data_share, GOAL_DATA_SHARE,
                     f"mean over logging windows after the first {args.log_every} steps"),
             at_most("receive time per batch, numpy arrays / tensors", transfer["receive_ratio"], GOAL_RECEIVE_RATIO,
                     f"{transfer['receive_batches']} batches x {transfer['receive_rounds']} rounds each, "
                     "alternating, one run")]
    return report(result("trainer", argv, metrics, goals), args.json)


if __name__ == "__main__":
    raise SystemExit(main())
