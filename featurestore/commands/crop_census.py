"""Crops that tell the truth: per stage, how many region crops were the whole image and how many were cut at its
border, counted from the stored windows (`regions.crop_box`) and the extract-features config in the manifest.

A region whose crop is the whole image carries the image's own embedding, whatever its box holds; a pseudo box so
cropped is labelled from the whole picture. `inspect`, `labels` and `report` show these counts.
"""
from __future__ import annotations

import dataclasses
from collections import Counter

import numpy as np

from featurestore.reader import StoreReader
from featurestore.stages import EXTRACT_FEATURES
from pipelines.crops import is_whole_image
from pipelines.extract_config import CropSection
from schemas.config import ConfigError, from_dict


def recorded_crop(reader: StoreReader) -> CropSection | None:
    """The crop section extract-features ran with (keys it did not record yet take their defaults)."""
    stage = reader.manifest.stages.get(EXTRACT_FEATURES)
    recorded = stage.setting("crop") if stage else None
    if not isinstance(recorded, dict):
        return None
    known = {field.name for field in dataclasses.fields(CropSection)}
    try:
        return from_dict(CropSection, {k: v for k, v in recorded.items() if k in known}, "crop.")
    except ConfigError:
        return None


def crop_census(reader: StoreReader) -> dict | None:
    """{"crop": the crop settings, "by_source": {source: {"crops", "whole_image", "clipped"}} for gt and proposal
    regions, "pseudo_boxes": the same three counts for the labelled pseudo boxes}, or None for a store without
    regions or without a recorded crop section."""
    crop = recorded_crop(reader)
    if crop is None or not reader.shards("regions"):
        return None
    sizes = {row["image_id"]: (row["width"], row["height"])
             for row in reader.read_table("images", ["image_id", "width", "height"]).to_pylist()}
    labelled = set()
    if reader.shards("pseudo_labels"):
        for batch in reader.stream("pseudo_labels", ["image_id", "region_id"]):
            labelled.update(zip(batch.column("image_id").to_pylist(), batch.column("region_id").to_pylist()))
    counts: dict[str, Counter] = {}
    pseudo: Counter = Counter()
    for batch in reader.stream("regions", ["image_id", "region_id", "box", "source", "crop_box"]):
        for row in batch.to_pylist():
            if row["source"] == "image" or row["image_id"] not in sizes:
                continue
            width, height = sizes[row["image_id"]]
            whole = is_whole_image(np.asarray(row["crop_box"]), width, height)
            clipped = crop.clipped(row["box"], row["source"], width, height)
            tally = counts.setdefault(row["source"], Counter())
            tally.update(crops=1, whole_image=int(whole), clipped=int(clipped))
            if (row["image_id"], row["region_id"]) in labelled:
                pseudo.update(crops=1, whole_image=int(whole), clipped=int(clipped))
    empty = {"crops": 0, "whole_image": 0, "clipped": 0}
    return {"crop": dataclasses.asdict(crop),
            "by_source": {source: {**empty, **tally} for source, tally in sorted(counts.items())},
            "pseudo_boxes": {**empty, **pseudo} if labelled else None}


def census_lines(census: dict | None) -> list[str]:
    """The census as text lines for a terminal."""
    if census is None:
        return []
    crop = census["crop"]
    how = crop["mode"] + (f" (scale {crop['context_scale']:g})" if crop["mode"] == "context" else "")
    if crop["mode"] == "square":
        cap = crop.get("square_max_area")
        how += f", capped at {cap:g} of the image's area" if cap else ", no cap (crop.square_max_area)"
    lines = [f"crops ({how}): the whole image / cut at the border"]
    for source, tally in census["by_source"].items():
        lines.append(f"  {source:<22} {tally['whole_image']} / {tally['clipped']} of {tally['crops']}")
    pseudo = census["pseudo_boxes"]
    if pseudo is not None:
        lines.append(f"  {'labelled pseudo boxes':<22} {pseudo['whole_image']} / {pseudo['clipped']} of "
                     f"{pseudo['crops']}")
    return lines
