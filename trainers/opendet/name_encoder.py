"""The fixed text encoder of the evaluation (`opendet.inference.name_encoder`): the store's own CLIP and prompt
ensemble, so a generated name and a category name are embedded exactly as extract-features embedded the store's
vocab, or an offline sentence encoder (all-MiniLM-L6-v2, `trainers.opendet.sentence_encoder`).

The Open-Det protocol embeds both with one pre-trained text encoder (Sec. 4, "Evaluation Metrics"); with the store's
CLIP the category side is the `vocab` table itself, with any other encoder the category names are embedded by it.
The store's CLIP is `vlm.text_encoder.StoreTextEncoder`, the same encoder search and pseudo-labels use.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from featurestore.reader import StoreReader
from trainers.opendet.inference import NameEncoder
from trainers.opendet.config import OpenDetInferenceConfig
from trainers.opendet.sentence_encoder import find_sentence_encoder, load_sentence_encoder
from trainers.vocabulary import ClassVocabulary
from vlm.clip import resolve_clip
from vlm.text_encoder import StoreTextEncoder


def store_clip_name_encoder(store: str, device: str = "cpu") -> NameEncoder:
    """names → (N, D) float32, L2-normalised, with the CLIP and `vocab.prompts` of the store's extract-features run."""
    clip = StoreReader(store).manifest.store_clip(f"store {store}")
    source = resolve_clip(clip.name, clip.checkpoint, clip.model_config_dir, revision=clip.revision)
    encoder = StoreTextEncoder.load(source, clip.prompts, device=device)
    return lambda names: F.normalize(torch.from_numpy(encoder.encode(list(names))), dim=-1)


def check_name_encoder(inference: OpenDetInferenceConfig) -> None:
    """Find a sentence encoder named by `inference` without loading it, raising the error `load_name_encoder` would
    raise (naming the config key and the folder or cache looked in): called before training, so a missing encoder
    fails the run at its start rather than after the last step. The store's CLIP needs no such check: it is the
    model extract-features ran with, recorded in the manifest."""
    if inference.name_encoder == "sentence_transformer":
        find_sentence_encoder(inference.name_encoder_dir)


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
