"""The ShapesOV workload that bench/trainer.py and bench/scale.py share: a generated sample of any size and the
command line of our extract-features job on it with the committed tiny CLIP teacher."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from bench.common import REPO

TEACHER_CLIP = REPO / "assets" / "teachers" / "clip"
EXTRACT_CONFIG = REPO / "configs" / "shapes" / "extract_features.yaml"


def child_env() -> dict:
    """This process's environment (offline Hugging Face, bench/__init__.py) with the repository importable."""
    return {**os.environ, "PYTHONPATH": str(REPO)}


def write_shapes(out: Path, train: int, val: int = 8) -> Path:
    """`python -m shapesov` (deterministic, seconds); returns `out`."""
    subprocess.run([sys.executable, "-m", "shapesov", "--out", str(out), "--train", str(train),
                    "--val", str(val)], cwd=REPO, env=child_env(), check=True, capture_output=True)
    return out


def extract_command(shapes: Path, store: Path, overrides: list[str] = ()) -> list[str]:
    """The job as `make extract-features` runs it on ShapesOV, pointed at `shapes` and `store`, every input from
    `shapes`. Its proposals are the sample's simulated file, all of them kept (the preset reads the store's proposals
    stage and keeps those its network scores >= 0.6; the simulated scores mean nothing like that), so the benchmark
    needs no trained proposal network."""
    sets = [f"dataset.annotations={shapes / 'annotations' / 'train_base.json'}",
            f"dataset.image_root={shapes / 'images' / 'train'}", f"dataset.split={shapes / 'ov_split.json'}",
            f"dataset.names={shapes / 'names' / 'train.jsonl'}",
            f"dataset.proposals={shapes / 'proposals' / 'train.json'}", "regions.min_proposal_score=0",
            f"model.clip=local-dir:{TEACHER_CLIP}", *overrides]
    argv = [sys.executable, "-m", "beam_jobs.extract_features", "--store", str(store),
            "--config", str(EXTRACT_CONFIG)]
    for value in sets:
        argv += ["--set", value]
    return argv


def job_summary(stdout: str) -> dict:
    """The JSON summary the job prints on stdout (its log goes to stderr)."""
    return json.loads(stdout[stdout.index("{"):])
