"""The CLIP text tower on a prompt ensemble (every name in every template), computing only the tokens that matter.

A name's prompt-ensemble embedding needs one text-tower forward per template (80 for ImageNet's ensemble). Done
naively — one 77-token context per prompt — most of the work is padding and repetition. open_clip's CLIP text
tower is causal (position i attends to positions <= i) and reads its output at the end-of-text token, so two
shortcuts give the same numbers (up to float rounding):

1. Tokens after the end-of-text token cannot change it: a batch of prompts is cut to its longest prompt.
2. Every prompt of a template shares the tokens before the name ("<start> a bad photo of a"): their hidden states
   are the same for every name, so they are computed once per template (`TemplatePrefix`), and the name's tokens
   attend to them. A prompt then costs its name and the template's tail ("red car" "." "<end>"), not 77 tokens.

They apply to `open_clip.CLIP` models with a causal mask, argmax pooling and open_clip's own blocks
(`supports_shortcuts`); a tokenizer that does not split a prompt at the name, or any other text tower, goes through
the same cut-to-length path or `encode_text` itself. `PromptEncoder` checks the shortcut against `encode_text` on its
first call and falls back, with a warning, if the two disagree (an open_clip release that changed its blocks).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch

from vlm.progress import Progress

LOG = logging.getLogger(__name__)
# Relative difference between the shortcut and encode_text above which the shortcut is switched off (float32
# rounding differs by ~1e-6; a wrong computation by far more).
SELF_CHECK_TOLERANCE = 1e-3


def supports_shortcuts(model) -> bool:
    """Whether `model` is an open_clip CLIP whose text tower is causal, pooled at its end-of-text token and built
    of open_clip's own residual attention blocks (batch first), which is what both shortcuts rely on."""
    import open_clip
    from open_clip.transformer import ResidualAttentionBlock

    if not isinstance(model, open_clip.CLIP) or getattr(model, "attn_mask", None) is None:
        return False
    if getattr(model, "text_pool_type", None) != "argmax" or not getattr(model.transformer, "batch_first", False):
        return False
    return all(isinstance(block, ResidualAttentionBlock) and not hasattr(block, "ln_1_kv")
               and block.attn.batch_first and block.attn._qkv_same_embed_dim and block.attn.bias_k is None
               for block in model.transformer.resblocks)


def _project(model, pooled: torch.Tensor) -> torch.Tensor:
    projection = model.text_projection
    if projection is None:
        return pooled
    return projection(pooled) if isinstance(projection, torch.nn.Linear) else pooled @ projection


def encode_cut_to_length(model, tokens: torch.Tensor) -> torch.Tensor:
    """encode_text of (B, L) tokens cut to the batch's longest prompt (shortcut 1) → (B, D), not normalised."""
    length = int(tokens.argmax(dim=-1).max()) + 1  # the end-of-text token has the largest id (argmax pooling)
    tokens = tokens[:, :length]
    cast = model.transformer.get_cast_dtype()
    x = model.token_embedding(tokens).to(cast) + model.positional_embedding[:length].to(cast)
    x = model.transformer(x, attn_mask=model.attn_mask[:length, :length])
    x = model.ln_final(x)
    return _project(model, x[torch.arange(len(tokens), device=x.device), tokens.argmax(dim=-1)])


@dataclass(frozen=True)
class TemplatePrefixes:
    """The tokens of each template before its name, and each block's attention keys and values at those positions
    (what the names' tokens attend to), for all templates at once (padded to the longest prefix)."""

    tokens: tuple[tuple[int, ...], ...]  # per template: start-of-text and the words before the name
    lengths: torch.Tensor  # (T,) int64
    keys: tuple[torch.Tensor, ...]  # per block: (T, heads, P, head width)
    values: tuple[torch.Tensor, ...]  # per block: (T, heads, P, head width)


def _heads(attention: torch.nn.MultiheadAttention, x: torch.Tensor, part: int) -> torch.Tensor:
    """Part `part` (0 queries, 1 keys, 2 values) of nn.MultiheadAttention's input projection of x (B, L, width),
    split into heads: (B, heads, L, head width)."""
    width = attention.embed_dim
    weight = attention.in_proj_weight[part * width:(part + 1) * width]
    bias = None if attention.in_proj_bias is None else attention.in_proj_bias[part * width:(part + 1) * width]
    projected = torch.nn.functional.linear(x, weight, bias)
    return projected.unflatten(-1, (attention.num_heads, width // attention.num_heads)).transpose(1, 2)


def template_prefixes(model, tokens: Sequence[tuple[int, ...]], device) -> TemplatePrefixes:
    """Run every template's prefix through the text tower in one batch (causal: padding after a prefix changes
    nothing before it), keeping each block's keys and values at the prefix positions."""
    longest = max(len(ids) for ids in tokens)
    ids = torch.zeros(len(tokens), longest, dtype=torch.long)
    for row, prefix in enumerate(tokens):
        ids[row, :len(prefix)] = torch.tensor(prefix)
    cast = model.transformer.get_cast_dtype()
    x = model.token_embedding(ids.to(device)).to(cast) + model.positional_embedding[:longest].to(cast)
    keys, values = [], []
    for block in model.transformer.resblocks:
        normalised = block.ln_1(x)
        keys.append(_heads(block.attn, normalised, 1))
        values.append(_heads(block.attn, normalised, 2))
        x = block(x, attn_mask=model.attn_mask[:longest, :longest])
    return TemplatePrefixes(tuple(tuple(t) for t in tokens), torch.tensor([len(t) for t in tokens]), tuple(keys),
                            tuple(values))


def encode_after_prefixes(model, prefixes: TemplatePrefixes, template: torch.Tensor, tails: torch.Tensor
                          ) -> torch.Tensor:
    """Prompts made of template `template[b]`'s prefix and the tokens `tails[b]` (the name, the template's tail,
    end-of-text, then zeros) → (B, D), not normalised, as encode_text gives them (shortcut 2).

    Each block is open_clip's ResidualAttentionBlock written out (ln_1, attention, ls_1, ln_2, mlp, ls_2), with the
    prefix's keys and values taken from `prefixes` instead of being computed again for every prompt."""
    batch, width = tails.shape
    device = tails.device
    starts = prefixes.lengths.to(device)[template]  # (B,) where each tail begins
    longest = prefixes.keys[0].shape[2]
    cast = model.transformer.get_cast_dtype()
    last = model.positional_embedding.shape[0] - 1
    positions = (starts[:, None] + torch.arange(width, device=device)).clamp(max=last)
    x = model.token_embedding(tails).to(cast) + model.positional_embedding.to(cast)[positions]
    # Tail position j sees its own template's prefix (not the padding after it) and tail positions <= j.
    allowed = torch.ones(batch, 1, width, longest + width, dtype=torch.bool, device=device)
    allowed[:, :, :, :longest] = (torch.arange(longest, device=device) < starts[:, None])[:, None, None, :]
    allowed[:, :, :, longest:] = torch.ones(width, width, dtype=torch.bool, device=device).tril()
    for block, prefix_keys, prefix_values in zip(model.transformer.resblocks, prefixes.keys, prefixes.values):
        attention = block.attn
        normalised = block.ln_1(x)
        queries = _heads(attention, normalised, 0)
        keys = torch.cat([prefix_keys[template], _heads(attention, normalised, 1)], dim=2)
        values = torch.cat([prefix_values[template], _heads(attention, normalised, 2)], dim=2)
        attended = torch.nn.functional.scaled_dot_product_attention(queries, keys, values, attn_mask=allowed)
        x = x + block.ls_1(attention.out_proj(attended.transpose(1, 2).flatten(2)))
        x = x + block.ls_2(block.mlp(block.ln_2(x)))
    x = model.ln_final(x)
    return _project(model, x[torch.arange(batch, device=device), tails.argmax(dim=-1)])


def _same_length_batches(rows: list[int], lengths: torch.Tensor, batch_size: int) -> list[list[int]]:
    """`rows` grouped by length (no padding at all), each group cut into batches of at most `batch_size`."""
    batches: list[list[int]] = []
    for row in sorted(rows, key=lambda r: int(lengths[r])):
        if not batches or len(batches[-1]) == batch_size or int(lengths[batches[-1][0]]) != int(lengths[row]):
            batches.append([])
        batches[-1].append(row)
    return batches


class PromptEncoder:
    """names x templates → (N, T, D) float32 text-tower outputs (not normalised), every prompt of the call in
    batches of `batch_size` prompts, the shortcuts applied where they hold. The templates' prefixes are kept
    for the encoder's life, so later calls pay for the names' tokens only."""

    def __init__(self, model, tokenizer, device, batch_size: int = 1024):
        self.model = model
        self.tokenizer = tokenizer
        self.device = device
        self.batch_size = batch_size
        self.shortcuts = supports_shortcuts(model)
        self._prefixes: dict[tuple[str, ...], TemplatePrefixes] = {}
        self._checked = False

    def encode(self, names: Sequence[str], templates: Sequence[str]) -> torch.Tensor:
        """(N, T, D) float32: every prompt's output."""
        out = None
        for rows, values in self._run(list(names), list(templates)):
            if out is None:
                out = torch.empty(len(names) * len(templates), values.shape[-1])
            out[rows] = values
        return (out if out is not None else torch.zeros(0, 0)).reshape(len(names), len(templates), -1)

    def ensemble(self, names: Sequence[str], templates: Sequence[str]) -> np.ndarray:
        """(N, D) float32 unit rows: each name's prompt outputs made unit length, averaged over the templates and
        made unit length again (CLIP's prompt ensembling), without keeping every prompt's output."""
        sums = None
        count = len(templates)
        for rows, values in self._run(list(names), list(templates)):
            if sums is None:
                sums = torch.zeros(len(names), values.shape[-1])
            sums.index_add_(0, torch.tensor(rows) // count, torch.nn.functional.normalize(values, dim=-1))
        if sums is None:
            return np.zeros((0, 0), dtype=np.float32)
        return torch.nn.functional.normalize(sums / count, dim=-1).numpy().astype(np.float32)

    @torch.inference_mode()
    def _run(self, names: list[str], templates: list[str]):
        """(rows, (len(rows), D) float32 on the CPU) over every prompt, row = name index * T + template index,
        with progress lines for long calls."""
        if not names:
            return
        if self.shortcuts and not self._checked:
            self._self_check(names[0], templates)
        tokens = self.tokenizer([template.format(name) for name in names for template in templates])
        total = len(tokens)
        if total >= self.batch_size:
            LOG.info("encoding %d names x %d prompt templates = %d prompts", len(names), len(templates), total)
        progress = Progress(f"text prompts ({len(names)} names x {len(templates)} templates)", total, LOG)
        done = 0
        for rows, values in self._batches(tokens, templates):
            yield rows, values.float().cpu()
            done += len(rows)
            progress.update(done)
        progress.finish()

    def _batches(self, tokens: torch.Tensor, templates: list[str]):
        """(rows, (len(rows), D) outputs) over all prompts; row = name index * T + template index."""
        if not self.shortcuts:
            for start in range(0, len(tokens), self.batch_size):
                rows = list(range(start, min(start + self.batch_size, len(tokens))))
                yield rows, self.model.encode_text(tokens[rows].to(self.device))
            return
        prefixes = self._template_prefixes(templates)
        template_of = torch.arange(len(tokens)) % len(templates)
        shared, others = [], []
        for row in range(len(tokens)):
            prefix = prefixes.tokens[int(template_of[row])]
            fits = len(prefix) > 1 and tuple(tokens[row, :len(prefix)].tolist()) == prefix
            (shared if fits else others).append(row)
        tail_ends = tokens.argmax(dim=-1) + 1 - prefixes.lengths[template_of]  # tail length of a shared prompt
        for rows in _same_length_batches(shared, tail_ends, self.batch_size):
            width = int(tail_ends[rows[0]])
            index = prefixes.lengths[template_of[rows]][:, None] + torch.arange(width)
            tails = torch.gather(tokens[rows], 1, index)
            yield rows, encode_after_prefixes(self.model, prefixes, template_of[rows].to(self.device),
                                              tails.to(self.device))
        for rows in _same_length_batches(others, tokens.argmax(dim=-1) + 1, self.batch_size):
            yield rows, encode_cut_to_length(self.model, tokens[rows].to(self.device))

    def _template_prefixes(self, templates: list[str]) -> TemplatePrefixes:
        key = tuple(templates)
        if key not in self._prefixes:
            ids = self.tokenizer([template.split("{}", 1)[0] for template in templates])
            # Start-of-text and the words, without the end-of-text token the tokenizer appends.
            tokens = [tuple(row[:int(row.argmax())].tolist()) for row in ids]
            self._prefixes[key] = template_prefixes(self.model, tokens, self.device)
        return self._prefixes[key]

    def _self_check(self, name: str, templates: list[str]) -> None:
        """Compare the shortcut with encode_text on `name` in two templates (a full-length forward of two prompts);
        switch it off when they differ."""
        self._checked = True
        templates = templates[:2]
        tokens = self.tokenizer([template.format(name) for template in templates])
        expected = self.model.encode_text(tokens.to(self.device)).float().cpu()
        got = torch.empty_like(expected)
        for rows, values in self._batches(tokens, templates):
            got[rows] = values.float().cpu()
        error = float((got - expected).norm() / expected.norm().clamp_min(1e-12))
        if error > SELF_CHECK_TOLERANCE:
            LOG.warning("the text tower's shortcuts differ from encode_text by %.2g (relative) on this model; "
                        "encoding every prompt in full instead", error)
            self.shortcuts = False
