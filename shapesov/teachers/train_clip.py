"""Contrastive training of the tiny CLIP on rendered ShapesOV crops with multi-positive caption targets."""
from __future__ import annotations

import math
import time
from typing import Callable

import open_clip
import torch
import torch.nn.functional as F

from shapesov.teachers.captions import clip_caption_table, sample_caption_ids, true_caption_mask
from shapesov.teachers.clip_model import create_clip, register_model_configs
from shapesov.teachers.config import BackgroundCropConfig, ClipTrainConfig
from shapesov.teachers.crops import CropBank, render_crop_bank, to_model_input
from shapesov.teachers.training_steps import StepPlan, run_training_steps

# open_clip's training clamps the learned temperature at 100 (logit scale ln 100) to keep the softmax stable.
MAX_LOGIT_SCALE = math.log(100.0)


def multi_positive_contrastive_loss(image_features: torch.Tensor, text_features: torch.Tensor,
                                    logit_scale: torch.Tensor, positives: torch.Tensor) -> torch.Tensor:
    """Symmetric InfoNCE whose target spreads evenly over every true caption (resp. image), not just the diagonal.

    image_features: (B, D), text_features: (C, D), both L2-normalised; logit_scale: () log of the temperature
    multiplier; positives: (B, C) bool with at least one True per row and per column.
    """
    logits = logit_scale.exp() * image_features @ text_features.T
    image_targets = positives.float() / positives.sum(dim=1, keepdim=True)
    text_targets = positives.T.float() / positives.T.sum(dim=1, keepdim=True)
    image_loss = -(image_targets * logits.log_softmax(dim=1)).sum(dim=1).mean()
    text_loss = -(text_targets * logits.T.log_softmax(dim=1)).sum(dim=1).mean()
    return (image_loss + text_loss) / 2


def _optimizer(model: open_clip.CLIP, cfg: ClipTrainConfig) -> torch.optim.Optimizer:
    visual, text, no_decay = [], [], []
    for name, param in model.named_parameters():
        if name == "logit_scale" or param.ndim < 2:
            no_decay.append(param)  # norms, biases and the temperature are not shrunk towards zero
        elif name.startswith("visual."):
            visual.append(param)
        else:
            text.append(param)
    groups = [{"params": visual, "lr": cfg.lr_visual, "weight_decay": cfg.weight_decay},
              {"params": text, "lr": cfg.lr_text, "weight_decay": cfg.weight_decay},
              {"params": no_decay, "lr": cfg.lr_text, "weight_decay": 0.0}]
    for group in groups:
        group["base_lr"] = group["lr"]
    return torch.optim.AdamW(groups)


def train_clip_on_bank(cfg: ClipTrainConfig, bank: CropBank, seed: int,
                       log: Callable[[str], None] = print) -> tuple[open_clip.CLIP, list[float]]:
    """Train a fresh CLIP on `bank` (its object crops only unless cfg.learn_background); returns the model (eval
    mode) and the loss of every step."""
    if not cfg.learn_background:
        bank = bank.subset(bank.frames_object)
    torch.manual_seed(seed)
    model = create_clip(cfg.model_name, cfg.init_logit_scale).train()
    register_model_configs()
    tokenizer = open_clip.get_tokenizer(cfg.model_name)
    table = clip_caption_table()
    caption_tokens = tokenizer(list(table.texts))  # (C, context_length) long, tokenised once
    optimizer = _optimizer(model, cfg)
    generator = torch.Generator().manual_seed(seed)
    mean, std = open_clip.OPENAI_DATASET_MEAN, open_clip.OPENAI_DATASET_STD

    def step_loss(step: int) -> torch.Tensor:
        index = torch.randint(len(bank), (cfg.batch_size,), generator=generator)
        shapes, colours = bank.shape_ids[index], bank.colour_ids[index]
        caption_ids = sample_caption_ids(table, shapes, colours, generator)
        # Encode each distinct caption once; duplicates in the batch share its features.
        unique_ids, inverse = caption_ids.unique(return_inverse=True)
        image_features = F.normalize(model.encode_image(to_model_input(bank.pixels[index], mean, std)), dim=-1)
        text_features = F.normalize(model.encode_text(caption_tokens[unique_ids]), dim=-1)[inverse]
        return multi_positive_contrastive_loss(image_features, text_features, model.logit_scale,
                                               true_caption_mask(table, caption_ids, shapes, colours))

    def clamp_scale() -> None:
        with torch.no_grad():
            model.logit_scale.clamp_(0, MAX_LOGIT_SCALE)

    plan = StepPlan("clip", cfg.steps, cfg.warmup_steps, cfg.batch_size, unit="img", lr_flag="clip.lr_visual",
                    log_every=50)
    losses = run_training_steps(plan, optimizer, step_loss, log, after_step=clamp_scale,
                                log_detail=lambda: f"scale {model.logit_scale.exp().item():.1f}")
    return model.eval(), losses


def train_clip(cfg: ClipTrainConfig, background: BackgroundCropConfig, seed: int,
               log: Callable[[str], None] = print) -> tuple[open_clip.CLIP, CropBank, list[float]]:
    """Render the crop bank (object crops and crops of boxes on nothing), then train. Returns (model, bank,
    losses); the bank is reused for ClipCap."""
    start = time.perf_counter()
    bank = render_crop_bank(seed, "teacher_clip", cfg.train_scenes, cfg.crops_per_object, cfg.image_size,
                            cfg.box_jitter, cfg.crop_mode_weights, background=background)
    log(f"clip: {len(bank)} training crops rendered in {time.perf_counter() - start:.1f}s, "
        f"{int((~bank.frames_object).sum())} of them framing no object"
        + ("" if cfg.learn_background else " (for ClipCap only: clip.learn_background is false)"))
    model, losses = train_clip_on_bank(cfg, bank, seed, log)
    return model, bank, losses
