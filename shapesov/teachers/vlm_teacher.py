"""`python -m shapesov.teachers.vlm_teacher --teachers data/teachers`: make the ShapesOV instruction-following
teacher exist in TEACHERS/vlm/model (a LLaVA save_pretrained folder, shapesov/teachers/vlm_model.py).

It is kept when its files verify against TEACHERS/vlm/MANIFEST.json, that manifest's config is the current one and
it was trained on the CLIP now in TEACHERS/clip (`make teachers` puts it there); otherwise it is trained (a few
minutes on one CPU thread), so a retrained CLIP retrains it on its next use. `--retrain` trains regardless. The
manifest ends with the teacher's report: how often it names the right shape, per region prompt, on scenes of the
`teacher_eval` stream, asked through the `vlm` labeler's own loading path.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import shutil
import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from schemas.config import add_config_arguments, config_hash, load_config, to_dict
from shapesov.classes import SHAPE_NAMES
from shapesov.teachers.evaluate import names_shape
from shapesov.teachers.manifest import file_hashes, read_manifest, sha256_file, write_manifest
from shapesov.teachers.train_vlm import encode_examples, tokenizer_corpus, train_vlm
from shapesov.teachers.vlm_config import VlmTeacherConfig
from shapesov.teachers.vlm_examples import labeler_styles, render_examples
from shapesov.teachers.vlm_model import CLIP_WEIGHTS, build_teacher, save_teacher, train_tokenizer
from vlm.image_text_model import ImageTextModel

VLM_DIR, MODEL_DIR, CLIP_DIR = "vlm", "model", "clip"
REPORT_MAX_NEW_TOKENS = 8


def vlm_config_hash(cfg: VlmTeacherConfig) -> str:
    """Hash of what decides the teacher's weights: how many objects the report asks about is left out."""
    return config_hash(dataclasses.replace(cfg, eval_objects=0))


def verify_vlm_teacher(folder: Path, manifest: dict | None, config_sha256: str, clip_sha256: str) -> list[str]:
    """Problems that stop the teacher in `folder` (TEACHERS/vlm) from being reused; empty when none."""
    if manifest is None:
        return [f"{folder / 'MANIFEST.json'} does not exist"]
    if manifest.get("config_sha256") != config_sha256:
        return [f"{folder / 'MANIFEST.json'} was made with another teacher config"]
    if manifest.get("trained_on_clip") != clip_sha256:
        return ["it was trained on another CLIP teacher"]
    problems = []
    for rel, expected in manifest.get("files", {}).items():
        path = folder / rel
        if not path.is_file():
            problems.append(f"{path} is missing")
        elif sha256_file(path) != expected:
            problems.append(f"{path} does not match its sha256 in the manifest")
    return problems or ([] if manifest.get("files") else [f"{folder / 'MANIFEST.json'} lists no files"])


def teacher_report(model_dir: Path, cfg: VlmTeacherConfig) -> dict:
    """Per region prompt, the share of answers that name the object's shape, over the objects of fresh scenes
    (stream teacher_eval, one proposal-like box each) until `eval_objects` per prompt."""
    examples = render_examples(cfg.seed, "teacher_eval", max(1, cfg.eval_objects // 2), 1, cfg.box_jitter,
                               labeler_styles())
    model = ImageTextModel.from_dir(model_dir)
    answers = model.answer(examples.images, examples.prompts, REPORT_MAX_NEW_TOKENS, batch_size=64)
    report = {}
    for kind in sorted(set(examples.region_prompts)):
        rows = [i for i, k in enumerate(examples.region_prompts) if k == kind][:cfg.eval_objects]
        hits = [names_shape(answers[i], SHAPE_NAMES[examples.shape_ids[i]]) for i in rows]
        report[kind] = {"objects": len(rows), "names_the_shape": round(float(np.mean(hits)), 4),
                        "examples": [{"answer": answers[i], "truth": examples.answers[i]} for i in rows[:4]]}
    return report


def _train(cfg: VlmTeacherConfig, clip_dir: Path, folder: Path, log: Callable[[str], None]) -> dict:
    torch.manual_seed(cfg.seed)
    torch.set_num_threads(cfg.threads)  # the same bits for the same thread count (shapesov/teachers/build.py)
    started = time.perf_counter()
    examples = render_examples(cfg.seed, "teacher_vlm", cfg.train_scenes, cfg.boxes_per_object, cfg.box_jitter,
                               labeler_styles())
    tokenizer = train_tokenizer(tokenizer_corpus(examples), cfg.vocab_size)
    model, processor = build_teacher(cfg, clip_dir, tokenizer)
    encoded = encode_examples(model, processor, examples)
    log(f"vlm teacher: {len(examples)} examples rendered and encoded in {time.perf_counter() - started:.0f}s")
    losses = train_vlm(cfg, model, encoded, log)
    files = save_teacher(model.eval(), processor, folder / MODEL_DIR)
    return {"files": file_hashes(folder, files), "examples": len(examples),
            "train_seconds": round(time.perf_counter() - started, 1),
            "final_loss": round(sum(losses[-20:]) / len(losses[-20:]), 4)}


def ensure_vlm_teacher(cfg: VlmTeacherConfig, teachers: Path, retrain: bool = False,
                       log: Callable[[str], None] = print) -> dict:
    """Make the teacher present and verified in TEACHERS/vlm; returns its manifest."""
    clip_weights = teachers / CLIP_DIR / CLIP_WEIGHTS
    if not clip_weights.is_file():
        raise FileNotFoundError(f"no CLIP teacher at {clip_weights}: run `make teachers` (python -m shapesov.teachers "
                                f"--out {teachers}) first (flag --teachers)")
    folder = teachers / VLM_DIR
    digest, clip_sha256 = vlm_config_hash(cfg), sha256_file(clip_weights)
    manifest = read_manifest(folder)
    problems = ["--retrain"] if retrain else verify_vlm_teacher(folder, manifest, digest, clip_sha256)
    if not problems:
        log(f"vlm teacher: kept {folder / MODEL_DIR} (sha256 verified, trained on this CLIP)")
        return manifest
    log(f"vlm teacher: training ({problems[0]})")
    shutil.rmtree(folder, ignore_errors=True)  # the manifest goes first: a crash leaves nothing that verifies
    folder.mkdir(parents=True)
    entry = _train(cfg, teachers / CLIP_DIR, folder, log)
    manifest = {"config": to_dict(cfg), "config_sha256": digest, "seed": cfg.seed, "trained_on_clip": clip_sha256,
                "model": MODEL_DIR, **entry, "report": teacher_report(folder / MODEL_DIR, cfg)}
    write_manifest(folder, manifest)
    return read_manifest(folder)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m shapesov.teachers.vlm_teacher", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--teachers", type=Path, default=Path("data/teachers"),
                        help="teachers folder: the CLIP is read from TEACHERS/clip, this one goes to TEACHERS/vlm")
    parser.add_argument("--retrain", action="store_true", help="train even when a verified teacher exists")
    add_config_arguments(parser)
    args = parser.parse_args(argv)
    cfg = load_config(VlmTeacherConfig, args.config, args.overrides)
    started = time.perf_counter()
    manifest = ensure_vlm_teacher(cfg, args.teachers, args.retrain, log=lambda line: print(line, flush=True))
    print(json.dumps({"model": str(args.teachers / VLM_DIR / MODEL_DIR), "report": manifest["report"]}, indent=1))
    print(f"vlm teacher ready after {time.perf_counter() - started:.1f}s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
