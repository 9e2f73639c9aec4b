"""Seconds per pseudo box of the label pick (spaCy nouns → CLIP text embeddings of the candidates → max-cosine
pick), as pseudo-labels' NounsAndPick step runs it, before and after the text tower's batching:

  before — each distinct candidate its own call: its 80 ImageNet prompts through `encode_text`, 77 tokens each (the
           pick as it was)
  after  — the pick as it is: the batch's distinct candidates in one call to the store's text encoder
           (vlm/text_encoder.py), every prompt of it in batches, each prompt cut to its tokens after the
           template's shared words (vlm/text_tower.py)

On a photo set made here: 10 photo-sized JPEGs (480-800 px a side), 41 boxes, their crops encoded by a ViT-B-32
with random weights (an open_clip `local-dir:` folder, loaded as the jobs load it) and COCO-style captions,
parsed by the real spaCy model. Both sides pick with the same ViT-B-32 text tower and the imagenet80 ensemble.

    .venv/bin/python -m bench.label_pick
    .venv/bin/python -m bench.label_pick --before-names 3      # quick

The before side costs the same for every candidate (one forward of 80 prompts x 77 tokens, whatever the name), so
it is timed on `--before-names` of the distinct candidates and scaled to all of them; the after side encodes all of
them. Both run in the same process, one after the other, and the picks of the timed names are checked to agree.
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from bench.common import add_json_flag, at_least, report, result
from bench.extract import write_model
from pipelines.crops import crop_window, cut
from pipelines.nouns import NounExtractor
from pipelines.pseudo_label_pick import TextEmbeddingCache, pick_labels
from pipelines.pseudo_labels_config import NounsSection
from vlm.clip import load_clip, resolve_clip
from vlm.clip_preprocess import CropPreprocess, normalise_batch, resize_crop
from vlm.embeddings import unit_embeddings
from vlm.prompts import IMAGENET80
from vlm.text_encoder import StoreTextEncoder

GOAL_SPEED_UP = 10.0  # seconds per box before / after
IMAGES, BOXES = 10, 41
CAPTIONS = (
    "a man riding a red bicycle down a busy street", "a brown dog lying on a wooden floor next to a couch",
    "a plate of pasta with tomato sauce and basil", "two giraffes standing in a grassy field under trees",
    "a woman holding an umbrella in the rain", "a white boat docked at a small harbor",
    "a cat sleeping on top of a laptop keyboard", "a group of people flying kites on a beach",
    "a yellow school bus parked in front of a brick building", "a bowl of oranges and bananas on a kitchen table",
    "a young boy swinging a baseball bat at a ball", "a clock tower against a cloudy blue sky",
    "a stop sign at the corner of an empty road", "a skateboarder jumping over a concrete ramp",
    "an elephant walking through tall dry grass", "a glass vase with pink flowers on a window sill",
    "a train crossing a bridge over a river", "a pizza with mushrooms and olives on a cutting board",
    "a laptop and a coffee mug on a cluttered desk", "a horse grazing next to a wooden fence",
)


def write_photos(folder: Path, seed: int = 0) -> list[tuple[Path, list[tuple[float, ...]]]]:
    """IMAGES photo-sized JPEGs with blocky content and BOXES boxes spread over them: (path, boxes) per image."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True)
    counts = np.full(IMAGES, BOXES // IMAGES)
    counts[:BOXES % IMAGES] += 1
    photos = []
    for index, count in enumerate(counts):
        width, height = int(rng.integers(480, 800)), int(rng.integers(480, 800))
        coarse = rng.integers(0, 255, (height // 16 + 1, width // 16 + 1, 3), dtype=np.uint8)
        path = folder / f"{index:06d}.jpg"
        Image.fromarray(np.kron(coarse, np.ones((16, 16, 1), np.uint8))[:height, :width]).save(path, quality=90)
        boxes = []
        for _ in range(count):
            w, h = rng.uniform(40, width * 0.6), rng.uniform(40, height * 0.6)
            x, y = rng.uniform(0, width - w), rng.uniform(0, height - h)
            boxes.append((x, y, x + w, y + h))
        photos.append((path, boxes))
    return photos


def region_embeddings(clip, photos) -> np.ndarray:
    """(BOXES, D) unit embeddings of the boxes' square crops (the OV-COCO preset's crop mode)."""
    preprocess = CropPreprocess.from_open_clip(clip.preprocess_cfg)
    crops = []
    for path, boxes in photos:
        pixels = np.array(Image.open(path).convert("RGB"))
        height, width = pixels.shape[:2]
        crops += [resize_crop(cut(pixels, crop_window(box, "square", width, height)), preprocess) for box in boxes]
    with torch.inference_mode():
        features = clip.model.encode_image(normalise_batch(torch.stack(crops), preprocess, clip.dtype))
    return unit_embeddings(features)[0].numpy()


def one_name_at_a_time(clip):
    """The pick's text encoding as it was: per name, its 80 prompts through encode_text at full context length."""
    def encode(names: list[str]) -> np.ndarray:
        rows = []
        with torch.inference_mode():
            for name in names:
                tokens = clip.tokenizer([template.format(name) for template in IMAGENET80]).to(clip.device)
                per_template = torch.nn.functional.normalize(clip.model.encode_text(tokens).float(), dim=-1)
                rows.append(torch.nn.functional.normalize(per_template.mean(dim=0), dim=-1))
        return torch.stack(rows).numpy()
    return encode


def timed_pick(extractor, captions, embeddings, encode) -> tuple[float, list, int]:
    """(seconds, picks, distinct candidates) of one NounsAndPick pass over every box, a fresh cache."""
    started = time.perf_counter()
    candidates = extractor.candidates(captions)
    cache = TextEmbeddingCache(encode)
    picks = pick_labels(embeddings, candidates, cache)
    return time.perf_counter() - started, picks, len(cache)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="ViT-B-32", help="open_clip architecture, random weights (ViT-B-32)")
    parser.add_argument("--before-names", type=int, default=8,
                        help="distinct candidates timed on the before side, scaled to all of them (default 8)")
    add_json_flag(parser)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bench-label-pick-") as tmp:
        photos = write_photos(Path(tmp) / "images")
        clip = load_clip(resolve_clip(write_model(Path(tmp) / "clip", args.model), None, None))
        embeddings = region_embeddings(clip, photos)
    rng = np.random.default_rng(1)
    captions = [CAPTIONS[i] for i in rng.integers(0, len(CAPTIONS), BOXES)]
    extractor = NounExtractor.from_config(NounsSection())
    extractor.candidates(captions[:2])  # spaCy's first call pays its lazy set-up; neither side should

    after_seconds, picks, distinct = timed_pick(extractor, captions, embeddings,
                                                StoreTextEncoder(clip, "imagenet80").encode)
    names = sorted({pick.label for pick in picks if pick})[:args.before_names]
    started = time.perf_counter()
    before_rows = one_name_at_a_time(clip)(names)
    per_name = (time.perf_counter() - started) / len(names)
    # The before side: the same spaCy pass and matmul, and every distinct candidate at the timed rate per name.
    spacy_started = time.perf_counter()
    candidates = extractor.candidates(captions)
    spacy_seconds = time.perf_counter() - spacy_started
    before_seconds = spacy_seconds + per_name * distinct
    after_rows = StoreTextEncoder(clip, "imagenet80").encode(names)
    agreement = float(np.abs(before_rows - after_rows).max())
    metrics = {"model": args.model, "images": IMAGES, "boxes": BOXES, "distinct_candidates": distinct,
               "candidates": sum(len(c) for c in candidates), "before_names_timed": len(names),
               "before_seconds_per_name": per_name, "spacy_seconds": spacy_seconds,
               "before_seconds_per_box": before_seconds / BOXES, "after_seconds_per_box": after_seconds / BOXES,
               "speed_up": before_seconds / after_seconds, "max_embedding_difference": agreement}
    print(f"  {BOXES} boxes on {IMAGES} photos, {metrics['candidates']} candidates, {distinct} distinct")
    print(f"  before: {per_name:.2f} s per distinct candidate (timed on {len(names)}), "
          f"{metrics['before_seconds_per_box']:.2f} s per box")
    print(f"  after:  {after_seconds:.1f} s in all, {metrics['after_seconds_per_box']:.3f} s per box")
    print(f"  before / after: {metrics['speed_up']:.1f}x; largest embedding difference {agreement:.1e}")
    notes = [f"the before side timed on {len(names)} of {distinct} distinct candidates (one 80 x 77-token forward "
             f"each, the same for every name) and scaled; both sides share the spaCy pass "
             f"({spacy_seconds:.2f} s) and the cosine matmul",
             f"the two encoders' embeddings of the timed names differ by at most {agreement:.1e}"]
    goals = [at_least("label pick: seconds per box, before / after", metrics["speed_up"], GOAL_SPEED_UP)]
    return report(result("label_pick", argv, metrics, goals, notes), args.json)


if __name__ == "__main__":
    raise SystemExit(main())
