"""Hold a store's writer lock in this process until killed: the other side of the lock tests.

    python -m tests.featurestore.lock_holder STORE [LEASE_SECONDS]

Prints READY once the lock is held, then sleeps.
"""
import sys
import time

from featurestore.writer_lock import LEASE_SECONDS, WriterLock

if __name__ == "__main__":
    lease = float(sys.argv[2]) if len(sys.argv) > 2 else LEASE_SECONDS
    lock = WriterLock(sys.argv[1], "lock test", lease_seconds=lease)
    lock.acquire()
    print("READY", flush=True)
    time.sleep(3600)
