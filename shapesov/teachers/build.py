"""Make the teachers exist under an output directory: reuse verified files, copy committed ones, or train.

Order per teacher: files already in `out` that match the manifest -> kept; else a verified committed copy (assets)
-> copied; else -> trained. ClipCap learns from the CLIP's embeddings, so a retrained CLIP retrains ClipCap too.
"""
from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Callable

import torch

from shapesov.teachers.clip_model import load_local_dir, save_local_dir
from shapesov.teachers.config import TeacherEvalConfig, TeachersConfig
from shapesov.teachers.evaluate import encode_crops
from shapesov.teachers.manifest import copy_teacher, file_hashes, read_manifest, verify_teacher, write_manifest
from shapesov.teachers.train_clip import train_clip
from shapesov.teachers.train_clipcap import CHECKPOINT_FILE, GPT_DIR, save_clipcap, train_clipcap
from schemas.config import config_hash, to_dict

TEACHERS = ("clip", "clipcap")
CLIP_DIR, CLIPCAP_DIR = "clip", "clipcap"
STOP_TOKEN = "."


def training_config_hash(cfg: TeachersConfig) -> str:
    """Hash of what decides the teachers' weights: report settings (`eval`) are left out, so changing how the
    teachers are measured never retrains them."""
    return config_hash(dataclasses.replace(cfg, eval=TeacherEvalConfig()))


def _set_determinism(cfg: TeachersConfig) -> None:
    torch.manual_seed(cfg.seed)
    # CPU kernels give the same bits for the same thread count; tests/pipelines/test_teachers.py checks that two
    # runs match. torch.use_deterministic_algorithms(True) is not used: it made these CPU steps about 8x slower.
    torch.set_num_threads(cfg.threads)


def _train_both(cfg: TeachersConfig, out: Path, log: Callable[[str], None]) -> dict:
    _set_determinism(cfg)
    start = time.perf_counter()
    clip, bank, clip_losses = train_clip(cfg.clip, cfg.background, cfg.seed, log)
    clip_files = save_local_dir(clip, cfg.clip.model_name, cfg.clip.image_size, out / CLIP_DIR)
    clip_seconds = time.perf_counter() - start
    start = time.perf_counter()
    # ClipCap learns from what the feature store will hold: embeddings of the saved-and-reloaded CLIP.
    reloaded, _, _ = load_local_dir(out / CLIP_DIR)
    embeddings = encode_crops(reloaded, bank)
    model, tokenizer, caption_losses = train_clipcap(cfg.clipcap, embeddings, bank.shape_ids, bank.colour_ids,
                                                     bank.background_ids, cfg.seed, log)
    clipcap_files = save_clipcap(model, tokenizer, out / CLIPCAP_DIR)
    clip_entry = {"files": file_hashes(out, clip_files), "open_clip_model": f"local-dir:{CLIP_DIR}",
                  "train_seconds": round(clip_seconds, 1), "final_loss": round(sum(clip_losses[-20:]) / 20, 4),
                  "training_crops": len(bank) if cfg.clip.learn_background else int(bank.frames_object.sum())}
    clipcap_entry = {
        "files": file_hashes(out, clipcap_files), "checkpoint": f"{CLIPCAP_DIR}/{CHECKPOINT_FILE}",
        "gpt_dir": f"{CLIPCAP_DIR}/{GPT_DIR}", "mapping_type": model.config.mapping_type,
        "prefix_length": model.config.prefix_length, "prefix_size": model.config.prefix_size,
        "normalize_prefix": model.config.normalize_prefix, "stop_token": STOP_TOKEN,
        "trained_on_clip": clip_entry["files"][f"{CLIP_DIR}/open_clip_model.safetensors"],
        "train_seconds": round(time.perf_counter() - start, 1),
        "final_loss": round(sum(caption_losses[-20:]) / 20, 4), "training_crops": len(bank),
        "training_crops_of_nothing": int((~bank.frames_object).sum())}
    return {"clip": clip_entry, "clipcap": clipcap_entry}


def ensure_teachers(cfg: TeachersConfig, out: Path, assets: Path | None, retrain: bool,
                    log: Callable[[str], None] = print) -> dict:
    """Make both teachers present and verified under `out`; returns the manifest written there."""
    out.mkdir(parents=True, exist_ok=True)
    digest = training_config_hash(cfg)
    existing = read_manifest(out)
    committed = read_manifest(assets) if assets is not None else None
    entries: dict[str, dict] = {}
    if not retrain:
        for teacher in TEACHERS:
            if not verify_teacher(out, existing, teacher, digest):
                entries[teacher] = existing["teachers"][teacher]
                log(f"{teacher}: kept {out} (sha256 verified)")
            elif assets is not None and not verify_teacher(assets, committed, teacher, digest):
                entries[teacher] = committed["teachers"][teacher]
                copy_teacher(assets, out, entries[teacher])
                log(f"{teacher}: copied from {assets} (sha256 verified)")
            else:
                reasons = verify_teacher(assets, committed, teacher, digest) if assets else ["no assets directory"]
                log(f"{teacher}: will train ({reasons[0]})")
    consistent = len(entries) == 2 and (entries["clipcap"]["trained_on_clip"]
                                        == entries["clip"]["files"][f"{CLIP_DIR}/open_clip_model.safetensors"])
    if not consistent:
        log("training both teachers (seed %d)" % cfg.seed)
        entries = _train_both(cfg, out, log)
    manifest = {"seed": cfg.seed, "config": to_dict(cfg), "config_sha256": digest, "teachers": entries}
    write_manifest(out, manifest)
    return manifest
