"""`unlock STORE`: who holds the store's writer lock, and on an object store, clear a lease whose job is gone."""
from __future__ import annotations

from featurestore.commands.render import add_store_argument, emit
from featurestore.manifest import read_manifest
from featurestore.storage import StoreLocation
from featurestore.writer_lock import clear_lease, current_holder


def add_arguments(parser) -> None:
    add_store_argument(parser)
    parser.add_argument("--status", action="store_true", help="only say who holds the lock; change nothing")


def run(args) -> int:
    store = StoreLocation(args.store)
    read_manifest(store)  # refuses a folder that is not a store before anything is written into it
    holder, held = current_holder(store)
    status = {"store": str(store), "held": held, "holder": holder.describe() if holder else None}
    if args.status or not held:
        message = (f"{store}: locked by {status['holder']}" if held else
                   f"{store}: not locked" + (f" (last held by {status['holder']})" if holder else ""))
    elif store.local is not None:
        # A flock cannot be taken from a live process, and it dies with its process: nothing to clear by hand.
        message = (f"{store}: locked by {status['holder']}, a process that is running (the operating system releases "
                   f"the lock when it ends, kill -9 included); stop that process to release it")
        status["cleared"] = False
        _print(args, status, message)
        return 1
    else:
        cleared = clear_lease(store)
        status["cleared"] = True
        message = (f"{store}: cleared the lease of {cleared.describe() if cleared else 'a job'}; if that job still "
                   "runs, it stops at its next lock check")
    _print(args, status, message)
    return 0


def _print(args, status: dict, message: str) -> None:
    if args.json:
        emit(status)
    else:
        print(message)
