"""The rows of HD-OVD's Table V as configs: train each, evaluate each, print the table in the paper's shape.

`python -m trainers.hdovd.ablation --rows base_only,hdovd [--config F] [--set k=v …] --out runs/table5`
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

from schemas.config import ConfigError, add_config_arguments, config_hash, load_config
from trainers.checkpoint_evaluation import evaluate_checkpoint
from trainers.hdovd.config import HdovdRunConfig, InferenceConfig
from trainers.hdovd.method import HDOVD
from trainers.loop import train

_OFF = {"hdovd.loss.instance_contrastive": False, "hdovd.loss.instance_relational": False,
        "hdovd.loss.pseudo_classes": False, "hdovd.loss.pseudo_weighting": False,
        "hdovd.loss.image_contrastive": False, "hdovd.inference.ensemble": False}

# HD-OVD Table V, top to bottom: each row switches one more component on (columns CKD, RKD, Cls., Wei.,
# image, Ens.). Row names are what `--rows` takes.
TABLE_V = {
    "base_only": {},
    "ckd": {"hdovd.loss.instance_contrastive": True},
    "ckd_rkd": {"hdovd.loss.instance_contrastive": True, "hdovd.loss.instance_relational": True},
    "cls": {"hdovd.loss.instance_contrastive": True, "hdovd.loss.instance_relational": True,
            "hdovd.loss.pseudo_classes": True},
    "cls_weighted": {"hdovd.loss.instance_contrastive": True, "hdovd.loss.instance_relational": True,
                     "hdovd.loss.pseudo_classes": True, "hdovd.loss.pseudo_weighting": True},
    "image": {"hdovd.loss.instance_contrastive": True, "hdovd.loss.instance_relational": True,
              "hdovd.loss.pseudo_classes": True, "hdovd.loss.pseudo_weighting": True,
              "hdovd.loss.image_contrastive": True},
    "hdovd": {key: True for key in _OFF},
}
COLUMNS = ("instance_contrastive", "instance_relational", "pseudo_classes", "pseudo_weighting",
           "image_contrastive", "ensemble")
HEADERS = ("CKD", "RKD", "Cls.", "Wei.", "image", "Ens.")


def row_overrides(row: str) -> list[str]:
    if row not in TABLE_V:
        raise KeyError(f"unknown Table V row {row!r}; rows are {', '.join(TABLE_V)}")
    switches = {**_OFF, **TABLE_V[row]}
    return [f"{key}={str(value).lower()}" for key, value in switches.items()]


def training_key(config: HdovdRunConfig) -> str:
    """Hash of everything that shapes training: the config without its inference and output settings."""
    hdovd = dataclasses.replace(config.hdovd, inference=InferenceConfig())
    return config_hash(dataclasses.replace(config, hdovd=hdovd, out_dir=""))


def format_table(results: dict[str, dict]) -> str:
    """Markdown table: one row per run, check marks for its switches, AP50 / AP50_base / AP50_novel in %."""
    lines = ["| row | " + " | ".join(HEADERS) + " | AP50 | AP50_base | AP50_novel |",
             "|" + "---|" * (len(HEADERS) + 4)]
    for row, result in results.items():
        switches = {**_OFF, **TABLE_V[row]}
        marks = ["✓" if switches[k] else "" for k in
                 [f"hdovd.loss.{c}" if c != "ensemble" else "hdovd.inference.ensemble" for c in COLUMNS]]
        metrics = result["metrics"]
        values = [f"{100 * metrics[k]:.1f}" if metrics.get(k) is not None else "n/a"
                  for k in ("AP50_all", "AP50_base", "AP50_novel")]
        lines.append(f"| {row} | " + " | ".join(marks + values) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m trainers.hdovd.ablation", description=__doc__)
    add_config_arguments(parser)
    parser.add_argument("--rows", default=",".join(TABLE_V), help="comma-separated rows of Table V")
    parser.add_argument("--out", default="runs/table5", help="one run directory per row under this one")
    parser.add_argument("--reuse", action="store_true", help="evaluate a row's existing checkpoint, no training")
    args = parser.parse_args(argv)
    rows = {row: load_config(HdovdRunConfig, args.config,
                             [*args.overrides, *row_overrides(row), f"out_dir={Path(args.out) / row}"])
            for row in args.rows.split(",")}
    try:  # every row's checks before the first trains (trainers.preflight)
        for config in rows.values():
            HDOVD.check(config, not args.reuse, True)
    except ConfigError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    results, trained = {}, {}
    for row, config in rows.items():
        out_dir = Path(args.out) / row
        # Rows that differ only in inference (the "Ens." column) share one trained model.
        key = training_key(config)
        checkpoint = trained.get(key, out_dir / "checkpoint.pt")
        if key not in trained and not (args.reuse and checkpoint.is_file()):
            print(f"== Table V row {row}")
            checkpoint = train(config, HDOVD)
        trained[key] = checkpoint
        print(f"== Table V row {row}: evaluating {checkpoint}")
        results[row] = {"metrics": evaluate_checkpoint(config, HDOVD, checkpoint), "checkpoint": str(checkpoint)}
    table = format_table(results)
    Path(args.out).mkdir(parents=True, exist_ok=True)
    (Path(args.out) / "table5.md").write_text(table + "\n")
    (Path(args.out) / "table5.json").write_text(json.dumps(results, indent=2) + "\n")
    print("\nHD-OVD Table V on " + load_config(HdovdRunConfig, args.config, args.overrides).store + "\n" + table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
