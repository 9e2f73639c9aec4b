"""Region captioners behind one interface (`base.Captioner`), chosen by name from `CAPTIONERS`."""
from __future__ import annotations

import hashlib
from pathlib import Path

from pipelines.captioners.base import (CAPTIONERS, CaptionFailure, CaptionResult, Captioner, ImageRegions,
                                       register_captioner)
from pipelines.captioners.blip2 import check_blip2_files
from pipelines.captioners.clipcap import check_clipcap_files
from pipelines.captioners.given import check_given_files
from pipelines.pseudo_labels_config import CaptionerSection

__all__ = ["CAPTIONERS", "CaptionFailure", "CaptionResult", "Captioner", "ImageRegions", "build_captioner",
           "captioner_provenance", "check_captioner_files", "register_captioner"]

# Weight and data files whose bytes decide a captioner's output (configs and tokenizers are small, hashed too).
_HASHED_SUFFIXES = (".pt", ".pth", ".bin", ".safetensors", ".json", ".jsonl", ".txt", ".model")


def build_captioner(config: CaptionerSection) -> Captioner:
    """The captioner named by `config.name`, built from its own section; errors name the config key."""
    if config.name not in CAPTIONERS:
        raise ValueError(f"unknown captioner {config.name!r} (config key captioner.name); "
                         f"known: {sorted(CAPTIONERS)}")
    return CAPTIONERS[config.name].from_config(getattr(config, config.name))


_FILE_CHECKS = {"clipcap": check_clipcap_files, "blip2": check_blip2_files, "given": check_given_files}


def check_captioner_files(config: CaptionerSection) -> None:
    """Every file the named captioner needs exists; otherwise an error naming the config key (before any work)."""
    if config.name not in _FILE_CHECKS:
        raise ValueError(f"unknown captioner {config.name!r} (config key captioner.name); known: {sorted(CAPTIONERS)}")
    _FILE_CHECKS[config.name](getattr(config, config.name))


def _files_of(config: CaptionerSection) -> list[Path]:
    if config.name == "clipcap":
        return [Path(config.clipcap.checkpoint), *sorted(Path(config.clipcap.gpt_dir).glob("*"))]
    if config.name == "blip2":
        return sorted(Path(config.blip2.model_dir).glob("*"))
    return [Path(config.given.path)]


def captioner_provenance(config: CaptionerSection) -> dict:
    """{"name", "sha256"}: one digest over the captioner's files, so new weights or captions mean new shards."""
    digest = hashlib.sha256()
    for path in _files_of(config):
        if path.is_file() and path.name.endswith(_HASHED_SUFFIXES):
            digest.update(path.name.encode())
            with path.open("rb") as handle:
                while block := handle.read(1 << 20):
                    digest.update(block)
    return {"name": config.name, "sha256": digest.hexdigest()}
