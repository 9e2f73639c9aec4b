"""Region captioners behind one interface (`base.Captioner`), chosen by name from `CAPTIONERS`."""
from __future__ import annotations

import dataclasses
import hashlib
from dataclasses import dataclass
from pathlib import Path

from pipelines.captioners.base import (CAPTIONERS, CaptionFailure, CaptionResult, Captioner, ImageRegions,
                                       register_captioner)
from pipelines.captioners.blip2 import resolve_blip2
from pipelines.captioners.clipcap import resolve_clipcap
from pipelines.captioners.given import resolve_given
from pipelines.captioners.vlm import resolve_vlm
from pipelines.pseudo_labels_config import CaptionerSection
from vlm.hub import ModelFiles

__all__ = ["CAPTIONERS", "CaptionFailure", "CaptionResult", "Captioner", "ImageRegions", "ResolvedCaptioner",
           "build_captioner", "captioner_provenance", "register_captioner", "resolve_captioner"]

# Weight and data files whose bytes decide a captioner's output (configs and tokenizers are small, hashed too).
_HASHED_SUFFIXES = (".pt", ".pth", ".bin", ".safetensors", ".json", ".jsonl", ".txt", ".model",
                    ".jinja")  # transformers saves a processor's chat template as chat_template.jinja


def build_captioner(config: CaptionerSection) -> Captioner:
    """The captioner named by `config.name`, built from its own section; errors name the config key."""
    if config.name not in CAPTIONERS:
        raise ValueError(f"unknown captioner {config.name!r} (config key captioner.name); "
                         f"known: {sorted(CAPTIONERS)}")
    return CAPTIONERS[config.name].from_config(getattr(config, config.name))


_RESOLVERS = {"clipcap": resolve_clipcap, "blip2": resolve_blip2, "given": resolve_given, "vlm": resolve_vlm}


@dataclass(frozen=True)
class ResolvedCaptioner:
    config: CaptionerSection  # the same settings, each model reference replaced by its local file or folder
    models: tuple[ModelFiles, ...]  # where each of those came from (a hub repo and commit, or local disk)


def resolve_captioner(config: CaptionerSection, runtime_device: str = "auto") -> ResolvedCaptioner:
    """Every file the named captioner needs, found (hub names through the Hugging Face cache) before any work;
    otherwise an error naming the config key. Workers build the captioner from `.config`, the local paths, and a
    section whose `device` is left unset (None) runs on `runtime_device` (the job's runtime.device)."""
    if config.name not in _RESOLVERS:
        raise ValueError(f"unknown captioner {config.name!r} (config key captioner.name); known: {sorted(CAPTIONERS)}")
    section, models = _RESOLVERS[config.name](getattr(config, config.name))
    if getattr(section, "device", "") is None:
        section = dataclasses.replace(section, device=runtime_device)
    return ResolvedCaptioner(dataclasses.replace(config, **{config.name: section}), models)


def _hashed_files(model: ModelFiles) -> list[Path]:
    path = Path(model.path)
    files = sorted(path.glob("*")) if path.is_dir() else [path]
    return [file for file in files if file.is_file() and file.name.endswith(_HASHED_SUFFIXES)]


def captioner_provenance(resolved: ResolvedCaptioner) -> dict:
    """{"name", "sha256", "files"}: one digest over the captioner's files, so new weights or captions mean new
    shards, and each file (for a hub model, inside the cache) with its own sha256, repo id and commit."""
    digest = hashlib.sha256()
    files = []
    for model in resolved.models:
        for path in _hashed_files(model):
            own = hashlib.sha256()
            digest.update(path.name.encode())
            with path.open("rb") as handle:
                while block := handle.read(1 << 20):
                    digest.update(block)
                    own.update(block)
            files.append({"path": str(path), "sha256": own.hexdigest(), "repo_id": model.repo_id,
                          "revision": model.revision})
    return {"name": resolved.config.name, "sha256": digest.hexdigest(), "files": files}
