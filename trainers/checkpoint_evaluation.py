"""Evaluate the detector a checkpoint holds (its weight average or its last weights) with its method's evaluation."""
from __future__ import annotations

from pathlib import Path

from schemas.config import to_dict
from trainers.checkpoint import load_checkpoint
from trainers.config import TrainConfig
from trainers.distributed import pick_device
from trainers.evaluation.ov_coco import format_metrics, save_metrics
from trainers.training_method import TrainingMethod
from trainers.weight_average import evaluated_weights


def evaluate_checkpoint(config: TrainConfig, method: TrainingMethod, checkpoint: Path) -> dict:
    """Metrics of the detector in `checkpoint` (its weight average or last weights, `eval.weights`), printed and
    saved as `out_dir`/metrics.json (rows of an ablation that share a checkpoint each keep their own)."""
    device = pick_device(config.device)
    weights, which = evaluated_weights(load_checkpoint(checkpoint), config.eval.weights)
    context = method.prepare(config, device)
    metrics, details, report = method.evaluate(config, context, weights, device)
    path = save_metrics({"metrics": metrics, **details, "checkpoint": str(checkpoint), "weights": which,
                         "config": to_dict(config)}, Path(config.out_dir) / "metrics.json")
    evaluated = getattr(config.eval, "annotations", None)
    print(f"evaluation ({evaluated + ', ' if evaluated else ''}{which} weights): {format_metrics(metrics)}  → {path}")
    if report:
        print(report)
    return metrics
