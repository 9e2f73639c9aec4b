"""OV-LVIS evaluation with the `lvis` API: box AP, AP_r (rare = novel), AP_c, AP_f, at most 300 detections per image."""
from __future__ import annotations

import contextlib
import io
import logging
from pathlib import Path

import numpy as np

LVIS_MAX_DETECTIONS = 300  # LVIS protocol (lvis-api LVISResults default)
LVIS_METRICS = ("AP", "AP50", "AP75", "APs", "APm", "APl", "APr", "APc", "APf")


@contextlib.contextmanager
def _numpy_float_alias():
    """lvis 0.5.3's accumulate() calls np.float, which NumPy 2 removed; restore the alias only while it runs."""
    had_alias = "float" in np.__dict__
    if not had_alias:
        np.float = float  # the builtin is exactly what the removed alias was
    try:
        yield
    finally:
        if not had_alias:
            del np.float


def evaluate_lvis(ground_truth_path: str | Path, results: list[dict],
                  max_detections: int = LVIS_MAX_DETECTIONS) -> dict[str, float]:
    """Box metrics of COCO-style results `[{image_id, category_id, bbox, score}]` against an LVIS JSON file.

    Returns {AP, AP50, AP75, APs, APm, APl, APr, APc, APf} as fractions (lvis reports −1 for an empty group).
    """
    # Imported here for start-up time only: lvis pulls in matplotlib and more (about 0.6 s measured with
    # `python -X importtime`), which OV-COCO runs never need.
    from lvis import LVIS, LVISEval, LVISResults

    path = Path(ground_truth_path)
    if not path.is_file():
        raise FileNotFoundError(f"LVIS annotations not found: {path}")
    if not results:
        raise ValueError("no detections to evaluate (LVISResults cannot take an empty list)")
    # lvis logs every step at INFO and prints its tables; keep our console to the summary line.
    logging.getLogger("lvis").setLevel(logging.WARNING)
    with contextlib.redirect_stdout(io.StringIO()):
        ground_truth = LVIS(str(path))
        detections = LVISResults(ground_truth, [dict(r) for r in results], max_dets=max_detections)
        evaluator = LVISEval(ground_truth, detections, iou_type="bbox")
        with _numpy_float_alias():
            evaluator.run()
    summary = evaluator.get_results()
    return {name: float(summary[name]) for name in LVIS_METRICS}
