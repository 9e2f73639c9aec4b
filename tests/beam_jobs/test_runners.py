"""beam_jobs.runners: what runner set-up writes into the cache."""
import os
import threading
from concurrent.futures import ThreadPoolExecutor

from beam_jobs.runners import sdk_worker_command


def test_sdk_worker_command_written_from_many_threads_at_once(tmp_path):
    # The suite sets up Prism and Flink on two threads of one process; both write the worker script. A partial
    # file named after the process alone let one thread rename the other's file away (FileNotFoundError).
    threads = 8
    for attempt in range(50):
        cache = tmp_path / str(attempt)
        start = threading.Barrier(threads)

        def write(_):
            start.wait()
            return sdk_worker_command(cache)

        with ThreadPoolExecutor(max_workers=threads) as pool:
            paths = set(pool.map(write, range(threads)))
        assert len(paths) == 1
        script = paths.pop()
        assert os.access(script, os.X_OK)
        assert "-m beam_jobs.sdk_worker" in script.read_text()
        assert [p.name for p in cache.iterdir()] == [script.name]
