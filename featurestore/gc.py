"""Remove the files of a store that no commit record names: the leftovers of interrupted writes.

Locally those are temporary files (`.tmp-…`); on an object store, the attempt-unique data files of an attempt that
died before its commit record was created. Readers never open them, so they only cost space. A file younger than
`min_age_seconds` is kept: it may belong to an attempt still writing its shard, whose record is not there yet.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

from featurestore import layout
from featurestore.manifest import read_commits, read_manifest
from featurestore.storage import StoreLocation
from featurestore.validate import unreferenced_files

DEFAULT_MIN_AGE_SECONDS = 3600.0  # longer than any one shard's commit takes


@dataclass
class Collected:
    removed: list[str] = field(default_factory=list)  # store-relative paths (or, with dry_run, that would go)
    kept_young: list[str] = field(default_factory=list)  # unreferenced but younger than the minimum age
    bytes: int = 0


def _temporaries(store: StoreLocation) -> list[str]:
    """Temporary files of a local store outside the data folders (commit records, manifest.json)."""
    if not store.renames:
        return []
    return [path for path in store.files_under(layout.COMMITS) if Path(path).name.startswith(layout.TMP_PREFIX)] + \
        [p.name for p in store.local.glob(f"{layout.TMP_PREFIX}*") if p.is_file()]


def collect_garbage(root: str | Path | StoreLocation, min_age_seconds: float = DEFAULT_MIN_AGE_SECONDS,
                    dry_run: bool = False, now: float | None = None) -> Collected:
    """Remove every unreferenced file older than `min_age_seconds` (nothing with `dry_run`)."""
    store = StoreLocation(root)
    read_manifest(store)  # refuses a folder that is not a store, or another schema version, before deleting
    now = time.time() if now is None else now
    result = Collected()
    for relative in unreferenced_files(store, read_commits(store)) + _temporaries(store):
        if now - store.modified(relative) < min_age_seconds:
            result.kept_young.append(relative)
            continue
        result.bytes += store.size(relative)
        result.removed.append(relative)
        if not dry_run:
            store.remove(relative)
    return result
