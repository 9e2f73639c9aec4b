"""The `vocab` rows of extract-features: every base and novel class name with its prompt-ensemble embedding, and
(object-name mode, config keys dataset.names / dataset.object_names) every distinct object name of the GT boxes.

Novel names are fine here: they are names, not boxes (zero-shot classifiers need them); `split` marks them.
"""
from __future__ import annotations

import hashlib

import numpy as np

from pipelines.coco import CocoDataset
from pipelines.ov_split import OvSplit
from vlm.text_encoder import StoreTextEncoder


def _vocab_columns(names: list[str], kind: str, category_ids: list, splits: list, encoder: StoreTextEncoder
                   ) -> dict:
    embeddings = encoder.encode(names)
    return {"name": list(names), "kind": [kind] * len(names), "category_id": category_ids, "split": splits,
            "prompts": [encoder.prompts] * len(names), "embedding": embeddings.reshape(len(names), encoder.embed_dim)}


def class_vocab(dataset: CocoDataset, split: OvSplit, encoder: StoreTextEncoder) -> dict:
    """Columns of `vocab`: base classes then novel classes, each by category id; embedding (C, D) float32."""
    names = dataset.category_names()
    ordered = [(cid, "base") for cid in sorted(split.base_ids)] + [(cid, "novel") for cid in sorted(split.novel_ids)]
    return _vocab_columns([names[cid] for cid, _ in ordered], "class", [cid for cid, _ in ordered],
                          [side for _, side in ordered], encoder)


def name_vocab(names: list[str], encoder: StoreTextEncoder) -> dict:
    """Columns of `vocab` rows of kind "name", one per object name (no category id, no split), embedded with the
    same model and prompt ensemble as the classes; embedding (N, D) float32."""
    return _vocab_columns(list(names), "name", [None] * len(names), [None] * len(names), encoder)


def stack_vocab(*parts: dict) -> dict:
    """The rows of several vocab column sets, one after the other."""
    stacked = {key: [value for part in parts for value in part[key]] for key in parts[0] if key != "embedding"}
    stacked["embedding"] = np.concatenate([part["embedding"] for part in parts])
    return stacked


def vocab_fingerprint(columns: dict, model_sha256: str) -> str:
    digest = hashlib.sha256(model_sha256.encode())
    for name, kind, split, prompts in zip(columns["name"], columns["kind"], columns["split"], columns["prompts"]):
        digest.update(f"{name}\0{kind}\0{split}\0{prompts}\n".encode())
    digest.update(np.ascontiguousarray(columns["embedding"], dtype=np.float16).tobytes())
    return digest.hexdigest()
