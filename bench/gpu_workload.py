"""The device benchmark's workload: synthetic photo-sized JPEGs with 10 regions each, an open_clip model folder with
random weights, and the same crops as pre-cut tensors (model only) or as a naive loop cuts them.

Every image is 640x480 with 3 base GT boxes and 6 proposals in separate cells of a 3x3 grid (no overlap, so region
planning keeps all 6 with top_k 6), plus the whole image: 10 crops an image, as the issue asks. Content is smooth
shading with flat blocks (what JPEG and resizing see in photos), one baseline JPEG (quality 90) each.
"""
from __future__ import annotations

import io
import json
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from pipelines.crops import crop_window
from vlm.clip_preprocess import CropPreprocess, resize_crop

WIDTH, HEIGHT = 640, 480
GT_PER_IMAGE, PROPOSALS_PER_IMAGE = 3, 6  # + the whole image = 10 crops
CATEGORIES = ["cat", "dog", "car", "bus"]


def photo_pixels(seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:HEIGHT, 0:WIDTH] / WIDTH
    phase = rng.uniform(0, 2 * np.pi, 3)
    pixels = np.stack([127 + 90 * np.sin(5 * xx + phase[0]) * np.cos(3 * yy), 127 + 90 * np.sin(4 * yy + phase[1]),
                       127 + 90 * np.cos(6 * (xx + yy) + phase[2])], -1)
    for _ in range(12):
        y0, x0 = int(rng.integers(0, HEIGHT - 40)), int(rng.integers(0, WIDTH - 40))
        pixels[y0:y0 + int(rng.integers(20, 120)), x0:x0 + int(rng.integers(20, 160))] = rng.integers(0, 255, 3)
    return pixels.clip(0, 255).astype(np.uint8)


def grid_boxes(seed: int) -> list[list[float]]:
    """9 xywh boxes, one in each cell of a 3x3 grid, in shuffled cell order."""
    rng = np.random.default_rng(10_000 + seed)
    cell_w, cell_h = WIDTH / 3, HEIGHT / 3
    boxes = []
    for cell in rng.permutation(9):
        w, h = rng.uniform(0.3, 0.95) * cell_w, rng.uniform(0.3, 0.95) * cell_h
        x = (cell % 3) * cell_w + rng.uniform(0, cell_w - w)
        y = (cell // 3) * cell_h + rng.uniform(0, cell_h - h)
        boxes.append([round(float(x), 2), round(float(y), 2), round(float(w), 2), round(float(h), 2)])
    return boxes


def write_image(folder: Path, image_id: int) -> None:
    buffer = io.BytesIO()
    Image.fromarray(photo_pixels(image_id)).save(buffer, "JPEG", quality=90)
    (folder / f"{image_id:07d}.jpg").write_bytes(buffer.getvalue())


def write_dataset(folder: Path, images: int) -> list[str]:
    """JPEGs, COCO annotations, an OV split and proposals under `folder`; returns the extract-features overrides."""
    (folder / "images").mkdir(parents=True, exist_ok=True)
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:  # PIL's encoder releases the GIL
        list(pool.map(lambda i: write_image(folder / "images", i), range(1, images + 1)))
    records, annotations, proposals = [], [], []
    for image_id in range(1, images + 1):
        records.append({"id": image_id, "file_name": f"{image_id:07d}.jpg", "width": WIDTH, "height": HEIGHT})
        boxes = grid_boxes(image_id)
        for k, box in enumerate(boxes[:GT_PER_IMAGE]):
            annotations.append({"id": image_id * 10 + k, "image_id": image_id, "category_id": k + 1, "bbox": box,
                                "iscrowd": 0, "area": box[2] * box[3]})
        proposals += [{"image_id": image_id, "bbox": box, "score": 0.9 - 0.1 * k}
                      for k, box in enumerate(boxes[GT_PER_IMAGE:])]
    categories = [{"id": i, "name": name} for i, name in enumerate(CATEGORIES, start=1)]
    (folder / "instances.json").write_text(json.dumps({"images": records, "annotations": annotations,
                                                       "categories": categories}))
    (folder / "split.json").write_text(json.dumps({"base": CATEGORIES[:3], "novel": CATEGORIES[3:]}))
    (folder / "proposals.json").write_text(json.dumps(proposals))
    return [f"dataset.annotations={folder / 'instances.json'}", f"dataset.image_root={folder / 'images'}",
            f"dataset.split={folder / 'split.json'}", f"dataset.proposals={folder / 'proposals.json'}",
            f"regions.top_k={PROPOSALS_PER_IMAGE}", "regions.include_image=true", "vocab.prompts=single"]


def crop_windows(folder: Path, mode: str, count: int) -> list[tuple[Path, list[tuple[int, int, int, int]]]]:
    """(image path, its 10 crop windows) of the first `count` images, as the job cuts them (pipelines.crops)."""
    out = []
    for image_id in range(1, count + 1):
        boxes = grid_boxes(image_id)[:GT_PER_IMAGE + PROPOSALS_PER_IMAGE]
        windows = [crop_window((x, y, x + w, y + h), mode, WIDTH, HEIGHT) for x, y, w, h in boxes]
        out.append((folder / "images" / f"{image_id:07d}.jpg", windows + [(0, 0, WIDTH, HEIGHT)]))
    return out


def write_model(folder: Path, model_cfg: dict, preprocess_cfg: dict | None = None, seed: int = 0) -> str:
    """An open_clip model folder with random weights for `model_cfg`; returns its `local-dir:` name."""
    import open_clip
    from safetensors.torch import save_file

    folder.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    model = open_clip.CLIP(**model_cfg)
    (folder / "open_clip_config.json").write_text(json.dumps({"model_cfg": model_cfg,
                                                              "preprocess_cfg": preprocess_cfg or {}}))
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(folder / "open_clip_model.safetensors"))
    return f"local-dir:{folder}"


def host_cut_crops(work: list, pre: CropPreprocess) -> torch.Tensor:
    """(N, 3, H, W) uint8: every window of `work` cut from PIL's pixels and resized as the host path does."""
    def cut_one(item):
        path, windows = item
        with Image.open(path) as image:
            pixels = np.array(image.convert("RGB"))
        return [resize_crop(pixels[y0:y1, x0:x1], pre) for x0, y0, x1, y1 in windows]

    with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        return torch.stack([crop for crops in pool.map(cut_one, work) for crop in crops])
