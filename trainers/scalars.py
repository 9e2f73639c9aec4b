"""Training scalars: a JSONL file always (readable without TensorBoard), TensorBoard when installed."""
from __future__ import annotations

import json
from pathlib import Path


class ScalarLog:
    def __init__(self, out_dir: Path, enabled: bool = True):
        self.enabled = enabled
        self.file = None
        self.tensorboard = None
        if not enabled:
            return
        out_dir.mkdir(parents=True, exist_ok=True)
        self.file = open(out_dir / "scalars.jsonl", "a")
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:  # tensorboard is optional; the JSONL file holds the same numbers
            SummaryWriter = None
        if SummaryWriter is not None:
            self.tensorboard = SummaryWriter(str(out_dir / "tensorboard"))

    def add(self, step: int, scalars: dict[str, float]) -> None:
        if not self.enabled:
            return
        self.file.write(json.dumps({"step": step, **scalars}) + "\n")
        self.file.flush()
        if self.tensorboard is not None:
            for name, value in scalars.items():
                self.tensorboard.add_scalar(name, value, step)

    def close(self) -> None:
        if self.file is not None:
            self.file.close()
        if self.tensorboard is not None:
            self.tensorboard.close()
