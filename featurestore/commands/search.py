"""`search STORE "a red star" -k 16 -o grid.png`: regions whose CLIP embedding is nearest to a text, on a sheet.

The text is embedded with the store's own CLIP and prompt ensemble (as recorded by extract-features), the region
embeddings are searched exactly with faiss (inner product on unit vectors = cosine), and the hits are cropped from
their images, each image decoded once.
"""
from __future__ import annotations

import math

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from featurestore.arrow import embeddings_to_numpy
from featurestore.commands.render import add_out_argument, emit
from featurestore.commands.store_images import image_root, open_image
from featurestore.commands.label_report import normalised
from featurestore.reader import StoreReader
from vlm.clip import resolve_clip
from vlm.text_encoder import StoreTextEncoder

THUMB = 128
LABEL_HEIGHT = 28


def add_arguments(parser) -> None:
    parser.add_argument("store", help="the store: the folder holding manifest.json, or its URL (s3://…, gs://…)")
    parser.add_argument("text", help="what to look for, e.g. \"a red star\"")
    parser.add_argument("-k", type=int, default=16, help="number of regions (default 16)")
    add_out_argument(parser, "PNG contact sheet to write")
    parser.add_argument("--source", choices=("gt", "proposal", "image"), action="append", default=None,
                        help="only regions of this source (repeatable; default all)")
    parser.add_argument("--image-root", default=None, help="image folder (default: the one extract-features read)")
    parser.add_argument("--json", action="store_true", help="also print the hits as JSON")


def text_query(reader: StoreReader, text: str) -> np.ndarray:
    """(1, D) unit text embedding from the CLIP and prompts that extract-features recorded in the manifest."""
    clip = reader.manifest.store_clip(f"store {reader.root}")
    source = resolve_clip(clip.name, clip.checkpoint, clip.model_config_dir, revision=clip.revision)
    return StoreTextEncoder.load(source, clip.prompts).encode([text])


def search_regions(reader: StoreReader, query: np.ndarray, k: int, sources: list[str] | None) -> list[dict]:
    """Top-k regions by cosine: one faiss index over every region embedding, filled one record batch at a time."""
    import faiss

    index, keys = None, []
    for batch in reader.stream("regions", ["image_id", "region_id", "box", "source", "embedding"]):
        if sources:
            batch = batch.filter(np.isin(batch.column("source").to_numpy(zero_copy_only=False), sources))
        if not batch.num_rows:
            continue
        vectors = normalised(embeddings_to_numpy(batch.column("embedding")))
        index = index or faiss.IndexFlatIP(vectors.shape[1])
        index.add(np.ascontiguousarray(vectors))
        keys += batch.select(["image_id", "region_id", "box", "source"]).to_pylist()
    if index is None:
        return []
    scores, ids = index.search(np.ascontiguousarray(query, dtype=np.float32), min(k, len(keys)))
    return [{**keys[i], "cos": float(s)} for s, i in zip(scores[0], ids[0]) if i >= 0]


def contact_sheet(hits: list[dict], crops: list[Image.Image]) -> Image.Image:
    columns = max(1, math.ceil(math.sqrt(len(hits))))
    rows = max(1, math.ceil(len(hits) / columns))
    sheet = Image.new("RGB", (columns * THUMB, rows * (THUMB + LABEL_HEIGHT)), "white")
    draw = ImageDraw.Draw(sheet)
    font = ImageFont.load_default()
    for n, (hit, crop) in enumerate(zip(hits, crops)):
        x, y = (n % columns) * THUMB, (n // columns) * (THUMB + LABEL_HEIGHT)
        crop.thumbnail((THUMB, THUMB))
        sheet.paste(crop, (x + (THUMB - crop.width) // 2, y + (THUMB - crop.height) // 2))
        draw.text((x + 2, y + THUMB + 1), f"{hit['image_id']}/{hit['region_id']} {hit['source']}", fill="black",
                  font=font)
        draw.text((x + 2, y + THUMB + 13), f"cos {hit['cos']:.3f}", fill="black", font=font)
    return sheet


def run(args) -> int:
    reader = StoreReader(args.store)
    hits = search_regions(reader, text_query(reader, args.text), args.k, args.source)
    root = image_root(reader, args.image_root)
    files = {}
    for batch in reader.stream("images", ["image_id", "file_name"]):
        files.update(zip(batch.column("image_id").to_pylist(), batch.column("file_name").to_pylist()))
    decoded = {image_id: open_image(root, files[image_id]) for image_id in {h["image_id"] for h in hits}}
    crops = [decoded[h["image_id"]].crop(tuple(round(v) for v in h["box"])) for h in hits]
    contact_sheet(hits, crops).save(args.out)
    if args.json:
        emit(hits)
    print(f"wrote {args.out}: {len(hits)} regions nearest to {args.text!r}")
    return 0
