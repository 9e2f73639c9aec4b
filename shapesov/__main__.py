"""`python -m shapesov --out data/shapes --seed 0 --train 2000 --val 300`: generate ShapesOV."""
from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path

from shapesov.config import ShapesConfig
from shapesov.dataset import write_dataset
from schemas.config import add_config_arguments, load_config, to_dict


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m shapesov", description=__doc__)
    parser.add_argument("--out", required=True, type=Path, help="output directory, e.g. data/shapes")
    parser.add_argument("--seed", type=int, default=None, help="overrides the config's seed")
    parser.add_argument("--train", type=int, default=None, help="number of train images (config: train_images)")
    parser.add_argument("--val", type=int, default=None, help="number of val images (config: val_images)")
    add_config_arguments(parser)
    args = parser.parse_args(argv)
    cfg = load_config(ShapesConfig, args.config, args.overrides)
    flag_overrides = {"seed": args.seed, "train_images": args.train, "val_images": args.val}
    cfg = dataclasses.replace(cfg, **{k: v for k, v in flag_overrides.items() if v is not None})
    print(json.dumps(to_dict(cfg), indent=1))
    start = time.perf_counter()
    write_dataset(args.out, cfg, to_dict(cfg))
    print(f"ShapesOV written to {args.out}: {cfg.train_images} train + {cfg.val_images} val images "
          f"in {time.perf_counter() - start:.1f}s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
