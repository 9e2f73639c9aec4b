"""Small training runs on the tiny store of tests/conftest.py: their config, the run itself, its logged losses."""
from __future__ import annotations

import json
from pathlib import Path

from tests.featurestore.store_factory import DIM
from trainers.checkpoint_evaluation import evaluate_checkpoint
from trainers.config import TrainConfig
from trainers.loop import train
from trainers.methods import load_run_config, training_method

TINY_HDOVD = {"hdovd.detector.embed_dim": DIM, "hdovd.detector.min_size": 64, "hdovd.detector.max_size": 64}


def tiny_config(root: Path, out: Path, **overrides) -> TrainConfig:
    """A run on the tiny store at `root` writing to `out`: HD-OVD's tiny detector unless `method` is overridden
    (a run carries only its own method's keys)."""
    settings = {"store": root / "store", "image_root": root / "images", "out_dir": out, "stream.image_size": 64,
                "stream.shuffle_buffer": 3, "batch_size": 2, "num_workers": 0, "log_every": 1,
                "checkpoint_every": 1000, "optim.warmup_steps": 2, "eval.annotations": root / "val.json",
                "eval.image_root": root / "images"}
    if overrides.get("method", "hdovd") == "hdovd":
        settings.update(TINY_HDOVD)
    settings.update(overrides)
    return load_run_config(None, [f"{key}={value}" for key, value in settings.items()])


def train_run(config: TrainConfig, resume: str | Path | None = None) -> Path:
    """Train with the config's own method; returns the final checkpoint."""
    return train(config, training_method(config.method), resume=resume)


def evaluate_run(config: TrainConfig, checkpoint: Path) -> dict:
    return evaluate_checkpoint(config, training_method(config.method), checkpoint)


def step_losses(out_dir: Path) -> dict[int, float]:
    lines = (Path(out_dir) / "scalars.jsonl").read_text().splitlines()
    return {row["step"]: row["loss"] for row in map(json.loads, lines)}
