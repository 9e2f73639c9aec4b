"""The manifest records of the models a job runs: what the store says about where its numbers came from."""
from __future__ import annotations

from featurestore.atomic import sha256_file
from featurestore.manifest import ModelFile, ModelRecord
from pipelines.captioners import ResolvedCaptioner, captioner_provenance
from vlm.clip import ClipSource


def clip_model_record(source: ClipSource, prompts: str, sha256: str | None = None) -> ModelRecord:
    """A CLIP with the prompt ensemble its text tower is used with; enough to load it again (the store's text
    encoder): the model and checkpoint as configured, and for a hub model the repo and the commit to pin.
    `sha256` of the weights file when already known, else computed here."""
    name, checkpoint = source.configured
    return ModelRecord(sha256=sha256 or sha256_file(source.weights_path), name=name, path=source.weights_path,
                       checkpoint=checkpoint, model_config_dir=source.model_config_dir, prompts=prompts,
                       repo_id=source.repo_id, revision=source.revision)


def captioner_model_record(resolved: ResolvedCaptioner) -> ModelRecord:
    """The captioner by name, with one digest over its files and each resolved file with its own."""
    provenance = captioner_provenance(resolved)
    return ModelRecord(name=provenance["name"], sha256=provenance["sha256"],
                       files=tuple(ModelFile(**entry) for entry in provenance["files"]))
