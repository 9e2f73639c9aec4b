"""The fixed text encoder of the evaluation (`opendet.inference.name_encoder`): the store's own CLIP and prompt
ensemble, so a generated name and a category name are embedded exactly as extract-features embedded the store's
vocab, or an offline sentence encoder (all-MiniLM-L6-v2, `trainers.opendet.sentence_encoder`).

The Open-Det protocol embeds both with one pre-trained text encoder (Sec. 4, "Evaluation Metrics"); with the store's
CLIP the category side is the `vocab` table itself, with any other encoder the category names are embedded by it.
Loading the CLIP reuses the pipelines' offline open_clip loader and prompt ensembles (the one place the trainer reads
a pipelines module, and only at evaluation).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from featurestore.reader import StoreReader
from trainers.opendet.inference import NameEncoder
from trainers.opendet.config import OpenDetInferenceConfig
from trainers.opendet.sentence_encoder import load_sentence_encoder
from trainers.vocabulary import ClassVocabulary


def store_clip_name_encoder(store: str, device: str = "cpu") -> NameEncoder:
    """names → (N, D) float32, L2-normalised, with the CLIP and `vocab.prompts` of the store's extract-features run."""
    from vlm.clip import load_clip, resolve_clip
    from vlm.prompts import text_embeddings

    stage = StoreReader(store).stage_config("extract_features")
    config = stage.get("config", {})
    if "model" not in config or "prompts" not in config.get("vocab", {}):
        raise ValueError(f"store {store}: its manifest has no extract_features model and vocab.prompts, so the "
                         "text encoder that embedded its vocab is unknown; run extract-features first")
    model, prompts = config["model"], config["vocab"]["prompts"]
    clip = load_clip(resolve_clip(model["clip"], model.get("checkpoint"), model.get("model_config_dir")), device)

    def encode(names: list[str]) -> Tensor:
        embeddings = text_embeddings(clip.model, clip.tokenizer, names, prompts, clip.device)
        return F.normalize(torch.from_numpy(embeddings), dim=-1)

    return encode


def load_name_encoder(inference: OpenDetInferenceConfig, store: str, device: str = "cpu") -> NameEncoder:
    """The evaluation's text encoder named by `inference.name_encoder`."""
    if inference.name_encoder == "store_clip":
        return store_clip_name_encoder(store, device)
    return load_sentence_encoder(inference.name_encoder_dir, device)


def category_embeddings(inference: OpenDetInferenceConfig, vocabulary: ClassVocabulary, name_encoder: NameEncoder
                        ) -> Tensor:
    """(C, D) float32, L2-normalised, in `vocabulary` order: the category names in the space of `name_encoder`.

    store_clip: the vocab's own rows, which extract-features wrote with this very CLIP and prompt ensemble (the
    same numbers, no re-embedding); any other encoder embeds `vocabulary.names` itself."""
    if inference.name_encoder == "store_clip":
        return vocabulary.embeddings
    return name_encoder(list(vocabulary.names))
