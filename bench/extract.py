"""Throughput of extract-features, three ways on the same crops, model and dtype:

  (a) model only   — the image tower's forward on pre-made, preprocessed crop tensors, batched
  (b) Beam job     — `python -m beam_jobs.extract_features` end to end (decode, crop, RunInference, commit)
  (c) naive loop   — per image: PIL crop of every region, open_clip's PIL preprocess, one forward per image
                     (how public feature-extraction scripts do it)

    .venv/bin/python bench/extract.py                     # small model (ViT-S-32, random weights)
    .venv/bin/python bench/extract.py --model ViT-B-32 --dtype bf16 --images 64

The images are synthetic photos-sized JPEGs written to a temporary folder; the model gets random weights and
is saved in open_clip's folder format, so the job loads it exactly as it loads a real checkpoint.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402

from pipelines.crops import crop_window  # noqa: E402
from pipelines.extract_config import ExtractFeaturesConfig  # noqa: E402
from pipelines.extract_plan import plan_dataset  # noqa: E402
from pipelines.models.clip import load_clip, resolve_clip  # noqa: E402
from schemas.config import load_config  # noqa: E402


def write_dataset(folder: Path, images: int, seed: int = 0) -> list[str]:
    """Photo-sized JPEGs with blocky content, 3 GT boxes and 12 proposals each; returns config overrides."""
    rng = np.random.default_rng(seed)
    (folder / "images").mkdir(parents=True)
    records, annotations, proposals = [], [], []
    for image_id in range(1, images + 1):
        width, height = int(rng.integers(480, 640)), int(rng.integers(360, 480))
        coarse = rng.integers(0, 255, (height // 16 + 1, width // 16 + 1, 3), dtype=np.uint8)
        pixels = np.kron(coarse, np.ones((16, 16, 1), np.uint8))[:height, :width]
        Image.fromarray(pixels).save(folder / "images" / f"{image_id:06d}.jpg", quality=90)
        records.append({"id": image_id, "file_name": f"{image_id:06d}.jpg", "width": width, "height": height})
        for k in range(15):
            w, h = rng.uniform(30, width / 2), rng.uniform(30, height / 2)
            box = [float(rng.uniform(0, width - w)), float(rng.uniform(0, height - h)), float(w), float(h)]
            if k < 3:
                annotations.append({"id": image_id * 100 + k, "image_id": image_id, "category_id": k + 1,
                                    "bbox": box, "iscrowd": 0})
            else:
                proposals.append({"image_id": image_id, "bbox": box, "score": float(rng.uniform())})
    categories = [{"id": i, "name": name} for i, name in enumerate(["cat", "dog", "car", "bus"], start=1)]
    (folder / "instances.json").write_text(json.dumps({"images": records, "annotations": annotations,
                                                       "categories": categories}))
    (folder / "split.json").write_text(json.dumps({"base": ["cat", "dog", "car"], "novel": ["bus"]}))
    (folder / "proposals.json").write_text(json.dumps(proposals))
    return [f"dataset.annotations={folder / 'instances.json'}", f"dataset.image_root={folder / 'images'}",
            f"dataset.split={folder / 'split.json'}", f"dataset.proposals={folder / 'proposals.json'}"]


def write_model(folder: Path, name: str) -> str:
    """Random weights for architecture `name`, saved as an open_clip model folder; returns `local-dir:`."""
    import open_clip
    from safetensors.torch import save_file

    folder.mkdir(parents=True)
    model = open_clip.create_model(name)
    config = {"model_cfg": open_clip.get_model_config(name), "preprocess_cfg": {}}
    (folder / "open_clip_config.json").write_text(json.dumps(config))
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(folder / "open_clip_model.safetensors"))
    return f"local-dir:{folder}"


def regions_by_image(config: ExtractFeaturesConfig) -> list[tuple[str, list[tuple[int, int, int, int]]]]:
    """(image path, crop windows) for every image, exactly the crops the job cuts."""
    planned = plan_dataset(config)
    out = []
    for plan in planned.plans:
        image = plan.image
        windows = [crop_window(r.box, "tight" if r.source == "image" else config.crop.mode, image.width,
                               image.height, config.crop.context_scale) for r in plan.regions]
        out.append((f"{config.dataset.image_root}/{image.file_name}", windows))
    return out


def naive_loop(clip, transform, work: list) -> tuple[int, float]:
    started = time.perf_counter()
    crops = 0
    with torch.inference_mode():
        for path, windows in work:
            with Image.open(path) as image:
                image = image.convert("RGB")
                batch = torch.stack([transform(image.crop(window)) for window in windows]).to(clip.dtype)
            clip.model.encode_image(batch)
            crops += len(windows)
    return crops, time.perf_counter() - started


def model_only(clip, transform, work: list, batch_size: int) -> tuple[int, float]:
    tensors = []
    for path, windows in work:
        with Image.open(path) as image:
            image = image.convert("RGB")
            tensors += [transform(image.crop(window)) for window in windows]
    inputs = torch.stack(tensors).to(clip.dtype)
    started = time.perf_counter()
    with torch.inference_mode():
        for i in range(0, len(inputs), batch_size):
            clip.model.encode_image(inputs[i:i + batch_size])
    return len(inputs), time.perf_counter() - started


def beam_job(overrides: list[str], store: Path) -> tuple[int, float]:
    argv = [sys.executable, "-m", "beam_jobs.extract_features", "--store", str(store)]
    argv += [f"--set={o}" for o in overrides]
    done = subprocess.run(argv, cwd=REPO, capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(REPO)})
    if done.returncode != 0:
        raise RuntimeError(f"the Beam job failed:\n{done.stderr[-3000:]}")
    summary = json.loads(done.stdout[done.stdout.index("{"):])
    # Wall time of the pipeline run: includes Beam start-up and the worker's model load, as a user sees it.
    print(f"  (beam job's own per-step rate, start-up excluded: {summary['crops_per_second']:.1f} crops/s; "
          f"seconds {summary['seconds']})")
    return summary["crops"], summary["wall_seconds"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="ViT-S-32", help="open_clip architecture (random weights)")
    parser.add_argument("--dtype", default="fp32", choices=["fp32", "bf16", "fp16"])
    parser.add_argument("--images", type=int, default=48)
    parser.add_argument("--batch", type=int, default=64, help="max batch size for (a) and (b)")
    parser.add_argument("--crop-mode", default="square", choices=["tight", "square", "context"])
    args = parser.parse_args(argv)
    from open_clip.transform import PreprocessCfg, image_transform_v2

    with tempfile.TemporaryDirectory(prefix="bench-extract-") as tmp:
        work_dir = Path(tmp)
        overrides = write_dataset(work_dir / "data", args.images) + [
            f"model.clip={write_model(work_dir / 'model', args.model)}", f"model.dtype={args.dtype}",
            "runtime.device=auto", f"runtime.max_batch_size={args.batch}", f"runtime.min_batch_size={args.batch}",
            f"crop.mode={args.crop_mode}", "vocab.prompts=single", "shard_size=16"]
        config = load_config(ExtractFeaturesConfig, None, overrides)
        work = regions_by_image(config)
        clip = load_clip(resolve_clip(config.model.clip, None, None), device="auto", dtype=args.dtype)
        transform = image_transform_v2(PreprocessCfg(**clip.preprocess_cfg), is_train=False)
        results = {"model only (a)": model_only(clip, transform, work, args.batch),
                   "beam job (b)": beam_job(overrides, work_dir / "store"),
                   "naive loop (c)": naive_loop(clip, transform, work)}
    rates = {name: crops / seconds for name, (crops, seconds) in results.items()}
    print(f"model {args.model} {args.dtype}, {args.images} images, torch threads {torch.get_num_threads()}")
    for name, (crops, seconds) in results.items():
        print(f"  {name:16s} {crops:6d} crops in {seconds:7.2f} s = {rates[name]:8.1f} crops/s")
    print(f"  beam / model-only = {rates['beam job (b)'] / rates['model only (a)']:.2f}   (target >= 0.85)")
    print(f"  beam / naive      = {rates['beam job (b)'] / rates['naive loop (c)']:.2f}   (target >= 3)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
