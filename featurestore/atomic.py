"""Write-then-rename: a file is either absent or complete, never half-written under its final name."""
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


def publish(tmp: Path, final: Path) -> None:
    """Durably move a finished temporary file to its final name (atomic on POSIX filesystems)."""
    fsync_file(tmp)
    os.replace(tmp, final)


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
