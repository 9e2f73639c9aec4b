"""The `vocab` rows of extract-features: every base and novel class name with its prompt-ensemble embedding.

Novel names are fine here: they are names, not boxes (zero-shot classifiers need them); `split` marks them.
"""
from __future__ import annotations

import hashlib

import numpy as np

from pipelines.coco import CocoDataset
from pipelines.models.clip import LoadedClip
from pipelines.ov_split import OvSplit
from pipelines.prompts import text_embeddings


def class_vocab(dataset: CocoDataset, split: OvSplit, clip: LoadedClip, prompts: str) -> dict:
    """Columns of `vocab`: base classes then novel classes, each by category id; embedding (C, D) float32."""
    names = dataset.category_names()
    ordered = [(cid, "base") for cid in sorted(split.base_ids)] + [(cid, "novel") for cid in sorted(split.novel_ids)]
    embeddings = text_embeddings(clip.model, clip.tokenizer, [names[cid] for cid, _ in ordered], prompts,
                                 clip.device)
    return {"name": [names[cid] for cid, _ in ordered], "kind": ["class"] * len(ordered),
            "category_id": [cid for cid, _ in ordered], "split": [side for _, side in ordered],
            "prompts": [prompts] * len(ordered), "embedding": embeddings.reshape(len(ordered), clip.embed_dim)}


def vocab_fingerprint(columns: dict, model_sha256: str) -> str:
    digest = hashlib.sha256(model_sha256.encode())
    for name, split, prompts in zip(columns["name"], columns["split"], columns["prompts"]):
        digest.update(f"{name}\0{split}\0{prompts}\n".encode())
    digest.update(np.ascontiguousarray(columns["embedding"], dtype=np.float16).tobytes())
    return digest.hexdigest()
