"""`python -m trainers.train [--config F] [--set k=v …] [--resume CKPT] [--eval-only CKPT]`: train, then evaluate.

`--print-config` prints the resolved config as YAML and exits, touching nothing (presets: configs/train_*.yaml).
Under `torchrun --nproc_per_node N -m trainers.train …` every process trains its share of the shards (DDP), each
on the GPU of its LOCAL_RANK.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import torch
import yaml

from schemas.config import ConfigError, add_config_arguments, load_config, to_dict
from trainers.checkpoint import load_checkpoint
from trainers.config import TrainConfig
from trainers.distributed import pick_device
from trainers.evaluation.ov_coco import format_metrics, save_metrics
from trainers.loop import NonFiniteLossError, train
from trainers.methods import training_method
from trainers.vocabulary import load_class_vocabulary
from trainers.weight_average import evaluated_weights


def evaluate_checkpoint(config: TrainConfig, checkpoint: Path) -> dict:
    """Metrics of the detector in `checkpoint` (its weight average or last weights, `eval.weights`), printed and
    saved as `out_dir`/metrics.json (rows of an ablation that share a checkpoint each keep their own)."""
    device = pick_device(config.device)
    weights, which = evaluated_weights(load_checkpoint(checkpoint), config.eval.weights)
    metrics, details, report = training_method(config.method).evaluate(
        config, weights, load_class_vocabulary(config.store), device)
    path = save_metrics({"metrics": metrics, **details, "checkpoint": str(checkpoint), "weights": which,
                         "config": to_dict(config)}, Path(config.out_dir) / "metrics.json")
    print(f"evaluation ({config.eval.annotations}, {which} weights): {format_metrics(metrics)}  → {path}")
    if report:
        print(report)
    return metrics


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m trainers.train", description=__doc__)
    add_config_arguments(parser)
    parser.add_argument("--resume", default=None, help="continue exactly from this checkpoint")
    parser.add_argument("--eval-only", default=None, metavar="CHECKPOINT", help="evaluate a checkpoint, no training")
    parser.add_argument("--no-eval", action="store_true", help="train only")
    parser.add_argument("--print-config", action="store_true",
                        help="print the resolved config (file + --set) as YAML and exit; nothing is read or written")
    args = parser.parse_args(argv)
    try:
        config = load_config(TrainConfig, args.config, args.overrides)
    except (ConfigError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    if args.print_config:
        print(yaml.safe_dump(to_dict(config), sort_keys=False), end="")
        return 0
    print("config: " + json.dumps(to_dict(config), sort_keys=True))
    if args.eval_only:
        evaluate_checkpoint(config, Path(args.eval_only))
        return 0
    try:
        checkpoint = train(config, resume=args.resume)
    except NonFiniteLossError as error:
        print(f"error: {error}", file=sys.stderr)
        return 3
    if not args.no_eval and int(os.environ.get("RANK", "0")) == 0:
        evaluate_checkpoint(config, checkpoint)
    if torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()
    return 0


if __name__ == "__main__":
    sys.exit(main())
