"""The Object Name Generator (Open-Det Sec. 3.5): T5 reads one VL-prompt per object and writes its name.

LoRA head: the shared token embedding and `lm_head` learn rank-16 adapters (Sec. 3.5 and A.2: 24.7M head parameters
of T5-base become 0.526M trainable), while the rest of T5 trains; the paper freezes the weights under them early in
training, the released code's last stage trains them too (opendet.name_generator.lora_base_trainable).
Text denoising: the objects' text embeddings, with Gaussian noise of the batch's text-embedding std, are also fed to
T5 to reconstruct their names (Sec. 3.5).
"""
from __future__ import annotations

import peft
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from transformers import AutoTokenizer, PreTrainedTokenizerBase, T5Config, T5ForConditionalGeneration

from trainers.opendet.config import NameGeneratorConfig
from vlm.hub import resolve_pretrained_dir

LORA_TARGETS = ("shared", "lm_head")  # Open-Det Sec. 3.5 / A.2: the LoRA head on T5's embedding and head


def load_t5(config: NameGeneratorConfig) -> tuple[T5ForConditionalGeneration, PreTrainedTokenizerBase]:
    """A real T5 and its tokenizer from `opendet.name_generator.t5_dir`: a save_pretrained folder, or a Hub repo id
    (`google/flan-t5-base`) read through the Hugging Face cache (vlm.hub)."""
    directory = resolve_pretrained_dir(config.t5_dir, "opendet.name_generator.t5_dir").path
    model = T5ForConditionalGeneration.from_pretrained(directory, local_files_only=True)
    return model, AutoTokenizer.from_pretrained(directory, local_files_only=True)


def tiny_t5(config: NameGeneratorConfig, tokenizer: PreTrainedTokenizerBase) -> T5ForConditionalGeneration:
    """A random T5 sized for names on 2 CPU cores; ids follow the tokenizer (pad is T5's decoder start)."""
    t5_config = T5Config(vocab_size=len(tokenizer), d_model=config.tiny_d_model, d_kv=config.tiny_d_model //
                         config.tiny_heads, d_ff=config.tiny_d_ff, num_layers=config.tiny_layers,
                         num_decoder_layers=config.tiny_layers, num_heads=config.tiny_heads, dropout_rate=0.0,
                         pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id,
                         decoder_start_token_id=tokenizer.pad_token_id)
    return T5ForConditionalGeneration(t5_config)


def add_lora_head(t5: T5ForConditionalGeneration, rank: int, alpha: int, base_trainable: bool = True
                  ) -> T5ForConditionalGeneration:
    """Rank-`rank` LoRA on the shared embedding and lm_head (scale alpha / rank); everything else trainable, and
    the base weights under the adapters too when `base_trainable` (the released code's last stage).

    peft freezes the whole model on injection; the paper freezes only the head ("while keeping other weights
    active"), so the other weights are switched back on. The encoder / decoder embedding lookups are pointed at the
    wrapped shared embedding, or the adapter would only sit on a module nothing calls."""
    lora = peft.LoraConfig(r=rank, lora_alpha=alpha, target_modules=list(LORA_TARGETS), lora_dropout=0.0)
    t5 = peft.inject_adapter_in_model(lora, t5)
    t5.set_input_embeddings(t5.shared)
    for name, parameter in t5.named_parameters():
        parameter.requires_grad = base_trainable or "lora_" in name or not is_head_base_weight(name)
    return t5


def is_head_base_weight(name: str) -> bool:
    """The pre-trained weights under the LoRA head (the tied embedding is reached through `shared`)."""
    return any(name.startswith(f"{module}.base_layer.") for module in LORA_TARGETS) or name.startswith(
        ("encoder.embed_tokens.", "decoder.embed_tokens."))


def padded_batch_std(text_embeddings: Tensor, counts: list[int]) -> Tensor:
    """The std of the (B, max count, Dt) tensor holding each image's text embeddings, zero-padded (released code:
    `clip_object_descriptions_features.std()` over its padded per-image text tensor). text_embeddings: (Nt, Dt),
    rows image after image, `counts` per image."""
    padded = text_embeddings.new_zeros(len(counts), max(counts, default=0), text_embeddings.shape[1])
    for image, rows in enumerate(text_embeddings.split(counts)):
        padded[image, :len(rows)] = rows
    return padded.std() if padded.numel() > 1 else text_embeddings.new_tensor(0.0)


class ObjectNameGenerator(nn.Module):
    """VL-prompts (K, Dt) → T5 → object names; Dt is the vision-language model's text width."""

    def __init__(self, t5: T5ForConditionalGeneration, tokenizer: PreTrainedTokenizerBase, prompt_dim: int,
                 lora_rank: int = 16, lora_alpha: int = 1, max_name_tokens: int = 6, num_beams: int = 3,
                 lora_head: bool = True, lora_base_trainable: bool = True, text_denoising: bool = True,
                 denoise_probability: float = 0.9, denoise_form: str = "released", normalize_prompts: bool = True):
        """lora_rank, lora_alpha: the LoRA head (Open-Det A.2: rank 16; released code: loralib's α = 1);
        max_name_tokens: tokens per name, </s> included; num_beams: beam search width at inference (released
        code: 3); denoise_form, normalize_prompts: see opendet.loss (trainers.opendet.config)."""
        super().__init__()
        if denoise_form not in ("released", "paper"):
            raise ValueError(f"opendet.loss.denoise_form must be released or paper, got {denoise_form!r}")
        self.tokenizer = tokenizer
        self.max_name_tokens = max_name_tokens
        self.num_beams = num_beams
        self.t5 = add_lora_head(t5, lora_rank, lora_alpha, lora_base_trainable) if lora_head else t5
        # One linear map from the text width to T5's width; prompts and text embeddings share it, so the
        # denoising task teaches T5 the very input space the VL-prompts are distilled into (VLD-M, eq. 7).
        self.prompt_projection = nn.Linear(prompt_dim, t5.config.d_model)
        self.text_denoising = text_denoising
        self.denoise_probability = denoise_probability  # released code: p = 0.9
        self.denoise_form = denoise_form
        self.normalize_prompts = normalize_prompts

    @classmethod
    def from_config(cls, config: NameGeneratorConfig, prompt_dim: int, tokenizer: PreTrainedTokenizerBase | None,
                    **switches) -> "ObjectNameGenerator":
        """A local T5 (`t5_dir`) with its own tokenizer, or the tiny T5 over `tokenizer` (e.g. train_name_tokenizer).
        switches: lora_head, text_denoising, denoise_probability, denoise_form, normalize_prompts (the loss
        section's settings)."""
        if config.t5_dir:
            t5, tokenizer = load_t5(config)
        elif tokenizer is None:
            raise ValueError("opendet.name_generator.t5_dir is empty (tiny demo T5) and no name tokenizer was given")
        else:
            t5 = tiny_t5(config, tokenizer)
        return cls(t5, tokenizer, prompt_dim, lora_rank=config.lora_rank, lora_alpha=config.lora_alpha,
                   lora_base_trainable=config.lora_base_trainable, max_name_tokens=config.max_name_tokens,
                   num_beams=config.num_beams, **switches)

    def encode_names(self, names: list[str], device: torch.device) -> Tensor:
        """(K, L) int64 labels, padding as −100 (ignored by T5's cross-entropy)."""
        tokens = self.tokenizer(names, padding=True, truncation=True, max_length=self.max_name_tokens,
                                return_tensors="pt")
        labels = tokens["input_ids"].to(device)
        return labels.masked_fill(tokens["attention_mask"].to(device) == 0, -100)

    def t5_inputs(self, prompts: Tensor) -> Tensor:
        """(K, Dt) → (K, 1, d_model): one encoder token per object, scaled to unit norm when `normalize_prompts`
        (released code: `inputs_t5 / (‖inputs_t5‖ + 1e-6)`)."""
        inputs = self.prompt_projection(prompts)
        if self.normalize_prompts:
            inputs = inputs / (inputs.norm(dim=-1, keepdim=True) + 1e-6)
        return inputs.unsqueeze(1)

    def name_loss(self, prompts: Tensor, names: list[str], weights: Tensor | None = None) -> Tensor:
        """Open-Det eq. 9: token cross-entropy of `names` given one prompt each. prompts: (K, Dt) float.

        weights: (K,) float per name (a pseudo name's stored score); each token's loss is multiplied by its name's
        weight and the sum divided by the number of tokens, so weights of 1 give T5's own mean loss."""
        if prompts.shape[0] == 0:
            # A zero that every trainable parameter takes part in: DistributedDataParallel expects a gradient for
            # each of them on every rank, also from a batch without objects.
            return prompts.sum() * 0.0 + sum(p.sum() for p in self.parameters() if p.requires_grad) * 0.0
        labels = self.encode_names(names, prompts.device)
        logits = self.t5(inputs_embeds=self.t5_inputs(prompts), labels=labels).logits  # (K, L, vocab)
        per_token = F.cross_entropy(logits.transpose(1, 2).float(), labels, ignore_index=-100, reduction="none")
        if weights is not None:
            per_token = per_token * weights.detach().float()[:, None]
        return per_token.sum() / (labels != -100).sum().clamp(min=1)

    def noisy_text_embeddings(self, text_embeddings: Tensor, counts: list[int] | None = None) -> Tensor:
        """t + m ⊙ ε, ε ~ N(0, std²) (Sec. 3.5). text_embeddings: (K, Dt) float, rows image after image.

        released: std of the zero-padded per-image text tensor (`counts` objects per image), m one Bernoulli(p)
        draw per element; paper: std over the K embeddings, m one draw per row."""
        texts = text_embeddings.detach().float()
        if self.denoise_form == "released":
            std = padded_batch_std(texts, counts if counts is not None else [len(texts)])
            keep_shape = texts.shape
        else:
            std = texts.std() if texts.numel() > 1 else texts.new_tensor(0.0)
            keep_shape = (texts.shape[0], 1)
        noisy = torch.rand(keep_shape, device=texts.device) < self.denoise_probability
        return texts + torch.randn_like(texts) * std * noisy

    def forward(self, prompts: Tensor, names: list[str], text_embeddings: Tensor, text_names: list[str],
                weights: Tensor | None = None, text_weights: Tensor | None = None,
                counts: list[int] | None = None) -> dict[str, Tensor]:
        """prompts: (K, Dt) float VL-prompts of matched queries, `names` theirs, `weights` (K,) per name;
        text_embeddings: (Nt, Dt) float of the objects T5 learns to reconstruct from noise (text_names,
        text_weights, `counts` objects per image) → loss terms."""
        losses = {"loss_name": self.name_loss(prompts, names, weights)}
        if self.text_denoising:
            noisy = self.noisy_text_embeddings(text_embeddings, counts)
            losses["loss_name_denoise"] = self.name_loss(noisy, text_names, text_weights)
        return losses

    @torch.no_grad()
    def generate(self, prompts: Tensor, num_beams: int | None = None) -> list[tuple[str, ...]]:
        """Beam-search names: prompts (K, Dt) float → K tuples of `num_beams` names, best beam first (released
        code: `num_return_sequences = num_beams`); a name may be empty."""
        if prompts.shape[0] == 0:
            return []
        beams = num_beams or self.num_beams
        inputs = self.t5_inputs(prompts)
        tokens = self.t5.generate(inputs_embeds=inputs, attention_mask=torch.ones(inputs.shape[:2], dtype=torch.long,
                                  device=inputs.device), num_beams=beams, num_return_sequences=beams,
                                  max_new_tokens=self.max_name_tokens, do_sample=False)
        texts = [text.strip() for text in self.tokenizer.batch_decode(tokens, skip_special_tokens=True)]
        return [tuple(texts[row * beams:(row + 1) * beams]) for row in range(prompts.shape[0])]
