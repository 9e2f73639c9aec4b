"""ClipCap: a mapper from a CLIP image embedding to a GPT-2 prefix, and batched caption generation.

The module and parameter names reproduce the official ClipCap state-dict layout exactly, so its released checkpoints
(and ours) load strictly:
    MLP mapper          clip_project.model.{0,2}.{weight,bias}
    transformer mapper  clip_project.{linear.*, prefix_const, transformer.layers.<i>.{norm1, attn.{to_queries,
                        to_keys_values, project}, norm2, mlp.{fc1, fc2}}.*}
    language model      gpt.*  (transformers GPT2LMHeadModel)
Checkpoints saved with older transformers carry the causal-mask buffers `gpt.transformer.h.<i>.attn.bias` and
`...attn.masked_bias`; they hold no learned values and are dropped before the strict load.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn
from transformers import AutoTokenizer, GPT2Config, GPT2LMHeadModel

from vlm.clip import DTYPES, device_dtype, resolve_device
from vlm.file_hash import sha256_file
from vlm.oom_backoff import BatchBackoff
from vlm.tensor_files import load_tensor_file

MappingType = Literal["mlp", "transformer"]
CHECKPOINT_KEY = "captioner.clipcap.checkpoint"  # the config key that names a ClipCap checkpoint
_LEGACY_BUFFER_KEY = re.compile(r"^gpt\.transformer\.h\.\d+\.attn\.(bias|masked_bias)$")
# A training record beside a checkpoint: the teachers manifest that shapesov.teachers writes (its MANIFEST_FILE), in
# the checkpoint's folder or the one above, whose teacher entry names the checkpoint, its sha256 and how it fed the
# CLIP embeddings (`normalize_prefix`).
TRAINING_RECORD_FILE = "MANIFEST.json"
# Official ClipCap TransformerMapper: 8 attention heads, MLP ratio 2, no bias on queries / keys-values.
TRANSFORMER_MAPPER_HEADS = 8
TRANSFORMER_MAPPER_MLP_RATIO = 2.0


class MlpMapper(nn.Module):
    """Official ClipCap MLP: prefix_size -> (E * prefix_length) / 2 -> E * prefix_length, tanh in between."""

    def __init__(self, prefix_size: int, embed_dim: int, prefix_length: int):
        super().__init__()
        hidden = embed_dim * prefix_length // 2
        self.model = nn.Sequential(nn.Linear(prefix_size, hidden), nn.Tanh(), nn.Linear(hidden, embed_dim * prefix_length))

    def forward(self, prefix: torch.Tensor) -> torch.Tensor:
        """prefix: (B, prefix_size) float -> (B, prefix_length * E) float."""
        return self.model(prefix)


class _MapperMlp(nn.Module):
    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.relu(self.fc1(x)))


class _MapperAttention(nn.Module):
    def __init__(self, dim: int, num_heads: int):
        super().__init__()
        self.num_heads = num_heads
        self.to_queries = nn.Linear(dim, dim, bias=False)
        self.to_keys_values = nn.Linear(dim, dim * 2, bias=False)
        self.project = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (B, N, D) -> (B, N, D); plain self-attention over the prefix tokens."""
        b, n, d = x.shape
        heads = self.num_heads
        queries = self.to_queries(x).reshape(b, n, heads, d // heads).transpose(1, 2)
        keys_values = self.to_keys_values(x).reshape(b, n, 2, heads, d // heads)
        keys, values = keys_values[:, :, 0].transpose(1, 2), keys_values[:, :, 1].transpose(1, 2)
        out = F.scaled_dot_product_attention(queries, keys, values)
        return self.project(out.transpose(1, 2).reshape(b, n, d))


class _MapperLayer(nn.Module):
    def __init__(self, dim: int, num_heads: int, mlp_ratio: float):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = _MapperAttention(dim, num_heads)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = _MapperMlp(dim, int(dim * mlp_ratio))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class _MapperTransformer(nn.Module):
    def __init__(self, dim: int, num_heads: int, num_layers: int, mlp_ratio: float):
        super().__init__()
        self.layers = nn.ModuleList(_MapperLayer(dim, num_heads, mlp_ratio) for _ in range(num_layers))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.layers:
            x = layer(x)
        return x


class TransformerMapper(nn.Module):
    """Official ClipCap transformer mapper: `clip_length` tokens from the embedding attend together with
    `prefix_length` learned constants; the outputs at the constants' positions are the prefix."""

    def __init__(self, prefix_size: int, embed_dim: int, prefix_length: int, clip_length: int, num_layers: int):
        super().__init__()
        self.clip_length = clip_length
        self.linear = nn.Linear(prefix_size, clip_length * embed_dim)
        self.prefix_const = nn.Parameter(torch.randn(prefix_length, embed_dim))
        self.transformer = _MapperTransformer(embed_dim, TRANSFORMER_MAPPER_HEADS, num_layers,
                                              TRANSFORMER_MAPPER_MLP_RATIO)

    def forward(self, prefix: torch.Tensor) -> torch.Tensor:
        """prefix: (B, prefix_size) float -> (B, prefix_length * E) float."""
        clip_tokens = self.linear(prefix).view(prefix.shape[0], self.clip_length, -1)
        constants = self.prefix_const.unsqueeze(0).expand(prefix.shape[0], -1, -1)
        out = self.transformer(torch.cat([clip_tokens, constants], dim=1))[:, self.clip_length:]
        return out.reshape(prefix.shape[0], -1)


@dataclass(frozen=True)
class ClipCapConfig:
    """Architecture of the mapper; read back from a checkpoint's tensor shapes by `infer_clipcap_config`."""

    mapping_type: MappingType = "mlp"
    prefix_size: int = 512  # CLIP embedding width (ViT-B/32: 512)
    prefix_length: int = 10  # official defaults: 10 (MLP), 40 (transformer)
    clip_length: int = 10  # transformer mapper only
    num_layers: int = 8  # transformer mapper only
    normalize_prefix: bool = False  # L2-normalise the embedding first (official `--normalize_prefix`)


class ClipCapModel(nn.Module):
    """`clip_project` (mapper) + `gpt` (GPT2LMHeadModel), named as in the official checkpoints."""

    def __init__(self, config: ClipCapConfig, gpt: GPT2LMHeadModel):
        super().__init__()
        self.config = config
        self.gpt = gpt
        embed_dim = gpt.config.n_embd
        if config.mapping_type == "mlp":
            self.clip_project = MlpMapper(config.prefix_size, embed_dim, config.prefix_length)
        elif config.mapping_type == "transformer":
            self.clip_project = TransformerMapper(config.prefix_size, embed_dim, config.prefix_length,
                                                  config.clip_length, config.num_layers)
        else:
            raise ValueError(f"unknown ClipCap mapping_type {config.mapping_type!r}: use 'mlp' or 'transformer'")

    def prefix_embeddings(self, clip_embeddings: torch.Tensor) -> torch.Tensor:
        """clip_embeddings: (B, prefix_size) float -> (B, prefix_length, E) GPT input embeddings."""
        x = clip_embeddings.to(device=self.gpt.device, dtype=self.gpt.dtype)
        if self.config.normalize_prefix:
            x = F.normalize(x, dim=-1)
        return self.clip_project(x).view(x.shape[0], self.config.prefix_length, -1)

    def forward(self, tokens: torch.Tensor, clip_embeddings: torch.Tensor,
                attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Teacher-forced logits.

        tokens: (B, T) long caption ids; clip_embeddings: (B, prefix_size); attention_mask: (B, prefix_length + T).
        Returns: (B, prefix_length + T, vocab) float logits.
        """
        text = self.gpt.transformer.wte(tokens)
        inputs = torch.cat([self.prefix_embeddings(clip_embeddings), text], dim=1)
        return self.gpt(inputs_embeds=inputs, attention_mask=attention_mask).logits


def caption_loss(model: ClipCapModel, tokens: torch.Tensor, token_mask: torch.Tensor,
                 clip_embeddings: torch.Tensor) -> torch.Tensor:
    """Next-token cross-entropy over caption tokens only (official ClipCap objective).

    tokens: (B, T) long; token_mask: (B, T) bool, True on real tokens; clip_embeddings: (B, prefix_size).
    """
    prefix_length = model.config.prefix_length
    mask = torch.cat([torch.ones(tokens.shape[0], prefix_length, dtype=torch.long), token_mask.long()], dim=1)
    logits = model(tokens, clip_embeddings, attention_mask=mask)[:, prefix_length - 1:-1]
    targets = tokens.masked_fill(~token_mask, -100)
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1), ignore_index=-100)


def read_state_dict(path: str | Path, key: str = CHECKPOINT_KEY) -> dict[str, torch.Tensor]:
    """Tensors of a checkpoint file, read as data only (safetensors, or vlm.tensor_files: a file holding code is
    refused with a message naming it and `key`)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"ClipCap checkpoint not found: {path} (config key {key})")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file
        return load_file(str(path))
    state = load_tensor_file(path, f"config key {key}")
    if not isinstance(state, dict):
        raise ValueError(f"{path} (config key {key}): expected a state dict (name -> tensor), got "
                         f"{type(state).__name__}")
    return state


def recorded_normalize_prefix(checkpoint_path: str | Path) -> tuple[bool | None, Path | None]:
    """How a checkpoint was trained to read CLIP embeddings, where a record beside its weights says so: (its
    `normalize_prefix`, the record file), or (None, None) without one (the official checkpoints). A record counts
    only for the very file it lists: a checkpoint copied over ours no longer matches its sha256."""
    checkpoint = Path(checkpoint_path).resolve()
    for folder in (checkpoint.parent, checkpoint.parent.parent):
        record = folder / TRAINING_RECORD_FILE
        if not record.is_file():
            continue
        for entry in json.loads(record.read_text()).get("teachers", {}).values():
            listed = entry.get("checkpoint")
            if (listed and "normalize_prefix" in entry and (folder / listed).resolve() == checkpoint
                    and entry.get("files", {}).get(listed) == sha256_file(checkpoint)):
                return bool(entry["normalize_prefix"]), record
    return None, None


def drop_legacy_buffers(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The state dict without the old GPT-2 causal-mask buffers (see module docstring)."""
    return {k: v for k, v in state.items() if not _LEGACY_BUFFER_KEY.match(k)}


def infer_clipcap_config(state: dict[str, torch.Tensor], embed_dim: int, normalize_prefix: bool = False) -> ClipCapConfig:
    """The mapper architecture that produced `state` (official layout), from its tensor shapes."""
    if "clip_project.model.0.weight" in state:
        return ClipCapConfig("mlp", prefix_size=state["clip_project.model.0.weight"].shape[1],
                             prefix_length=state["clip_project.model.2.weight"].shape[0] // embed_dim,
                             normalize_prefix=normalize_prefix)
    if "clip_project.prefix_const" in state:
        layer_ids = {int(k.split(".")[3]) for k in state if k.startswith("clip_project.transformer.layers.")}
        linear = state["clip_project.linear.weight"]
        return ClipCapConfig("transformer", prefix_size=linear.shape[1],
                             prefix_length=state["clip_project.prefix_const"].shape[0],
                             clip_length=linear.shape[0] // embed_dim, num_layers=len(layer_ids),
                             normalize_prefix=normalize_prefix)
    raise ValueError("not a ClipCap state dict: no clip_project.model.0.weight (MLP) or clip_project.prefix_const "
                     "(transformer) key")


def _check_expected(config: ClipCapConfig, expected: dict[str, object], path: Path) -> None:
    for name, value in expected.items():
        if value is not None and getattr(config, name) != value:
            raise ValueError(f"{path}: checkpoint has {name}={getattr(config, name)!r} but {value!r} was asked for "
                             f"(flag --clipcap-{name.replace('_', '-')})")


def load_clipcap(checkpoint_path: str | Path, gpt_dir: str | Path, mapping_type: MappingType | None = None,
                 prefix_length: int | None = None, prefix_size: int | None = None, clip_length: int | None = None,
                 num_layers: int | None = None, normalize_prefix: bool = False) -> ClipCapModel:
    """Build a ClipCap from an official-layout checkpoint and a local GPT-2 directory (config.json [+ weights]).

    The architecture is read from the checkpoint's shapes; any argument given must agree with it. Every key of
    the checkpoint (legacy mask buffers aside) must match the model and vice versa, except `gpt.lm_head.weight`,
    which GPT-2 ties to the token embedding.
    """
    checkpoint_path, gpt_dir = Path(checkpoint_path), Path(gpt_dir)
    if not (gpt_dir / "config.json").is_file():
        raise FileNotFoundError(f"GPT-2 directory {gpt_dir} has no config.json (flag --clipcap-gpt-dir)")
    gpt_config = GPT2Config.from_pretrained(gpt_dir)
    state = drop_legacy_buffers(read_state_dict(checkpoint_path))
    config = infer_clipcap_config(state, gpt_config.n_embd, normalize_prefix)
    _check_expected(config, {"mapping_type": mapping_type, "prefix_length": prefix_length, "prefix_size": prefix_size,
                             "clip_length": clip_length, "num_layers": num_layers}, checkpoint_path)
    model = ClipCapModel(config, GPT2LMHeadModel(gpt_config))
    missing, unexpected = model.load_state_dict(state, strict=False)
    missing = [k for k in missing if k != "gpt.lm_head.weight"]
    if missing or unexpected:
        raise ValueError(f"{checkpoint_path} does not fit the ClipCap layout: missing {missing[:5]}, "
                         f"unexpected {unexpected[:5]}")
    return model.eval()


@torch.inference_mode()
def greedy_generate(model: ClipCapModel, clip_embeddings: torch.Tensor, stop_token_id: int,
                    max_tokens: int = 20) -> list[list[int]]:
    """Greedy decoding of a whole batch at once, with a key/value cache.

    clip_embeddings: (B, prefix_size) float. Returns B token lists, each ending at (and including) the stop token
    or cut at `max_tokens`.
    """
    out = model.gpt(inputs_embeds=model.prefix_embeddings(clip_embeddings), use_cache=True)
    cache, logits = out.past_key_values, out.logits[:, -1]
    batch, device = clip_embeddings.shape[0], logits.device
    tokens = torch.zeros(batch, 0, dtype=torch.long, device=device)
    stopped = torch.zeros(batch, dtype=torch.bool, device=device)
    for _ in range(max_tokens):
        next_tokens = logits.argmax(dim=-1)
        tokens = torch.cat([tokens, next_tokens[:, None]], dim=1)
        stopped |= next_tokens == stop_token_id
        if bool(stopped.all()):  # one host-device sync per token: the price of stopping early
            break
        out = model.gpt(inputs_embeds=model.gpt.transformer.wte(next_tokens)[:, None], past_key_values=cache,
                        use_cache=True)
        cache, logits = out.past_key_values, out.logits[:, -1]
    return [_cut_at_stop(row, stop_token_id) for row in tokens.tolist()]


def _cut_at_stop(row: list[int], stop_token_id: int) -> list[int]:
    return row[: row.index(stop_token_id) + 1] if stop_token_id in row else row


@torch.inference_mode()
def beam_generate(model: ClipCapModel, clip_embeddings: torch.Tensor, stop_token_id: int, beam_size: int = 5,
                  max_tokens: int = 20) -> list[list[int]]:
    """Beam search with length normalisation for a whole batch at once (official ClipCap `generate_beam` scoring:
    beams are ranked by mean token log-probability; a stopped beam keeps its score and length).

    clip_embeddings: (B, prefix_size) float. Returns the best token list per embedding.
    """
    batch, k = clip_embeddings.shape[0], beam_size
    prefix = model.prefix_embeddings(clip_embeddings)
    out = model.gpt(inputs_embeds=prefix, use_cache=True)
    cache = out.past_key_values
    cache.batch_repeat_interleave(k)  # (B*K) rows: beam j of item b is row b*K + j
    log_probs = out.logits[:, -1].float().log_softmax(-1)  # (B, V)
    vocab = log_probs.shape[-1]
    scores, first = log_probs.topk(k, dim=-1)  # (B, K) summed log-probs
    device = first.device
    tokens = first.reshape(batch * k, 1)
    lengths = torch.ones(batch, k, device=device)
    stopped = (first == stop_token_id)
    offsets = (torch.arange(batch, device=device) * k)[:, None]
    for _ in range(max_tokens - 1):
        if bool(stopped.all()):
            break
        out = model.gpt(inputs_embeds=model.gpt.transformer.wte(tokens[:, -1:]), past_key_values=cache, use_cache=True)
        step = out.logits[:, -1].float().log_softmax(-1).view(batch, k, vocab)
        # A stopped beam may only "continue" with token 0 at no cost, so it competes with its final score.
        step = torch.where(stopped[..., None], torch.full_like(step, float("-inf")), step)
        step[..., 0] = torch.where(stopped, torch.zeros_like(step[..., 0]), step[..., 0])
        new_lengths = lengths + (~stopped).float()
        totals = scores[..., None] + step  # (B, K, V)
        normalised = (totals / new_lengths[..., None]).view(batch, k * vocab)
        _, flat = normalised.topk(k, dim=-1)  # (B, K)
        source, next_tokens = flat // vocab, flat % vocab
        scores = totals.view(batch, k * vocab).gather(1, flat)
        lengths = new_lengths.gather(1, source)
        was_stopped = stopped.gather(1, source)
        stopped = was_stopped | (next_tokens == stop_token_id)
        rows = (offsets + source).reshape(-1)
        cache.reorder_cache(rows)
        tokens = torch.cat([tokens[rows], next_tokens.reshape(-1, 1)], dim=1)
    best = (scores / lengths).argmax(dim=-1)  # (B,)
    rows = torch.arange(batch, device=device)
    chosen = tokens.view(batch, k, -1)[rows, best]
    chosen_lengths = lengths[rows, best].long()
    return [row[:n] for row, n in zip(chosen.tolist(), chosen_lengths.tolist())]


class ClipCapCaptioner:
    """A loaded ClipCap and its tokenizer: CLIP embeddings in, caption strings out, many embeddings per call."""

    def __init__(self, model: ClipCapModel, tokenizer, stop_token: str = "."):
        self.model = model.eval()
        self.tokenizer = tokenizer
        stop_ids = tokenizer.encode(stop_token, add_special_tokens=False)
        if len(stop_ids) != 1:
            raise ValueError(f"stop token {stop_token!r} is {len(stop_ids)} tokens for this tokenizer; need exactly 1")
        self.stop_token_id = stop_ids[0]
        self.batch_cap: int | None = None  # the batch size an out-of-memory error left, for every later call

    @classmethod
    def from_paths(cls, checkpoint_path: str | Path, gpt_dir: str | Path, stop_token: str = ".",
                   **load_kwargs) -> "ClipCapCaptioner":
        """Model from `load_clipcap`, tokenizer from the same local GPT-2 directory."""
        return cls(load_clipcap(checkpoint_path, gpt_dir, **load_kwargs), AutoTokenizer.from_pretrained(gpt_dir),
                   stop_token)

    def to(self, device: str | torch.device, dtype: str = "fp32") -> "ClipCapCaptioner":
        """Move the model to `device` ("auto": a GPU when there is one) in `dtype` (fp32, bf16, fp16; fp16 on a CPU
        runs in fp32, vlm.clip.device_dtype); returns self."""
        target = resolve_device(str(device))
        dtype = device_dtype(dtype, target, "captioner.clipcap.dtype")
        self.model = self.model.to(device=target, dtype=DTYPES[dtype])
        return self

    def caption(self, clip_embeddings: torch.Tensor, method: Literal["beam", "greedy"] = "beam", beam_size: int = 5,
                max_tokens: int = 20, batch_size: int = 256) -> list[str]:
        """clip_embeddings: (N, prefix_size) float -> N captions, decoded up to and including the stop token.

        Batches of `batch_size` on the model's device (a KV cache, every row decoded at once); an out-of-memory error
        halves the batch for this and every later call (vlm.oom_backoff)."""
        if method not in ("beam", "greedy"):
            raise ValueError(f"unknown decoding method {method!r}: use 'beam' or 'greedy'")
        backoff = BatchBackoff(min(batch_size, self.batch_cap or batch_size), "ClipCap captions per batch")

        def generate(start: int, stop: int) -> list[list[int]]:
            chunk = clip_embeddings[start:stop]
            if method == "beam":
                return beam_generate(self.model, chunk, self.stop_token_id, beam_size, max_tokens)
            return greedy_generate(self.model, chunk, self.stop_token_id, max_tokens)

        ids = [row for rows in backoff.run(clip_embeddings.shape[0], generate) for row in rows]
        if backoff.backoffs:
            self.batch_cap = backoff.size
        return [self.tokenizer.decode(row, skip_special_tokens=True).strip() for row in ids]
