"""The store's manifest and per-shard commit records, as typed records.

A shard of a stage is committed when its record `_commits/<stage>/<shard>.json` exists; that record is
written last, after every file it lists has been renamed into place. Each worker writes only its own
records, so commits from many processes or machines never contend for one file. `manifest.json`
holds what is per stage (config, hash, models, code version) and the consolidated shard list written
when a job finishes; it has one writer, the job's driver.
"""
from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Union

from featurestore import layout
from featurestore.stages import EXTRACT_FEATURES
from featurestore.storage import StoreLocation
from schemas.tables import SCHEMA_VERSION, SchemaVersionError


class DamagedStoreError(RuntimeError):
    """Part of a store is not what its writer left: a manifest or commit record that does not parse, a file whose
    bytes differ from its record. The message names the file and what repairs it."""


class DamagedManifestError(DamagedStoreError):
    """manifest.json does not parse."""


class DamagedRecordError(DamagedStoreError):
    """A commit record does not parse."""


def _known_fields(cls: type, data: Mapping[str, Any]) -> dict[str, Any]:
    """The entries of a JSON object that are fields of `cls`: newer writers may add fields, older readers skip them."""
    names = {f.name for f in dataclasses.fields(cls)}
    return {key: value for key, value in data.items() if key in names}


def _without_nones(record: object) -> dict[str, Any]:
    return {f.name: getattr(record, f.name) for f in dataclasses.fields(record) if getattr(record, f.name) is not None}


@dataclass(frozen=True)
class ModelFile:
    """One file a model's output depends on, as resolved on the machine that ran the stage."""

    path: str  # for a hub model, inside the Hugging Face cache: …/models--org--name/snapshots/<commit>/<file>
    sha256: str
    repo_id: str | None = None  # hub repo it came from; None for a local file
    revision: str | None = None  # the commit of that snapshot

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> "ModelFile":
        return cls(**_known_fields(cls, data))


@dataclass(frozen=True)
class ModelRecord:
    """A model a stage ran: its name as configured, the file whose bytes are its weights, and their sha256."""

    sha256: str  # of the weights file (a captioner: one digest over all its files)
    name: str | None = None  # `local-dir:<folder>`, `hf-hub:org/name`, an architecture name, or a captioner name
    path: str | None = None  # the weights file (for a hub model, inside the Hugging Face cache)
    checkpoint: str | None = None  # weights file or open_clip pretrained tag given beside an architecture name
    model_config_dir: str | None = None  # extra architecture JSONs the name needs
    prompts: str | None = None  # a CLIP's prompt ensemble for text ("single", "imagenet80")
    repo_id: str | None = None  # hub repo of the weights, None for local files
    revision: str | None = None  # the commit they were read at: loading the model again pins it
    files: tuple[ModelFile, ...] | None = None  # a model of several files (a captioner): each with its sha256

    def to_json(self) -> dict:
        data = _without_nones(self)
        if self.files is not None:
            data["files"] = [_without_nones(entry) for entry in self.files]
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> "ModelRecord":
        if "sha256" not in data:
            raise ValueError(f"model record {dict(data)} has no sha256")
        known = _known_fields(cls, data)
        if known.get("files") is not None:
            known["files"] = tuple(ModelFile.from_json(entry) for entry in known["files"])
        return cls(**known)


@dataclass(frozen=True)
class StageRecord:
    """One stage's section of manifest.json: what ran (config, models, code) and, once finished, what it committed."""

    config: Mapping[str, Any] = field(default_factory=dict)  # the resolved stage config, as the job logged it
    config_hash: str | None = None
    models: Mapping[str, ModelRecord] = field(default_factory=dict)  # role ("clip", "captioner") → model
    code_version: str | None = None
    embedding_dim: int | None = None
    started_at: float | None = None
    finished_at: float | None = None
    shards: Mapping[str, str] | None = None  # shard name → fingerprint, consolidated when the stage finished
    summary: Mapping[str, Any] | None = None  # the job's totals (counts, failures by kind, timings)

    def setting(self, dotted: str) -> Any:
        """The recorded config value at a dotted key ("dataset.image_root"); None when it was not recorded."""
        value: Any = self.config
        for part in dotted.split("."):
            if not isinstance(value, Mapping) or part not in value:
                return None
            value = value[part]
        return value

    def to_json(self) -> dict:
        data = _without_nones(self)
        data["models"] = {role: model.to_json() for role, model in sorted(self.models.items())}
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> "StageRecord":
        known = _known_fields(cls, data)
        known["models"] = {role: ModelRecord.from_json(model) for role, model in known.get("models", {}).items()}
        return cls(**known)


@dataclass(frozen=True)
class Manifest:
    stages: Mapping[str, StageRecord] = field(default_factory=dict)
    schema_version: int = SCHEMA_VERSION

    def with_stage(self, name: str, record: StageRecord) -> "Manifest":
        return dataclasses.replace(self, stages={**self.stages, name: record})

    def store_clip(self, where: str) -> ModelRecord:
        """The CLIP of the store: its image tower embedded the regions, its text tower with its prompt ensemble the
        vocab. Text compared with the store (a search, a pseudo-label candidate, a generated name) is embedded by it.
        `where` names the store in errors."""
        stage = self.stages.get(EXTRACT_FEATURES)
        clip = stage.models.get("clip") if stage else None
        if clip is not None and clip.prompts is None:
            # Stores written before the clip record carried its prompts: the same facts, from the recorded config.
            clip = dataclasses.replace(clip, name=clip.name or stage.setting("model.clip"),
                                       checkpoint=stage.setting("model.checkpoint"),
                                       model_config_dir=stage.setting("model.model_config_dir"),
                                       prompts=stage.setting("vocab.prompts"))
        if clip is None or not clip.name or not clip.prompts:
            raise KeyError(f"{where}: the manifest records no {EXTRACT_FEATURES} CLIP with its prompt ensemble, so "
                           "the text encoder of the store is unknown; run extract-features first")
        return clip

    def to_json(self) -> dict:
        return {"schema_version": self.schema_version,
                "stages": {name: record.to_json() for name, record in self.stages.items()}}

    @classmethod
    def from_json(cls, data: Mapping[str, Any], where: str) -> "Manifest":
        if data.get("schema_version") != SCHEMA_VERSION:
            raise SchemaVersionError(where, data.get("schema_version"))
        return cls({name: StageRecord.from_json(section) for name, section in data.get("stages", {}).items()})


@dataclass(frozen=True)
class FileEntry:
    path: str  # relative to the store root
    rows: int | None
    bytes: int
    sha256: str
    checksum: str | None = None  # "xxh3_64:<hex>", what readers check on every open (featurestore.integrity)

    @classmethod
    def from_json(cls, data: dict) -> "FileEntry":
        return cls(data["path"], data.get("rows"), data["bytes"], data["sha256"], data.get("checksum"))


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


StoreRoot = Union[str, Path, StoreLocation]


MANIFEST_REPAIR = ("`python -m featurestore validate --repair {store}` rebuilds it from the commit records (so "
                   "does the next run of a job on the store)")


def read_manifest(root: StoreRoot) -> Manifest:
    """The manifest of the store at `root` (a folder or a URL); refuses a missing store or another schema version,
    and names a damaged manifest.json with the command that rebuilds it."""
    store = StoreLocation(root)
    if not store.is_file(layout.MANIFEST):
        raise FileNotFoundError(f"{store} is not a feature store: {layout.MANIFEST} is missing")
    where = store.path(layout.MANIFEST)
    try:
        data = json.loads(store.read_bytes(layout.MANIFEST))
        if not isinstance(data, dict):
            raise ValueError(f"a JSON {type(data).__name__}, not an object")
        if data.get("schema_version") != SCHEMA_VERSION:
            raise SchemaVersionError(f"store {store}", data.get("schema_version"))
        return Manifest.from_json(data, f"store {store}")
    except SchemaVersionError:
        raise
    except (ValueError, KeyError, TypeError, AttributeError) as error:  # JSONDecodeError and UnicodeError included
        raise DamagedManifestError(f"{where} is damaged ({type(error).__name__}: {error}); "
                                   + MANIFEST_REPAIR.format(store=store)) from error


def update_stage(root: StoreRoot, stage: str, **changes: Any) -> Manifest:
    """Set fields of one stage's record in manifest.json (creating the store if new); its other fields stay.
    Only the job's driver calls this: manifest.json has a single writer."""
    store = StoreLocation(root)
    manifest = read_manifest(store) if store.is_file(layout.MANIFEST) else Manifest()
    record = dataclasses.replace(manifest.stages.get(stage, StageRecord()), **changes)
    manifest = manifest.with_stage(stage, record)
    store.write(layout.MANIFEST, dump_json(manifest.to_json()))
    return manifest


def parse_commit(data: bytes, where: str) -> CommitRecord:
    """A commit record from its bytes; DamagedRecordError naming `where` when they do not parse."""
    try:
        parsed = json.loads(data)
        if not isinstance(parsed, dict):
            raise ValueError(f"a JSON {type(parsed).__name__}, not an object")
        if parsed.get("schema_version") != SCHEMA_VERSION:
            raise SchemaVersionError(where, parsed.get("schema_version"))
        return CommitRecord.from_json(parsed, where)
    except SchemaVersionError:
        raise
    except (ValueError, KeyError, TypeError, AttributeError) as error:
        raise DamagedRecordError(f"commit record {where} is damaged ({type(error).__name__}: {error}); its shard "
                                 "counts as not committed: the next run of its job recomputes it") from error


def read_commit(root: StoreRoot, relative: str) -> CommitRecord:
    store = StoreLocation(root)
    return parse_commit(store.read_bytes(relative), str(store.path(relative)))


@dataclass(frozen=True)
class CommitScan:
    """Every commit record that parses, and the store-relative path → problem of each that does not."""

    records: list[CommitRecord]
    damaged: dict[str, str]


def scan_commits(root: StoreRoot, stage: str | None = None) -> CommitScan:
    """The commit records of `stage` (or of all stages) ordered by stage and shard, with the damaged ones apart."""
    store = StoreLocation(root)
    folder = f"{layout.COMMITS}/{stage}" if stage else layout.COMMITS
    # Sorted by path parts, so "extract_features" comes before "extract_features.vocab".
    relatives = [relative for relative in sorted(store.files_under(folder), key=lambda path: path.split("/"))
                 if _is_record(relative)]
    contents = store.read_many(relatives)
    records, damaged = [], {}
    for relative in relatives:
        try:
            records.append(parse_commit(contents[relative], str(store.path(relative))))
        except DamagedRecordError as error:
            damaged[relative] = str(error)
    return CommitScan(records, damaged)


def read_commits(root: StoreRoot, stage: str | None = None) -> list[CommitRecord]:
    """Every commit record of `stage` (or of all stages), ordered by stage and shard; DamagedRecordError (naming the
    first) when one does not parse."""
    scan = scan_commits(root, stage)
    if scan.damaged:
        raise DamagedRecordError(next(iter(scan.damaged.values())))
    return scan.records


def _is_record(relative: str) -> bool:
    parts = relative.split("/")  # _commits/<stage>/<shard>.json
    return len(parts) == 3 and parts[-1].endswith(".json") and not parts[-1].startswith(layout.TMP_PREFIX)
