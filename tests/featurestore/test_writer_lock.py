"""One writer per store: a second holder refuses naming the first (user, host, pid, start, command) and how to
clear it; on a local folder the lock dies with its process (kill -9 included); on an object store (a real S3
server) it is a lease: taken at once from a killed job of this machine, expiring when not renewed, cleared by
`unlock`, and whose loss its holder notices."""
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from featurestore.cli import main
from featurestore.writer_lock import LockLostError, StoreLockedError, WriterLock, current_holder
from tests.featurestore.store_factory import write_store

REPO = Path(__file__).resolve().parents[2]


def hold_in_subprocess(store: str, lease: float | None = None) -> subprocess.Popen:
    holder = subprocess.Popen([sys.executable, "-m", "tests.featurestore.lock_holder", str(store),
                               *([str(lease)] if lease else [])], cwd=REPO, stdout=subprocess.PIPE, text=True,
                              env={**os.environ, "PYTHONPATH": str(REPO)})
    assert holder.stdout.readline().strip() == "READY"
    return holder


def test_a_second_writer_on_a_local_store_refuses_naming_the_first(tmp_path):
    root = write_store(tmp_path / "store", shards=1, with_pseudo_labels=False)
    with WriterLock(root, "first job"):
        with pytest.raises(StoreLockedError) as error:
            WriterLock(root, "second job").acquire()
        message = str(error.value)
        assert f"pid {os.getpid()}" in message and socket.gethostname() in message and "since" in message
        assert "This second job writes nothing" in message and "kill -9 included" in message
        holder, held = current_holder(root)
        assert held and holder.pid == os.getpid()
    with WriterLock(root, "second job"):  # released
        pass


@pytest.mark.slow
def test_a_local_lock_dies_with_its_process(tmp_path, capsys):
    root = write_store(tmp_path / "store", shards=1, with_pseudo_labels=False)
    holder = hold_in_subprocess(root)
    try:
        with pytest.raises(StoreLockedError, match=f"pid {holder.pid}"):
            WriterLock(root, "job").acquire()
        assert main(["unlock", str(root)]) == 1  # a live holder's flock cannot be taken; the message says so
        assert f"pid {holder.pid}" in capsys.readouterr().out
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    with WriterLock(root, "job"):  # the kernel dropped the dead holder's lock: no stale lock to clear
        assert current_holder(root)[1]
    assert main(["unlock", str(root), "--status"]) == 0 and "not locked" in capsys.readouterr().out


def test_an_object_store_lease_of_a_killed_job_on_this_machine_is_taken_at_once(s3_bucket, caplog):
    url = write_store(f"{s3_bucket}/store", shards=1, with_pseudo_labels=False)
    holder = hold_in_subprocess(url, lease=3.0)
    with pytest.raises(StoreLockedError) as error:
        WriterLock(url, "job", lease_seconds=3.0).acquire()
    assert f"pid {holder.pid}" in str(error.value) and f"python -m featurestore unlock {url}" in str(error.value)
    time.sleep(4.0)  # renewed every lease / 4 while its holder lives
    with pytest.raises(StoreLockedError):
        WriterLock(url, "job", lease_seconds=3.0).acquire()
    holder.send_signal(signal.SIGKILL)
    holder.wait()
    with caplog.at_level("WARNING", logger="featurestore.writer_lock"):
        with WriterLock(url, "job"):  # its pid is gone from this machine: no wait for the lease
            assert current_holder(url)[0].pid == os.getpid()
    assert "taking over the lease of" in caplog.text and f"pid {holder.pid}" in caplog.text


def test_a_lease_not_renewed_expires_and_its_holder_finds_it_lost(s3_bucket):
    """A holder that stops renewing while its process lives (a stalled driver, or one on another machine): the
    lease blocks others until it runs out, then the next job takes it and the stalled holder is told at its check."""
    url = write_store(f"{s3_bucket}/store", shards=1, with_pseudo_labels=False)
    stalled = WriterLock(url, "stalled job", lease_seconds=2.0)
    stalled.acquire()
    stalled._stop.set()  # its renewals stop
    stalled._renewer.join()
    with pytest.raises(StoreLockedError, match="Its lease expires"):
        WriterLock(url, "next job", lease_seconds=2.0).acquire()
    time.sleep(2.5)
    with WriterLock(url, "next job"):
        stalled.renew()
        with pytest.raises(LockLostError, match="lost its writer lock"):
            stalled.check()
    stalled.release()


def test_two_holders_racing_for_an_object_store_lease_get_one_lock(s3_bucket):
    url = write_store(f"{s3_bucket}/store", shards=1, with_pseudo_labels=False)
    first, second = WriterLock(url, "a"), WriterLock(url, "b")
    second._latest = lambda: None  # it looked before the first one created the lease, and saw none
    first.acquire()
    try:
        with pytest.raises(StoreLockedError):  # create-only: the same generation cannot be created twice
            second.acquire()
    finally:
        first.release()


def test_unlock_clears_a_lease_and_its_holder_finds_it_lost(s3_bucket, capsys):
    url = write_store(f"{s3_bucket}/store", shards=1, with_pseudo_labels=False)
    lock = WriterLock(url, "stalled job")
    lock.acquire()
    try:
        assert main(["unlock", url]) == 0 and "cleared the lease" in capsys.readouterr().out
        lock.renew()
        with pytest.raises(LockLostError, match="lost its writer lock"):
            lock.check()
        with WriterLock(url, "next job"):
            pass
    finally:
        lock.release()
