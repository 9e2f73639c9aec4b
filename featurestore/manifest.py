"""The store's manifest and per-shard commit records.

A shard of a stage is committed when its record `_commits/<stage>/<shard>.json` exists; that record is
written last, after every file it lists has been renamed into place. Each worker writes only its own
records, so commits from many processes or machines never contend for one file. `manifest.json`
holds what is per stage (config, hash, models, code version) and the consolidated shard list written
when a job finishes.
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path

from featurestore import layout
from featurestore.atomic import write_bytes_atomic
from schemas.tables import SCHEMA_VERSION, SchemaVersionError


@dataclass(frozen=True)
class FileEntry:
    path: str  # relative to the store root
    rows: int | None
    bytes: int
    sha256: str

    @classmethod
    def from_json(cls, data: dict) -> "FileEntry":
        return cls(data["path"], data.get("rows"), data["bytes"], data["sha256"])


@dataclass(frozen=True)
class CommitRecord:
    stage: str
    shard: int
    fingerprint: str
    files: dict[str, FileEntry]  # table name (or "wds", "stats") → file
    image_id_min: int | None = None
    image_id_max: int | None = None
    schema_version: int = SCHEMA_VERSION
    committed_at: float = field(default_factory=time.time)

    def to_json(self) -> dict:
        return {
            "stage": self.stage, "shard": self.shard, "fingerprint": self.fingerprint,
            "schema_version": self.schema_version, "committed_at": self.committed_at,
            "image_id_min": self.image_id_min, "image_id_max": self.image_id_max,
            "files": {name: vars(entry) for name, entry in sorted(self.files.items())},
        }

    @classmethod
    def from_json(cls, data: dict, where: str) -> "CommitRecord":
        if data.get("schema_version") != SCHEMA_VERSION:
            raise SchemaVersionError(where, data.get("schema_version"))
        return cls(stage=data["stage"], shard=int(data["shard"]), fingerprint=data["fingerprint"],
                   files={k: FileEntry.from_json(v) for k, v in data["files"].items()},
                   image_id_min=data.get("image_id_min"), image_id_max=data.get("image_id_max"),
                   committed_at=data.get("committed_at", 0.0))

    def covers_image(self, image_id: int) -> bool:
        if self.image_id_min is None or self.image_id_max is None:
            return False
        return self.image_id_min <= image_id <= self.image_id_max


def dump_json(data: object) -> bytes:
    return (json.dumps(data, indent=2, sort_keys=True) + "\n").encode()


def read_manifest(root: Path) -> dict:
    """The manifest of the store at `root`; refuses a missing store or another schema version."""
    path = root / layout.MANIFEST
    if not path.is_file():
        raise FileNotFoundError(f"{root} is not a feature store: {layout.MANIFEST} is missing")
    manifest = json.loads(path.read_text())
    if manifest.get("schema_version") != SCHEMA_VERSION:
        raise SchemaVersionError(f"store {root}", manifest.get("schema_version"))
    return manifest


def update_manifest(root: Path, stage: str, **entries: object) -> dict:
    """Merge `entries` into the stage's section of manifest.json (creating the store if new)."""
    path = root / layout.MANIFEST
    manifest = read_manifest(root) if path.is_file() else {"schema_version": SCHEMA_VERSION, "stages": {}}
    manifest["stages"].setdefault(stage, {}).update(entries)
    write_bytes_atomic(path, dump_json(manifest))
    return manifest


def read_commits(root: Path, stage: str | None = None) -> list[CommitRecord]:
    """Every commit record of `stage` (or of all stages), ordered by stage and shard."""
    base = root / layout.COMMITS
    pattern = f"{stage}/*.json" if stage else "*/*.json"
    records = []
    for path in sorted(base.glob(pattern)):
        if layout.is_temporary(path):
            continue
        records.append(CommitRecord.from_json(json.loads(path.read_text()), str(path)))
    return records
