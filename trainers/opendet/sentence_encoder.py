"""A sentence-transformers encoder (all-MiniLM-L6-v2 and its kind) read offline with transformers alone.

sentence-transformers embeds a sentence with three modules, listed in the directory's `modules.json`: the
transformer, Pooling (mean of the token states over the attention mask, `1_Pooling/config.json`) and Normalize (L2).
This module does the same three steps, so the embeddings match `SentenceTransformer(directory).encode(names)`.
"""
from __future__ import annotations

import json
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor
from transformers import AutoModel, AutoTokenizer

from trainers.opendet.inference import NameEncoder
from vlm.hub import resolve_pretrained_dir

CONFIG_KEY = "opendet.inference.name_encoder_dir"


def mean_pool(hidden: Tensor, attention_mask: Tensor) -> Tensor:
    """hidden: (N, T, D) float, attention_mask: (N, T) 0/1 → (N, D): the mean over each sentence's real tokens, so
    padding added to batch a short name with a long one changes nothing."""
    mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
    # sentence-transformers Pooling clamps the token count at 1e-9 (an all-padding row stays finite)
    return (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)


def read_max_length(directory: Path) -> int | None:
    """`max_seq_length` of sentence_bert_config.json (256 for all-MiniLM-L6-v2), None without that file."""
    path = directory / "sentence_bert_config.json"
    return json.loads(path.read_text()).get("max_seq_length") if path.is_file() else None


def check_mean_pooling(directory: Path) -> None:
    """A directory whose Pooling module is not mean pooling (CLS, max) would be embedded wrongly: refuse it."""
    path = directory / "1_Pooling" / "config.json"
    if path.is_file() and not json.loads(path.read_text()).get("pooling_mode_mean_tokens", False):
        raise ValueError(f"{path}: this sentence encoder does not pool by the mean of its tokens; "
                         f"{CONFIG_KEY} must name a mean-pooling model such as all-MiniLM-L6-v2")


def find_sentence_encoder(directory: str) -> Path:
    """The local folder of the sentence encoder named by `directory` (a folder or a Hub repo id, vlm.hub), checked to
    pool by the mean; the errors name the config key."""
    path = Path(resolve_pretrained_dir(directory, CONFIG_KEY).path)
    check_mean_pooling(path)
    return path


def load_sentence_encoder(directory: str, device: str = "cpu", batch_size: int = 256) -> NameEncoder:
    """names → (N, D) float32 on the CPU, L2-normalised (D = 384 for all-MiniLM-L6-v2), from a folder written by
    `save_pretrained` / sentence-transformers, or a Hub repo id (`sentence-transformers/all-MiniLM-L6-v2`) read
    through the Hugging Face cache (vlm.hub)."""
    path = find_sentence_encoder(directory)
    tokenizer = AutoTokenizer.from_pretrained(str(path), local_files_only=True)
    model = AutoModel.from_pretrained(str(path), local_files_only=True).to(device).eval()
    max_length = read_max_length(path)

    @torch.inference_mode()
    def encode(names: list[str]) -> Tensor:
        rows = []
        for start in range(0, len(names), batch_size):
            batch = tokenizer(names[start:start + batch_size], padding=True, truncation=True, max_length=max_length,
                              return_tensors="pt").to(device)
            hidden = model(**batch).last_hidden_state
            rows.append(F.normalize(mean_pool(hidden, batch["attention_mask"]), dim=-1).float().cpu())
        return torch.cat(rows) if rows else torch.zeros(0, model.config.hidden_size)

    return encode
