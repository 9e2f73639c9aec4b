"""Training of the tiny ClipCap: an MLP mapper and a small GPT-2 learn to caption frozen CLIP crop embeddings.

Saved exactly like a released ClipCap: one state dict in the official layout (`clip_project.*`, `gpt.*`) as a `.pt`
file, plus a local GPT-2 directory (config, weights and our tokenizer) that `load_clipcap` and
`AutoTokenizer.from_pretrained` read.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable

import torch
from transformers import GPT2Config, GPT2LMHeadModel

from vlm.clipcap import ClipCapConfig, ClipCapModel, caption_loss
from shapesov.teachers.captions import clipcap_caption_ids, clipcap_captions, tokenizer_corpus
from shapesov.teachers.config import ClipCapTrainConfig
from shapesov.teachers.tokenizer import train_caption_tokenizer
from shapesov.teachers.training_steps import StepPlan, run_training_steps

CHECKPOINT_FILE = "clipcap_mlp.pt"
GPT_DIR = "gpt2"


def build_clipcap(cfg: ClipCapTrainConfig, prefix_size: int, tokenizer) -> ClipCapModel:
    """A randomly initialised ClipCap whose GPT-2 vocabulary is `tokenizer`'s."""
    eos = tokenizer.eos_token_id
    gpt_config = GPT2Config(vocab_size=len(tokenizer), n_embd=cfg.n_embd, n_layer=cfg.n_layer, n_head=cfg.n_head,
                            n_positions=cfg.n_positions, bos_token_id=eos, eos_token_id=eos)
    config = ClipCapConfig("mlp", prefix_size=prefix_size, prefix_length=cfg.prefix_length,
                           normalize_prefix=cfg.normalize_prefix)
    return ClipCapModel(config, GPT2LMHeadModel(gpt_config))


def _caption_token_table(tokenizer) -> tuple[torch.Tensor, torch.Tensor]:
    """Every caption of `clipcap_captions()` tokenised once, indexed by caption id.

    Returns tokens (C, L) long (0-padded) and mask (C, L) bool.
    """
    encoded = [tokenizer.encode(text, add_special_tokens=False) for text in clipcap_captions()]
    length = max(len(e) for e in encoded)
    tokens = torch.zeros(len(encoded), length, dtype=torch.long)
    mask = torch.zeros(len(encoded), length, dtype=torch.bool)
    for row, ids in enumerate(encoded):
        tokens[row, :len(ids)] = torch.tensor(ids)
        mask[row, :len(ids)] = True
    return tokens, mask


def train_clipcap(cfg: ClipCapTrainConfig, clip_embeddings: torch.Tensor, shape_ids: torch.Tensor,
                  colour_ids: torch.Tensor, background_ids: torch.Tensor, seed: int,
                  log: Callable[[str], None] = print) -> tuple[ClipCapModel, object, list[float]]:
    """Train on (embedding, caption) pairs. clip_embeddings: (N, D) float; shape_ids, colour_ids, background_ids:
    (N,) long, as in a CropBank (crops of nothing are captioned by their background).

    Returns (model in eval mode, tokenizer, loss per step).
    """
    torch.manual_seed(seed)
    tokenizer = train_caption_tokenizer(tokenizer_corpus(), cfg.vocab_size)
    model = build_clipcap(cfg, clip_embeddings.shape[1], tokenizer).train()
    token_table, mask_table = _caption_token_table(tokenizer)
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    generator = torch.Generator().manual_seed(seed)
    def step_loss(step: int) -> torch.Tensor:
        index = torch.randint(clip_embeddings.shape[0], (cfg.batch_size,), generator=generator)
        caption_ids = clipcap_caption_ids(shape_ids[index], colour_ids[index], background_ids[index], generator)
        tokens, mask = token_table[caption_ids], mask_table[caption_ids]
        used = int(mask.sum(dim=1).max())  # trim the padding every caption of this batch leaves unused
        return caption_loss(model, tokens[:, :used], mask[:, :used], clip_embeddings[index])

    plan = StepPlan("clipcap", cfg.steps, cfg.warmup_steps, cfg.batch_size, unit="captions", lr_flag="clipcap.lr")
    losses = run_training_steps(plan, optimizer, step_loss, log)
    return model.eval(), tokenizer, losses


def save_clipcap(model: ClipCapModel, tokenizer, out_dir: Path) -> list[Path]:
    """Write `clipcap_mlp.pt` (official state-dict layout) and `gpt2/` (GPT-2 config, weights, tokenizer)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    checkpoint = out_dir / CHECKPOINT_FILE
    torch.save({k: v.detach().clone() for k, v in model.state_dict().items()}, checkpoint)
    gpt_dir = out_dir / GPT_DIR
    model.gpt.save_pretrained(gpt_dir)
    tokenizer.save_pretrained(gpt_dir)
    return [checkpoint] + sorted(p for p in gpt_dir.rglob("*") if p.is_file())
