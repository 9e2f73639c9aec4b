"""Write-then-rename: a file is either absent or complete, never half-written under its final name, and durable
before anything that names it is written (the file and the folder entry that names it are both fsynced)."""
from __future__ import annotations

import contextlib
import hashlib
import os
import uuid
from pathlib import Path
from typing import Iterator

from featurestore.layout import TMP_PREFIX


@contextlib.contextmanager
def temporary_sibling(final: Path) -> Iterator[Path]:
    """Yield a temporary path next to `final`; removed if the block raises, left for rename otherwise."""
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.with_name(f"{TMP_PREFIX}{uuid.uuid4().hex[:12]}-{final.name}")
    try:
        yield tmp
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def fsync_file(path: Path) -> None:
    with open(path, "rb+") as handle:
        os.fsync(handle.fileno())


def fsync_directory(folder: Path) -> None:
    """Make the names in `folder` durable: without it a power cut can lose a rename that a later write (a commit
    record naming the file) survived. A no-op where a folder cannot be opened for fsync (not POSIX)."""
    try:
        handle = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return
    try:
        os.fsync(handle)
    except OSError:
        pass  # some filesystems refuse fsync on a folder; their renames are as durable as they make them
    finally:
        os.close(handle)


def publish(tmp: Path, final: Path, durable_name: bool = True) -> None:
    """Durably move a finished temporary file to its final name (atomic on POSIX filesystems). `durable_name`:
    also fsync the folder, so the new name survives a power cut (callers publishing many files do it once)."""
    fsync_file(tmp)
    os.replace(tmp, final)
    if durable_name:
        fsync_directory(final.parent)


def write_bytes_atomic(final: Path, data: bytes) -> None:
    with temporary_sibling(final) as tmp:
        tmp.write_bytes(data)
        publish(tmp, final)


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()
