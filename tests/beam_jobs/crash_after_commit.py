"""Run a Beam job in this process and kill the process right after its first shard is committed, the way a
runner kills a worker: the crash of the kill-and-resume test, injected from outside the job.

    python -m tests.beam_jobs.crash_after_commit extract_features [job arguments ...]
"""
import importlib
import os
import sys

import apache_beam as beam

CRASH_EXIT_CODE = 17


class ExitAfterCommit(beam.DoFn):
    """A committed shard's stats → nothing; the process ends here, before the next shard is committed."""

    def process(self, stats):
        os._exit(CRASH_EXIT_CODE)


if __name__ == "__main__":
    job = importlib.import_module(f"beam_jobs.{sys.argv[1]}")
    job.run(sys.argv[2:], after_commit=ExitAfterCommit())
    raise SystemExit("the job finished without committing a shard")
