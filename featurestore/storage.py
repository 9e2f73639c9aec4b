"""Where a store's files live: a local folder or any URL fsspec understands (`s3://`, `gs://`, `memory://`, …).

`StoreLocation` gives the store code the few file operations it needs. Both kinds of storage run one commit
protocol: every data file of a shard goes to a name unique to its write attempt (`layout.attempt_path`), so no write
ever touches a file a commit record names, and the commit record that names the new files is the single switch from
the old shard to the new one; the files the old record named are removed after it. What differs is how one file
appears whole:
- a local folder writes each file under a temporary name, fsyncs it, renames it into place and fsyncs the folder,
  so a name is either absent or complete and durable before the record that names it is written;
- an object store has no rename, but one PUT is atomic (the object appears whole or not at all).
A first commit record is created create-only (a hard link locally; S3 `If-None-Match: *` through fsspec's
`mode="create"` on an object store); a re-commit replaces the record whole (rename locally, one PUT remotely).
Endpoint and credentials come from the standard environment (`AWS_ENDPOINT_URL`, `AWS_*`,
`GOOGLE_APPLICATION_CREDENTIALS`), which the fsspec implementations (s3fs, gcsfs) read themselves.
"""
from __future__ import annotations

import hashlib
import logging
import os
from datetime import datetime
from pathlib import Path
from typing import Mapping, Sequence

import fsspec
import pyarrow as pa
import pyarrow.parquet as pq
from fsspec.implementations.local import LocalFileSystem

from featurestore.atomic import (fsync_directory, fsync_file, publish, sha256_file, temporary_sibling,
                                write_bytes_atomic)
from featurestore.layout import attempt_path

LOG = logging.getLogger(__name__)
READ_CHUNK = 1 << 20


def is_url(root: str | os.PathLike) -> bool:
    """True for `scheme://…` (other than `file://`): a store that fsspec opens."""
    text = os.fspath(root)
    return "://" in text and not text.startswith("file://")


class StoreLocation:
    """The root of one store and the file operations on it; paths are store-relative POSIX paths."""

    def __init__(self, root: "str | os.PathLike | StoreLocation"):
        if isinstance(root, StoreLocation):
            root = root.url
        text = os.fspath(root)
        self.fs: fsspec.AbstractFileSystem | None = None
        self.local: Path | None = None
        if is_url(text):
            # No listing cache: other processes (Beam workers, a killed job) write the same store, and a cached
            # listing of _commits/ would hide their records from this one.
            self.fs, base = fsspec.core.url_to_fs(text, use_listings_cache=False)
            self.base = base.rstrip("/")
            self.url = text.rstrip("/")
            if isinstance(self.fs, LocalFileSystem):
                self.local, self.fs = Path(self.base), None
        else:
            self.local = Path(text.removeprefix("file://"))
            self.url = str(self.local)

    def __str__(self) -> str:
        return self.url

    def __repr__(self) -> str:
        return f"StoreLocation({self.url!r})"

    def __reduce__(self):  # pickled as its URL: each process (a Beam worker, a DataLoader worker) opens its own fs
        return StoreLocation, (self.url,)

    @property
    def renames(self) -> bool:
        """True where files are published by rename (a local folder); False on an object store."""
        return self.local is not None

    @property
    def root(self) -> Path | str:
        """The root as callers used to hold it: a Path for a local folder, the URL for an object store."""
        return self.local if self.local is not None else self.url

    def path(self, relative: str) -> Path | str:
        """A file of the store as a user names it: a local Path, or its URL."""
        return self.local / relative if self.local is not None else f"{self.url}/{relative}"

    def relative(self, path: Path | str) -> str:
        """The store-relative path of a file named by `path` (as `path` returns it) or already relative."""
        text = os.fspath(path)
        prefix = (str(self.local) if self.local is not None else self.url) + "/"
        return text[len(prefix):] if text.startswith(prefix) else text

    @staticmethod
    def placement(relative: str, attempt: str) -> str:
        """Where one write attempt puts a data file: a name unique to the attempt, on every kind of storage, so an
        attempt (a re-commit, a retried bundle) never overwrites a file that a commit record names."""
        return attempt_path(relative, attempt)

    def _key(self, relative: str) -> str:
        return f"{self.base}/{relative}"

    # -- reading ------------------------------------------------------------------------------------------
    def is_file(self, relative: str) -> bool:
        if self.local is not None:
            return (self.local / relative).is_file()
        return self.fs.isfile(self._key(relative))

    def read_bytes(self, relative: str) -> bytes:
        if self.local is not None:
            return (self.local / relative).read_bytes()
        return self.fs.cat_file(self._key(relative))

    def read_many(self, relatives: Sequence[str]) -> dict[str, bytes]:
        """Several small files at once: on an object store one concurrent batch of GETs (s3fs, gcsfs), not one
        round trip after another, which is what opening a store with thousands of commit records needs."""
        if self.local is not None or not relatives:
            return {relative: self.read_bytes(relative) for relative in relatives}
        fetched = self.fs.cat([self._key(relative) for relative in relatives])
        return {relative: fetched[self._key(relative)] for relative in relatives}

    def size(self, relative: str) -> int:
        if self.local is not None:
            return (self.local / relative).stat().st_size
        return int(self.fs.size(self._key(relative)))

    def modified(self, relative: str) -> float:
        """Last-modified time, seconds since the epoch."""
        if self.local is not None:
            return (self.local / relative).stat().st_mtime
        stamp = self.fs.modified(self._key(relative))
        return stamp.timestamp() if isinstance(stamp, datetime) else float(stamp)

    def sha256(self, relative: str) -> str:
        if self.local is not None:
            return sha256_file(self.local / relative)
        digest = hashlib.sha256()
        with self.fs.open(self._key(relative), "rb") as handle:
            while block := handle.read(READ_CHUNK):
                digest.update(block)
        return digest.hexdigest()

    def files_under(self, folder: str) -> list[str]:
        """Store-relative paths of every file below `folder` (recursively), sorted; [] when it does not exist."""
        if self.local is not None:
            base = self.local / folder
            return sorted(p.relative_to(self.local).as_posix() for p in base.rglob("*") if p.is_file())
        prefix = self.base + "/"
        return sorted(key[len(prefix):] for key in self.fs.find(self._key(folder)) if key.startswith(prefix))

    def parquet_file(self, relative: str) -> pq.ParquetFile:
        if self.local is not None:
            return pq.ParquetFile(self.local / relative)
        return pq.ParquetFile(self._key(relative), filesystem=self.fs)

    def read_parquet(self, relative: str, columns: Sequence[str] | None = None, filters=None) -> pa.Table:
        columns = list(columns) if columns else None
        if self.local is not None:
            return pq.read_table(self.local / relative, columns=columns, filters=filters)
        return pq.read_table(self._key(relative), columns=columns, filters=filters, filesystem=self.fs)

    # -- writing ------------------------------------------------------------------------------------------
    def write(self, relative: str, data: bytes) -> None:
        """Create or replace one file whole: temporary name + rename locally, one PUT on an object store."""
        if self.local is not None:
            write_bytes_atomic(self.local / relative, data)
        else:
            self.fs.pipe_file(self._key(relative), data)

    def create(self, relative: str, data: bytes) -> bool:
        """Write a file that must not exist yet; False (and nothing written) when it does.

        Locally a hard link of the finished temporary file (atomic and exclusive on POSIX); on an object store a
        create-only PUT (fsspec `mode="create"`: S3 `If-None-Match: *`). A filesystem without create-only writes
        gets a check before the write, which a concurrent writer can race; such stores are named in the log.
        """
        if self.local is not None:
            final = self.local / relative
            with temporary_sibling(final) as tmp:
                tmp.write_bytes(data)
                return _link_new(tmp, final)
        try:
            self.fs.pipe_file(self._key(relative), data, mode="create")
            return True
        except FileExistsError:
            return False
        except (TypeError, NotImplementedError, ValueError) as error:
            LOG.warning("%s has no create-only writes (%s); checking for %s before writing it", self.url, error,
                        relative)
            if self.is_file(relative):
                return False
            self.fs.pipe_file(self._key(relative), data)
            return True

    def put_all(self, files: Mapping[str, bytes]) -> None:
        """Write several files so that none is visible under its final name before all are complete (locally:
        every temporary file written and fsynced, then all renamed); on an object store, one PUT each."""
        if self.local is None:
            written = []
            try:
                for relative, data in files.items():
                    self.fs.pipe_file(self._key(relative), data)
                    written.append(relative)
            except BaseException:
                self.remove_all(written)
                raise
            return
        staged: list[tuple[Path, Path]] = []
        try:
            for relative, data in files.items():
                final = self.local / relative
                with temporary_sibling(final) as tmp:
                    tmp.write_bytes(data)
                staged.append((tmp, final))
        except BaseException:
            for tmp, _ in staged:
                tmp.unlink(missing_ok=True)
            raise
        for tmp, final in staged:
            publish(tmp, final, durable_name=False)
        for folder in sorted({final.parent for _, final in staged}):
            fsync_directory(folder)

    def remove(self, relative: str) -> None:
        """Delete one file; a file already gone is no error."""
        if self.local is not None:
            (self.local / relative).unlink(missing_ok=True)
            return
        try:
            self.fs.rm_file(self._key(relative))
        except FileNotFoundError:
            pass

    def remove_all(self, relatives: Sequence[str]) -> None:
        for relative in relatives:
            self.remove(relative)


def _link_new(tmp: Path, final: Path) -> bool:
    """Publish a finished temporary file under `final` only if nothing is there yet; the temporary name goes."""
    try:
        fsync_file(tmp)
        os.link(tmp, final)
        fsync_directory(final.parent)
        return True
    except FileExistsError:
        return False
    finally:
        tmp.unlink(missing_ok=True)
