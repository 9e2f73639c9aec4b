"""Check a store against its manifest: every committed file present, intact and consistent.

Returns a list of problems (empty = valid); `python -m featurestore validate` prints them and exits 1. Works on a
local folder and on an object-store URL alike (featurestore.storage).
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from featurestore import layout
from featurestore.integrity import content_checksum, repair_command
from featurestore.manifest import CommitRecord, DamagedStoreError, FileEntry, read_manifest, scan_commits
from featurestore.storage import StoreLocation
from schemas.tables import TABLES, SchemaVersionError, check_schema_version

# Folders whose files commit records name; anything else in them is a leftover.
DATA_FOLDERS = (*TABLES, layout.WDS, layout.STATS)


def check_file(root: str | Path | StoreLocation, name: str, entry: FileEntry, where: str) -> list[str]:
    """Problems of one committed file: missing, another size, sha256 or checksum than its record, unreadable as
    Parquet, another schema version, another row count. Reads the file once."""
    store = StoreLocation(root)
    if not store.is_file(entry.path):
        return [f"{where}: {entry.path} is missing"]
    problems = []
    data = store.read_bytes(entry.path)
    if len(data) != entry.bytes:
        problems.append(f"{where}: {entry.path} has {len(data)} bytes, the manifest says {entry.bytes}")
    elif hashlib.sha256(data).hexdigest() != entry.sha256:
        problems.append(f"{where}: {entry.path} does not match its sha256 in the manifest")
    elif entry.checksum is not None and content_checksum(data) != entry.checksum:
        problems.append(f"{where}: {entry.path} does not match its checksum in the manifest")
    if name in TABLES:
        try:
            handle = pq.ParquetFile(pa.BufferReader(data))
            check_schema_version(handle.schema_arrow.metadata, entry.path)
            rows = handle.metadata.num_rows
        except SchemaVersionError as error:
            return problems + [f"{where}: {error}"]
        except (pa.ArrowInvalid, OSError) as error:
            return problems + [f"{where}: {entry.path} is not a readable Parquet file ({error})"]
        if entry.rows is not None and rows != entry.rows:
            problems.append(f"{where}: {entry.path} has {rows} rows, the manifest says {entry.rows}")
    return problems


def _key_set(store: StoreLocation, path: str, columns: tuple[str, ...]) -> np.ndarray:
    table = store.read_parquet(path, columns)
    arrays = [table.column(c).to_numpy(zero_copy_only=False).astype(np.int64) for c in columns]
    return (arrays[0] << 32) | arrays[1] if len(arrays) == 2 else arrays[0]


def _files_by_shard(store: StoreLocation, records: list[CommitRecord], tables: tuple[str, ...]
                    ) -> dict[int, dict[str, str]]:
    by_shard: dict[int, dict[str, str]] = {}
    for record in records:
        for name, entry in record.files.items():
            if name in tables and store.is_file(entry.path):
                by_shard.setdefault(record.shard, {})[name] = entry.path
    return by_shard


def check_proposal_shards(root: str | Path | StoreLocation, records: list[CommitRecord]) -> list[str]:
    """proposals keys (image_id, rank) unique; an image's proposals in the shard that holds its images row (shard k
    of every table holds the images of input shard k)."""
    store = StoreLocation(root)
    problems = []
    shard_of_image: dict[int, int] = {}
    proposal_ids: dict[int, np.ndarray] = {}
    for shard, files in sorted(_files_by_shard(store, records, ("images", "proposals")).items()):
        try:
            if "images" in files:
                shard_of_image.update(dict.fromkeys(_key_set(store, files["images"], ("image_id",)).tolist(), shard))
            if "proposals" in files:
                keys = _key_set(store, files["proposals"], ("image_id", "rank"))
                if len(np.unique(keys)) != len(keys):
                    problems.append(f"shard {shard}: proposals has duplicate (image_id, rank) keys")
                proposal_ids[shard] = np.unique(keys >> 32)
        except (pa.ArrowInvalid, OSError):
            continue  # already reported by check_file
    for shard, image_ids in proposal_ids.items():
        moved = [(i, shard_of_image[i]) for i in image_ids.tolist() if shard_of_image.get(i, shard) != shard]
        if moved:
            problems.append(f"shard {shard}: proposals of image ids {[i for i, _ in moved[:5]]} are in proposals "
                            f"shard {shard} but in images shard {moved[0][1]}: the two stages cut their images into "
                            f"different shards (shard_size or image list)")
    return problems


def check_join_keys(root: str | Path | StoreLocation, records: list[CommitRecord]) -> list[str]:
    """regions keys unique; regions' images in images; pseudo_labels' keys in regions of the same shard."""
    store = StoreLocation(root)
    problems = []
    for shard, files in sorted(_files_by_shard(store, records, ("images", "regions", "pseudo_labels")).items()):
        try:
            regions = _key_set(store, files["regions"], ("image_id", "region_id")) if "regions" in files else None
            if regions is not None and len(np.unique(regions)) != len(regions):
                problems.append(f"shard {shard}: regions has duplicate (image_id, region_id) keys")
            if regions is not None and "images" in files:
                missing = np.setdiff1d(regions >> 32, _key_set(store, files["images"], ("image_id",)))
                if len(missing):
                    problems.append(f"shard {shard}: regions of image ids {missing[:5].tolist()} have no images row")
            if "pseudo_labels" in files:
                labels = _key_set(store, files["pseudo_labels"], ("image_id", "region_id"))
                orphans = np.setdiff1d(labels, regions if regions is not None else np.array([], np.int64))
                if len(orphans):
                    problems.append(f"shard {shard}: {len(orphans)} pseudo_labels rows match no regions row")
        except (pa.ArrowInvalid, OSError):
            continue  # already reported by check_file
    return problems


def unreferenced_files(root: str | Path | StoreLocation, records: list[CommitRecord]) -> list[str]:
    """Store-relative paths of the files under the data folders that no commit record names: leftovers of an
    interrupted write (a temporary file locally; an attempt that never got its record on an object store)."""
    store = StoreLocation(root)
    listed = {entry.path for record in records for entry in record.files.values()}
    return [path for folder in DATA_FOLDERS for path in store.files_under(folder) if path not in listed]


def uncommitted_files(root: str | Path | StoreLocation, records: list[CommitRecord]) -> list[str]:
    """One problem line per unreferenced file."""
    problems = []
    for relative in unreferenced_files(root, records):
        kind = ("temporary file of an interrupted write" if Path(relative).name.startswith(layout.TMP_PREFIX)
                else "uncommitted file")
        problems.append(f"{relative}: {kind} (the next run of a job on the store or `gc` removes it)")
    return problems


@dataclass
class StoreCheck:
    """What `validate` found: every problem, and the shards of each stage whose files or records are damaged (the
    ones a rerun of the stage's job recomputes)."""

    problems: list[str] = field(default_factory=list)
    damaged: dict[str, set[int]] = field(default_factory=dict)
    manifest_damaged: bool = False

    def repairs(self, store: str) -> list[str]:
        """What repairs the damage found, one line per stage (and one for the manifest)."""
        lines = [f"`python -m featurestore validate --repair {store}` rebuilds {layout.MANIFEST} from the commit "
                 "records"] if self.manifest_damaged else []
        for stage, shards in sorted(self.damaged.items()):
            lines.append(f"{repair_command(stage)} … --store {store} (with the same config): its resume recomputes "
                         f"exactly shards {', '.join(map(str, sorted(shards)))} of {stage}")
        return lines


def check_store(root: str | Path) -> StoreCheck:
    store = StoreLocation(root)
    check = StoreCheck()
    try:
        manifest = read_manifest(store)
    except DamagedStoreError as error:
        check.problems.append(str(error))
        check.manifest_damaged = True
        manifest = None
    except (FileNotFoundError, SchemaVersionError, ValueError) as error:
        check.problems.append(str(error))
        return check
    scan = scan_commits(store)
    for relative, problem in scan.damaged.items():
        check.problems.append(problem)
        stage, shard = relative.split("/")[1], relative.rsplit("/", 1)[-1].removesuffix(".json")
        if shard.isdigit():
            check.damaged.setdefault(stage.split(".")[0], set()).add(int(shard))
    records = scan.records
    for record in records:
        if manifest is not None and record.stage.split(".")[0] not in manifest.stages:
            check.problems.append(f"commit {record.stage}/{record.shard}: stage missing from {layout.MANIFEST}")
        for name, entry in record.files.items():
            found = check_file(store, name, entry, f"commit {record.stage}/{layout.shard_name(record.shard)}")
            if found:
                check.damaged.setdefault(record.stage.split(".")[0], set()).add(record.shard)
            check.problems += found
    for stage, stage_record in (manifest.stages.items() if manifest is not None else ()):
        committed = {layout.shard_name(r.shard) for r in records if r.stage == stage}
        listed = set(stage_record.shards or {})
        for shard in sorted(listed - committed):
            check.problems.append(f"{layout.MANIFEST}: stage {stage} lists shard {shard} that has no commit record")
            check.damaged.setdefault(stage, set()).add(int(shard))
    check.problems += (check_join_keys(store, records) + check_proposal_shards(store, records)
                       + uncommitted_files(store, records))
    return check


def validate_store(root: str | Path) -> list[str]:
    return check_store(root).problems
