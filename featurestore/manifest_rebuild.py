"""A damaged manifest.json rebuilt from what the store still holds: the commit records (each stage's shards and
fingerprints) and the provenance every Parquet file carries in its key-value metadata (config hash, models, code
version, embedding size).

What cannot come back is what only the manifest held: each stage's resolved config and its run summary. The next
run of a stage's job writes both again (a resume recomputes no current shard to do it); until then tools that read
a config value (the image root of `report`, the score μ, σ of the trainer's pseudo-box weights) ask for it.
The damaged file is kept beside the new one as `manifest.json.damaged`.
"""
from __future__ import annotations

import json
import logging
from pathlib import Path

import pyarrow as pa

from featurestore import layout
from featurestore.manifest import (DamagedManifestError, Manifest, ModelRecord, StageRecord, dump_json, read_manifest,
                                   scan_commits)
from featurestore.storage import StoreLocation
from schemas.tables import METADATA_PREFIX, TABLES, embedding_dim

LOG = logging.getLogger(__name__)
DAMAGED_SUFFIX = ".damaged"


def rebuild_manifest(root: str | Path | StoreLocation) -> Manifest:
    """Write a manifest rebuilt from the commit records (the old bytes kept as manifest.json.damaged); returns it."""
    store = StoreLocation(root)
    if store.is_file(layout.MANIFEST):
        store.write(layout.MANIFEST + DAMAGED_SUFFIX, store.read_bytes(layout.MANIFEST))
    records = scan_commits(store).records
    stages: dict[str, StageRecord] = {}
    for name in sorted({record.stage.split(".")[0] for record in records}):
        mine = [record for record in records if record.stage == name]
        provenance, dim = _provenance(store, [r for r in records if r.stage.split(".")[0] == name])
        stages[name] = StageRecord(
            config_hash=provenance.get("config_hash"), code_version=provenance.get("code_version"),
            models={role: ModelRecord.from_json(model) for role, model in provenance.get("models", {}).items()},
            embedding_dim=dim, shards={layout.shard_name(r.shard): r.fingerprint for r in mine} or None,
            summary={"rebuilt": "from the commit records; the config and run summary return with the next run"})
    manifest = Manifest(stages)
    store.write(layout.MANIFEST, dump_json(manifest.to_json()))
    LOG.warning("%s: rebuilt %s from %d commit records (stages %s; the damaged file is kept as %s%s): the stages' "
                "configs and run summaries come back with their next run", store, layout.MANIFEST, len(records),
                ", ".join(stages) or "none", layout.MANIFEST, DAMAGED_SUFFIX)
    return manifest


def manifest_or_rebuilt(root: str | Path | StoreLocation) -> Manifest | None:
    """The store's manifest, rebuilt first when it is damaged; None for a new store (no manifest yet)."""
    store = StoreLocation(root)
    try:
        return read_manifest(store)
    except FileNotFoundError:
        return None
    except DamagedManifestError as error:
        LOG.warning("%s", error)
        return rebuild_manifest(store)


def _provenance(store: StoreLocation, records) -> tuple[dict, int | None]:
    """The provenance and embedding size the first readable table file of `records` carries."""
    for record in records:
        for name, entry in sorted(record.files.items()):
            if name not in TABLES:
                continue
            try:
                schema = store.parquet_file(entry.path).schema_arrow
            except (OSError, pa.ArrowInvalid):
                continue  # a missing or damaged file: the next one may tell
            raw = (schema.metadata or {}).get((METADATA_PREFIX + "provenance").encode())
            return (json.loads(raw) if raw else {}), embedding_dim(schema, name)
    return {}, None
