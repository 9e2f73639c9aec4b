"""Run extract-features in this process and SIGKILL it at one step of the re-commit of one shard, the way a
runner, the OOM killer or a power cut ends a worker.

    python -m tests.beam_jobs.kill_during_recommit STEP SHARD [job arguments ...]

The steps are every change the commit of SHARD makes on disk, in order: each data file renamed into place
(`featurestore.storage.publish`), the commit record renamed over the old one (`featurestore.atomic.publish`), each
old file removed (`StoreLocation.remove`). The process is killed as step STEP (0-based) is about to happen; a STEP
past the last one kills it right after the commit returns. Exits 3 when the commit of SHARD never started.
"""
import os
import signal
import sys

from beam_jobs import extract_features
from featurestore import atomic, storage, writer
from featurestore.stages import EXTRACT_FEATURES

STEPS_SEEN = "steps seen:"


def kill_at(step: int, shard: int) -> None:
    state = {"active": False, "steps": 0}

    def counted(original):
        def step_then_call(*args, **kwargs):
            if state["active"]:
                if state["steps"] == step:
                    os.kill(os.getpid(), signal.SIGKILL)
                state["steps"] += 1
            return original(*args, **kwargs)
        return step_then_call

    storage.publish = counted(storage.publish)
    atomic.publish = counted(atomic.publish)
    storage.StoreLocation.remove = counted(storage.StoreLocation.remove)
    commit = writer.ShardWriter.commit

    def commit_then_kill(self, shard_index, *args, **kwargs):
        if self.stage != EXTRACT_FEATURES or shard_index != shard:
            return commit(self, shard_index, *args, **kwargs)
        state["active"] = True
        record = commit(self, shard_index, *args, **kwargs)
        state["active"] = False
        print(STEPS_SEEN, state["steps"], flush=True)
        os.kill(os.getpid(), signal.SIGKILL)  # a STEP past the last: right after the commit
        return record

    writer.ShardWriter.commit = commit_then_kill


if __name__ == "__main__":
    kill_at(int(sys.argv[1]), int(sys.argv[2]))
    extract_features.run(sys.argv[3:])
    raise SystemExit(3)
