"""`given` captioner: captions made elsewhere, read from a JSONL of {image_id, region_id, caption}."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

from pipelines.captioners.base import ImageRegions, register_captioner
from pipelines.pseudo_labels_config import GivenSection
from vlm.hub import ModelFiles


def read_caption_jsonl(path: str | Path) -> dict[tuple[int, int], str]:
    """(image_id, region_id) → caption; a malformed line is an error naming the file and line number."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"captions file not found: {path} (config key captioner.given.path)")
    captions: dict[tuple[int, int], str] = {}
    with path.open() as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
                key = (int(row["image_id"]), int(row["region_id"]))
                caption = row["caption"]
            except (ValueError, KeyError, TypeError) as error:
                raise ValueError(f"{path}:{number}: expected {{image_id, region_id, caption}}, got {line.strip()[:80]!r}"
                                 f" ({type(error).__name__}: {error})") from error
            if not isinstance(caption, str):
                raise ValueError(f"{path}:{number}: caption must be a string, got {caption!r}")
            captions[key] = caption
    return captions


@register_captioner("given")
class GivenCaptioner:
    name = "given"

    def __init__(self, captions: dict[tuple[int, int], str]):
        self.captions = captions

    @classmethod
    def from_config(cls, section: GivenSection) -> "GivenCaptioner":
        return cls(read_caption_jsonl(section.path))

    def caption(self, batch: Sequence[ImageRegions]) -> list[list[str]]:
        """B images → their regions' captions; a region missing from the file gets "" (a failures row later)."""
        return [[self.captions.get((item.image_id, r), "") for r in item.region_ids] for item in batch]


def resolve_given(section: GivenSection) -> tuple[GivenSection, tuple[ModelFiles, ...]]:
    """The section unchanged and its captions file (local only), or an error naming the config key."""
    if not Path(section.path).is_file():
        raise FileNotFoundError(f"captions file not found: {section.path!r} (config key captioner.given.path)")
    return section, (ModelFiles(section.path),)
