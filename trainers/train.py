"""`python -m trainers.train [--config F …] [--set k=v …] [--resume CKPT] [--eval-only CKPT]`: train, then evaluate.

The config is a stack of YAML files (`--config` repeatable, each after the files its `_base_` key names) and
`--set` overrides; its `method` key picks the method, whose section alone the run carries. `--print-config` prints
the resolved config as YAML and exits, touching nothing (presets: configs/). Under `torchrun --nproc_per_node N -m
trainers.train …` every process trains its share of the data (DDP), each on the GPU of its LOCAL_RANK.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import torch
import yaml

from schemas.config import ConfigError, add_config_arguments, merged_config_data, origins_named, to_dict
from trainers.checkpoint_evaluation import evaluate_checkpoint
from trainers.loop import NonFiniteLossError, train
from trainers.methods import load_run_config, training_method


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m trainers.train", description=__doc__)
    add_config_arguments(parser)
    parser.add_argument("--resume", default=None, help="continue exactly from this checkpoint")
    parser.add_argument("--eval-only", default=None, metavar="CHECKPOINT", help="evaluate a checkpoint, no training")
    parser.add_argument("--no-eval", action="store_true", help="train only")
    parser.add_argument("--print-config", action="store_true",
                        help="print the resolved config (files + --set) as YAML and exit; nothing is read or written")
    args = parser.parse_args(argv)
    try:
        config = load_run_config(args.config, args.overrides)
    except ConfigError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    if args.print_config:
        print(yaml.safe_dump(to_dict(config), sort_keys=False), end="")
        return 0
    method = training_method(config.method)
    print("config: " + json.dumps(to_dict(config), sort_keys=True))
    # Before any work: what the run will read is there; an error names the key and the file (or --set) that set it.
    try:
        for flag, checkpoint in (("--eval-only", args.eval_only), ("--resume", args.resume)):
            if checkpoint and not Path(checkpoint).is_file():
                raise ConfigError(f"flag {flag}: no checkpoint at {checkpoint}")
        with origins_named(merged_config_data(args.config, args.overrides)[1]):
            method.check(config, not args.eval_only, bool(args.eval_only) or not args.no_eval)
    except ConfigError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    if args.eval_only:
        evaluate_checkpoint(config, method, Path(args.eval_only))
        return 0
    try:
        checkpoint = train(config, method, resume=args.resume)
    except NonFiniteLossError as error:
        print(f"error: {error}", file=sys.stderr)
        return 3
    if not args.no_eval and int(os.environ.get("RANK", "0")) == 0:
        evaluate_checkpoint(config, method, checkpoint)
    if torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()
    return 0


if __name__ == "__main__":
    sys.exit(main())
