"""Child process of bench/gpu.py: one run of extract-features in this process (the DirectRunner runs its workers
here), then the job's summary and the device memory it peaked at, as JSON.

    python -m bench.gpu_job RESULT.json JOB-ARGUMENTS...
"""
from __future__ import annotations

import json
import logging
import sys
import time
from pathlib import Path

import torch

from beam_jobs.extract_features import run


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    result_path, job_argv = Path(argv[0]), argv[1:]
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s", force=True)
    started = time.perf_counter()
    summary = run(job_argv)
    seconds = time.perf_counter() - started
    peak = torch.cuda.max_memory_allocated() if torch.cuda.is_available() else None
    result_path.write_text(json.dumps({"summary": summary, "run_seconds": seconds, "device_memory_peak_bytes": peak}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
