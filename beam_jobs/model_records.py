"""The manifest records of the models a job runs: what the store says about where its numbers came from."""
from __future__ import annotations

from featurestore.atomic import sha256_file
from featurestore.manifest import ModelRecord
from pipelines.captioners import captioner_provenance
from pipelines.pseudo_labels_config import CaptionerSection
from vlm.clip import ClipSource


def clip_model_record(source: ClipSource, prompts: str, sha256: str | None = None) -> ModelRecord:
    """A CLIP with the prompt ensemble its text tower is used with; enough to load it again (the store's text
    encoder). `sha256` of the weights file when already known, else computed here."""
    return ModelRecord(sha256=sha256 or sha256_file(source.weights_path), name=source.open_clip_name,
                       path=source.weights_path, checkpoint=source.checkpoint,
                       model_config_dir=source.model_config_dir, prompts=prompts)


def captioner_model_record(config: CaptionerSection) -> ModelRecord:
    """The captioner by name, with one digest over its files."""
    return ModelRecord(**captioner_provenance(config))
