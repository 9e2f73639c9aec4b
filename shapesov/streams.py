"""Named random streams: every random choice of ShapesOV and of the teachers' renders is keyed by purpose and index."""
from __future__ import annotations

import numpy as np

# Every random stream is keyed by (seed, purpose, index): changing the number of train images leaves val unchanged,
# and changing the proposal noise leaves the images unchanged.
# A teacher stream's boxes on nothing come from "<purpose>_background" (shapesov/teachers/crops.py): the same scenes
# keep the same object crops whether or not boxes on nothing are drawn beside them.
STREAM_CODES = {"train": 1, "val": 2, "broken": 3, "teacher_clip": 4, "teacher_caption": 5, "teacher_eval": 6,
                "teacher_clip_background": 7, "teacher_eval_background": 8, "teacher_vlm": 9}
PROPOSAL_STREAM_OFFSET = 100
# COCO ids must be unique across files that may be merged; each split gets its own id range.
ID_OFFSETS = {"train": 0, "val": 10_000_000, "broken": 20_000_000}


def stream_rng(seed: int, purpose: str, index: int) -> np.random.Generator:
    """The random generator of item `index` of stream `purpose` (a key of STREAM_CODES)."""
    return np.random.default_rng([seed, STREAM_CODES[purpose], index])


def proposal_rng(seed: int, split: str, index: int) -> np.random.Generator:
    """The proposal-noise generator of image `index` of `split`, independent of the image's own stream."""
    return np.random.default_rng([seed, PROPOSAL_STREAM_OFFSET + STREAM_CODES[split], index])
