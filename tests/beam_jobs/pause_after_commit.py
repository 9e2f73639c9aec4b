"""Run a Beam job in this process and pause it after its first committed shard until a file appears: a job that
holds its store's writer lock for as long as a test needs.

    python -m tests.beam_jobs.pause_after_commit GO_FILE extract_features|pseudo_labels [job arguments ...]

Prints PAUSED when the first shard is committed, then waits for GO_FILE to exist and runs on to the end.
"""
import importlib
import sys
import time
from pathlib import Path

import apache_beam as beam


class PauseAfterCommit(beam.DoFn):
    """A committed shard's stats → nothing; the first one waits for the go file."""

    def __init__(self, go: str):
        self._go = go

    def process(self, stats):
        print("PAUSED", flush=True)
        while not Path(self._go).exists():
            time.sleep(0.1)
        return []


if __name__ == "__main__":
    go, job_name, *arguments = sys.argv[1:]
    job = importlib.import_module(f"beam_jobs.{job_name}")
    job.run(arguments, after_commit=PauseAfterCommit(go))
    print("DONE", flush=True)
