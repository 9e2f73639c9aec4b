"""Run a Beam job in this process and kill the process right after its first shard is committed, the way a
runner kills a worker: the crash of the kill-and-resume tests, injected from outside the job.

    python -m tests.beam_jobs.crash_after_commit [--sigkill] proposals|extract_features|pseudo_labels [job arguments ...]

Without --sigkill the process ends with exit code 17 (os._exit, no clean-up); with it, it kills itself with
SIGKILL, as `kill -9` does.
"""
import importlib
import os
import signal
import sys

import apache_beam as beam

CRASH_EXIT_CODE = 17


class ExitAfterCommit(beam.DoFn):
    """A committed shard's stats → nothing; the process ends here, before the next shard is committed."""

    def process(self, stats):
        os._exit(CRASH_EXIT_CODE)


class KillAfterCommit(beam.DoFn):
    """A committed shard's stats → nothing; the process gets SIGKILL here, before the next shard is committed."""

    def process(self, stats):
        os.kill(os.getpid(), signal.SIGKILL)


if __name__ == "__main__":
    arguments = sys.argv[1:]
    crash = KillAfterCommit() if arguments[0] == "--sigkill" else ExitAfterCommit()
    arguments = arguments[1:] if arguments[0] == "--sigkill" else arguments
    job = importlib.import_module(f"beam_jobs.{arguments[0]}")
    job.run(arguments[1:], after_commit=crash)
    raise SystemExit("the job finished without committing a shard")
