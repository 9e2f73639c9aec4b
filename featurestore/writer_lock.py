"""One writer per store: the lock a job's driver (and `gc`, `validate --repair`) holds while it changes a store.

A second job on the same store refuses at its start, naming who holds the lock (user, host, pid, start time,
command) and how a lock is cleared. Two forms, one per kind of storage:

- a local folder: `STORE/_writer.lock`, a file holding the holder's details, locked with `flock` (exclusive, not
  blocking). The operating system drops the lock when the holding process ends in any way, `kill -9` and an OOM kill
  included, so a lock never outlives its job on one machine; the file stays, naming the last holder. Over NFS the
  lock is the file server's (Linux maps flock to NFS byte-range locks) and its lock recovery frees a dead client's.
- an object store (no file locks): a lease. The holder creates `STORE/_lock/<generation>.json` create-only (S3
  `If-None-Match: *`): exactly one of two jobs starting at once creates the next generation. The holder renews its
  lease every LEASE_SECONDS / 4; a lease not renewed for LEASE_SECONDS (its job was killed, its machine lost) may be
  taken by the next job, and so may at once the lease of a holder that ran on the same machine (same host name and
  boot id) and is no longer running (its pid gone, or taken by a process started later): a job killed with kill -9
  is resumed on its machine without waiting for its lease. A holder that finds a newer generation than its own has
  lost the lock and stops at its next check (`check`, called by the driver between pipelines and before it writes
  the manifest).

What the lease does not do: it relies on the clocks of the machines involved agreeing to well within LEASE_SECONDS
(the expiry is the holder's clock, read by the taker's), and a holder stalled for longer than the lease (a suspended
VM) can lose the lock while its Beam workers still commit shards. Such late commits cannot tear a shard (each
record is created whole, create-only when new), but they can land beside the new holder's.
"""
from __future__ import annotations

import dataclasses
import getpass
import json
import logging
import os
import socket
import sys
import threading
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from featurestore import layout
from featurestore.storage import StoreLocation

LOG = logging.getLogger(__name__)
# How long an object-store lease lasts without renewal: long beside a renewal's round trip (renewed every quarter of
# it), short enough that a killed job blocks the next one for two minutes at most.
LEASE_SECONDS = 120.0
GENERATION_DIGITS = 10


class StoreLockedError(RuntimeError):
    """Another job holds the store's writer lock."""


class LockLostError(RuntimeError):
    """This job's lease on an object store was taken over (it expired, or `unlock` cleared it)."""


@dataclass(frozen=True)
class LockHolder:
    """Who holds (or last held) a store's writer lock."""

    owner: str
    host: str
    pid: int
    started_at: float
    command: str
    token: str  # unique per acquisition: tells this holder's lease from a later one's
    lease_until: float | None = None  # object stores: the holder's clock; None on a local folder
    released: bool = False
    boot_id: str | None = None  # the kernel's boot id (Linux): with `host`, which machine and boot the pid is of
    process_start: int | None = None  # the pid's start time, clock ticks after boot: tells a reused pid

    @classmethod
    def this_process(cls, lease_until: float | None = None) -> "LockHolder":
        return cls(owner=_user(), host=socket.gethostname(), pid=os.getpid(), started_at=time.time(),
                   command=" ".join(sys.argv)[:300], token=uuid.uuid4().hex, lease_until=lease_until,
                   boot_id=_boot_id(), process_start=_process_start(os.getpid()))

    def gone(self) -> bool:
        """True when this holder ran on this machine, in this boot, and its process no longer runs. False whenever
        that cannot be known (another machine, no /proc): only the lease's expiry tells then."""
        if self.host != socket.gethostname() or self.boot_id is None or self.boot_id != _boot_id():
            return False
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return True
        except PermissionError:
            pass  # a process of another user has the pid: its start time tells whether it is the holder
        return self.process_start is not None and _process_start(self.pid) not in (None, self.process_start)

    def describe(self) -> str:
        return (f"{self.owner}@{self.host}, pid {self.pid}, since {_when(self.started_at)} "
                f"(command: {self.command or 'unknown'})")

    def to_bytes(self) -> bytes:
        return (json.dumps(dataclasses.asdict(self), indent=2, sort_keys=True) + "\n").encode()

    @classmethod
    def from_bytes(cls, data: bytes) -> "LockHolder | None":
        """The holder a lock file names; None when it names none yet (written between lock and write) or is damaged."""
        try:
            fields = json.loads(data)
            return cls(**{f.name: fields[f.name] for f in dataclasses.fields(cls) if f.name in fields})
        except (ValueError, TypeError, KeyError):
            return None


def _boot_id() -> str | None:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return None


def _process_start(pid: int) -> int | None:
    """Field 22 of /proc/<pid>/stat (after the parenthesised command name, which may hold spaces)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        return int(stat.rsplit(")", 1)[1].split()[19])
    except (OSError, IndexError, ValueError):
        return None


def _user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no user name for this uid (some containers)
        return f"uid {os.getuid()}"


def _when(stamp: float) -> str:
    return datetime.fromtimestamp(stamp, timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


class WriterLock:
    """The writer lock of one store, as a context manager: `with WriterLock(store, "extract_features job"): …`."""

    def __init__(self, root: "str | os.PathLike | StoreLocation", purpose: str,
                 lease_seconds: float = LEASE_SECONDS):
        self.store = StoreLocation(root)
        self.purpose = purpose
        self.lease_seconds = lease_seconds
        self.holder: LockHolder | None = None
        self._fd: int | None = None  # local folder: the flocked file
        self._generation: int | None = None  # object store: this holder's lease object
        self._lost: str | None = None
        self._stop = threading.Event()
        self._renewer: threading.Thread | None = None

    def __enter__(self) -> "WriterLock":
        self.acquire()
        return self

    def __exit__(self, *exc) -> None:
        self.release()

    # -- acquiring ----------------------------------------------------------------------------------------------
    def acquire(self) -> None:
        if self.store.local is not None:
            self._acquire_local()
        else:
            self._acquire_lease()
        LOG.info("%s: writer lock taken for the %s", self.store, self.purpose)

    def _acquire_local(self) -> None:
        import fcntl

        path = self.store.local / layout.WRITER_LOCK
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = LockHolder.from_bytes(_read_fd(fd))
            os.close(fd)
            raise StoreLockedError(self._held_message(holder, local=True)) from None
        self.holder = LockHolder.this_process()
        os.ftruncate(fd, 0)
        os.pwrite(fd, self.holder.to_bytes(), 0)
        os.fsync(fd)
        self._fd = fd

    def _acquire_lease(self) -> None:
        latest = self._latest()
        if latest is not None:
            generation, holder = latest
            if holder is not None and not holder.released and (holder.lease_until or 0) > time.time():
                if not holder.gone():
                    raise StoreLockedError(self._held_message(holder, local=False))
                LOG.warning("%s: taking over the lease of %s: that process no longer runs on this machine",
                            self.store, holder.describe())
        generation = (latest[0] if latest else 0) + 1
        self.holder = LockHolder.this_process(lease_until=time.time() + self.lease_seconds)
        if not self.store.create(_lease_path(generation), self.holder.to_bytes()):
            winner = LockHolder.from_bytes(self.store.read_bytes(_lease_path(generation)))
            raise StoreLockedError(self._held_message(winner, local=False))
        self._generation = generation
        for older in self._generations()[:-1]:
            if older < generation:
                self.store.remove(_lease_path(older))  # the newest generation is what counts; older ones are history
        self._renewer = threading.Thread(target=self._renew_until_released, name="store-lease", daemon=True)
        self._renewer.start()

    def _generations(self) -> list[int]:
        names = [path.rsplit("/", 1)[-1] for path in self.store.files_under(layout.LEASES)]
        return sorted(int(name[:-5]) for name in names if name.endswith(".json") and name[:-5].isdigit())

    def _latest(self) -> tuple[int, LockHolder | None] | None:
        generations = self._generations()
        if not generations:
            return None
        try:
            data = self.store.read_bytes(_lease_path(generations[-1]))
        except FileNotFoundError:
            return generations[-1], None
        return generations[-1], LockHolder.from_bytes(data)

    def _held_message(self, holder: LockHolder | None, local: bool) -> str:
        who = holder.describe() if holder else "a job that has not recorded itself yet"
        if local:
            clear = (f"The lock is released when that process ends, in any way (kill -9 included): wait for it, or "
                     f"stop it (pid {holder.pid if holder else '?'} on {holder.host if holder else 'its host'}). "
                     f"{self.store.path(layout.WRITER_LOCK)} names the holder.")
        else:
            expiry = _when(holder.lease_until) if holder and holder.lease_until else "soon"
            clear = (f"Its lease expires {expiry} unless renewed (it is renewed while that job runs). If that job is "
                     f"gone, clear the lock now with `python -m featurestore unlock {self.store}`.")
        return f"{self.store} is locked by another writer: {who}. This {self.purpose} writes nothing. {clear}"

    # -- holding ------------------------------------------------------------------------------------------------
    def _renew_until_released(self) -> None:
        while not self._stop.wait(self.lease_seconds / 4):
            try:
                self.renew()
            except Exception as error:  # a failed renewal is retried; the lease covers three missed ones
                LOG.warning("%s: lease renewal failed (%s); retrying", self.store, error)
            if self._lost:
                return

    def renew(self) -> None:
        """Extend this holder's lease, unless a newer generation took it (then the lock is lost)."""
        newest = self._generations()
        if newest and newest[-1] != self._generation:
            self._lost = f"generation {newest[-1]} replaced this job's lease (generation {self._generation})"
            LOG.error("%s: writer lock lost: %s", self.store, self._lost)
            return
        self.holder = dataclasses.replace(self.holder, lease_until=time.time() + self.lease_seconds)
        self.store.write(_lease_path(self._generation), self.holder.to_bytes())

    def check(self) -> None:
        """Raise LockLostError when this holder no longer holds the lock (object stores; a flock cannot be lost)."""
        if self._lost:
            raise LockLostError(f"{self.store}: this {self.purpose} lost its writer lock ({self._lost}); it stops "
                                "before changing the store further")

    def release(self) -> None:
        if self._fd is not None:
            import fcntl

            os.ftruncate(self._fd, 0)
            os.pwrite(self._fd, dataclasses.replace(self.holder, released=True).to_bytes(), 0)
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None
        elif self._generation is not None:
            self._stop.set()
            if self._renewer is not None:
                self._renewer.join()
            if not self._lost and self._generations()[-1:] == [self._generation]:
                self.store.write(_lease_path(self._generation),
                                 dataclasses.replace(self.holder, released=True).to_bytes())
            self._generation = None


def _lease_path(generation: int) -> str:
    return f"{layout.LEASES}/{generation:0{GENERATION_DIGITS}d}.json"


def _read_fd(fd: int) -> bytes:
    return os.pread(fd, 1 << 16, 0)


def current_holder(root: "str | os.PathLike | StoreLocation") -> tuple[LockHolder | None, bool]:
    """(the holder the store's lock names, whether it holds the lock now)."""
    store = StoreLocation(root)
    if store.local is not None:
        path = store.local / layout.WRITER_LOCK
        if not path.is_file():
            return None, False
        import fcntl

        fd = os.open(path, os.O_RDWR)  # for writing: NFS maps an exclusive flock to a write lock
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # a probe: released at once, the file left as it is
        except BlockingIOError:
            return LockHolder.from_bytes(_read_fd(fd)), True
        finally:
            os.close(fd)
        return LockHolder.from_bytes(path.read_bytes()), False
    latest = WriterLock(store, "check")._latest()
    if latest is None or latest[1] is None:
        return None, False
    holder = latest[1]
    return holder, not holder.released and (holder.lease_until or 0) > time.time() and not holder.gone()


def clear_lease(root: "str | os.PathLike | StoreLocation") -> LockHolder | None:
    """Clear an object store's lease (`unlock`): a newer generation, released, so the next job may take the lock and
    a holder still running finds it lost at its next check. Returns the holder it cleared (None: none held it)."""
    store = StoreLocation(root)
    lock = WriterLock(store, "unlock")
    latest = lock._latest()
    if latest is None:
        return None
    cleared = dataclasses.replace(LockHolder.this_process(lease_until=time.time()), released=True)
    if not store.create(_lease_path(latest[0] + 1), cleared.to_bytes()):
        raise StoreLockedError(f"{store}: another job took the lock while it was being cleared; try again")
    holder = latest[1]
    return holder if holder is not None and not holder.released else None
