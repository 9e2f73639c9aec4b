"""Check a store against its manifest: every committed file present, intact and consistent.

Returns a list of problems (empty = valid); `python -m featurestore validate` prints them and exits 1.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from featurestore import layout
from featurestore.atomic import sha256_file
from featurestore.manifest import CommitRecord, FileEntry, read_commits, read_manifest
from schemas.tables import TABLES, SchemaVersionError, check_schema_version


def check_file(root: Path, name: str, entry: FileEntry, where: str) -> list[str]:
    path = root / entry.path
    if not path.is_file():
        return [f"{where}: {entry.path} is missing"]
    problems = []
    size = path.stat().st_size
    if size != entry.bytes:
        problems.append(f"{where}: {entry.path} has {size} bytes, the manifest says {entry.bytes}")
    elif sha256_file(path) != entry.sha256:
        problems.append(f"{where}: {entry.path} does not match its sha256 in the manifest")
    if name in TABLES:
        try:
            handle = pq.ParquetFile(path)
            check_schema_version(handle.schema_arrow.metadata, entry.path)
            rows = handle.metadata.num_rows
        except SchemaVersionError as error:
            return problems + [f"{where}: {error}"]
        except (pa.ArrowInvalid, OSError) as error:
            return problems + [f"{where}: {entry.path} is not a readable Parquet file ({error})"]
        if entry.rows is not None and rows != entry.rows:
            problems.append(f"{where}: {entry.path} has {rows} rows, the manifest says {entry.rows}")
    return problems


def _key_set(path: Path, columns: tuple[str, ...]) -> np.ndarray:
    table = pq.read_table(path, columns=list(columns))
    arrays = [table.column(c).to_numpy(zero_copy_only=False).astype(np.int64) for c in columns]
    return (arrays[0] << 32) | arrays[1] if len(arrays) == 2 else arrays[0]


def check_join_keys(root: Path, records: list[CommitRecord]) -> list[str]:
    """regions keys unique; regions' images in images; pseudo_labels' keys in regions of the same shard."""
    problems = []
    by_shard: dict[int, dict[str, Path]] = {}
    for record in records:
        for name, entry in record.files.items():
            if name in ("images", "regions", "pseudo_labels") and (root / entry.path).is_file():
                by_shard.setdefault(record.shard, {})[name] = root / entry.path
    for shard, files in sorted(by_shard.items()):
        try:
            regions = _key_set(files["regions"], ("image_id", "region_id")) if "regions" in files else None
            if regions is not None and len(np.unique(regions)) != len(regions):
                problems.append(f"shard {shard}: regions has duplicate (image_id, region_id) keys")
            if regions is not None and "images" in files:
                missing = np.setdiff1d(regions >> 32, _key_set(files["images"], ("image_id",)))
                if len(missing):
                    problems.append(f"shard {shard}: regions of image ids {missing[:5].tolist()} have no images row")
            if "pseudo_labels" in files:
                labels = _key_set(files["pseudo_labels"], ("image_id", "region_id"))
                orphans = np.setdiff1d(labels, regions if regions is not None else np.array([], np.int64))
                if len(orphans):
                    problems.append(f"shard {shard}: {len(orphans)} pseudo_labels rows match no regions row")
        except (pa.ArrowInvalid, OSError):
            continue  # already reported by check_file
    return problems


def uncommitted_files(root: Path, records: list[CommitRecord]) -> list[str]:
    """Files under table folders that no commit record lists: leftovers of an interrupted write."""
    listed = {entry.path for record in records for entry in record.files.values()}
    folders = [*TABLES, layout.WDS, layout.STATS]
    problems = []
    for folder in folders:
        for path in sorted((root / folder).glob("*")):
            relative = path.relative_to(root).as_posix()
            if relative not in listed:
                kind = "temporary file of an interrupted write" if layout.is_temporary(path) else "uncommitted file"
                problems.append(f"{relative}: {kind} (a rerun of its stage replaces or removes it)")
    return problems


def validate_store(root: str | Path) -> list[str]:
    root = Path(root)
    try:
        manifest = read_manifest(root)
        records = read_commits(root)
    except (FileNotFoundError, SchemaVersionError, ValueError) as error:
        return [str(error)]
    problems = []
    for record in records:
        if record.stage.split(".")[0] not in manifest.stages:
            problems.append(f"commit {record.stage}/{record.shard}: stage missing from {layout.MANIFEST}")
        for name, entry in record.files.items():
            problems += check_file(root, name, entry, f"commit {record.stage}/{layout.shard_name(record.shard)}")
    for stage, stage_record in manifest.stages.items():
        committed = {layout.shard_name(r.shard) for r in records if r.stage == stage}
        listed = set(stage_record.shards or {})
        for shard in sorted(listed - committed):
            problems.append(f"{layout.MANIFEST}: stage {stage} lists shard {shard} that has no commit record")
    return problems + check_join_keys(root, records) + uncommitted_files(root, records)
