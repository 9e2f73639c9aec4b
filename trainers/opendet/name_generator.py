"""The Object Name Generator (Open-Det Sec. 3.5): T5 reads one VL-prompt per object and writes its name.

LoRA head: the shared token embedding and `lm_head` keep their (pre-trained) weights frozen and learn rank-16
adapters instead (Sec. 3.5 and A.2: 24.7M head parameters of T5-base become 0.526M), while the rest of T5 trains.
Text denoising: the objects' text embeddings, with Gaussian noise of the batch's text-embedding std, are also fed to
T5 to reconstruct their names (Sec. 3.5).
"""
from __future__ import annotations

import peft
import torch
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


def add_lora_head(t5: T5ForConditionalGeneration, rank: int, alpha: int) -> T5ForConditionalGeneration:
    """Rank-`rank` LoRA on the shared embedding and lm_head; their base weights frozen, everything else trainable.

    peft freezes the whole model on injection; the paper freezes only the head ("while keeping other weights
    active"), so the other weights are switched back on. The encoder / decoder embedding lookups are pointed at the
    wrapped shared embedding, or the adapter would only sit on a module nothing calls."""
    lora = peft.LoraConfig(r=rank, lora_alpha=alpha, target_modules=list(LORA_TARGETS), lora_dropout=0.0)
    t5 = peft.inject_adapter_in_model(lora, t5)
    t5.set_input_embeddings(t5.shared)
    for name, parameter in t5.named_parameters():
        parameter.requires_grad = "lora_" in name or not is_head_base_weight(name)
    return t5


def is_head_base_weight(name: str) -> bool:
    """The frozen pre-trained weights under the LoRA head (the tied embedding is reached through `shared`)."""
    return any(name.startswith(f"{module}.base_layer.") for module in LORA_TARGETS) or name.startswith(
        ("encoder.embed_tokens.", "decoder.embed_tokens."))


class ObjectNameGenerator(nn.Module):
    """VL-prompts (K, Dt) → T5 → object names; Dt is the vision-language model's text width."""

    def __init__(self, t5: T5ForConditionalGeneration, tokenizer: PreTrainedTokenizerBase, prompt_dim: int,
                 lora_rank: int = 16, lora_alpha: int = 16, max_name_tokens: int = 6, num_beams: int = 3,
                 lora_head: bool = True, text_denoising: bool = True, denoise_probability: float = 0.9):
        """lora_rank, lora_alpha: the LoRA head (Open-Det A.2: rank 16); max_name_tokens: tokens per name, </s>
        included; num_beams: beam search width at inference (Open-Det2 released code: 3)."""
        super().__init__()
        self.tokenizer = tokenizer
        self.max_name_tokens = max_name_tokens
        self.num_beams = num_beams
        self.t5 = add_lora_head(t5, lora_rank, lora_alpha) if lora_head else t5
        # One linear map from the text width to T5's width; prompts and text embeddings share it, so the
        # denoising task teaches T5 the very input space the VL-prompts are distilled into (VLD-M, eq. 7).
        self.prompt_projection = nn.Linear(prompt_dim, t5.config.d_model)
        self.text_denoising = text_denoising
        self.denoise_probability = denoise_probability  # Open-Det2 released code via DESIGN: p = 0.9

    @classmethod
    def from_config(cls, config: NameGeneratorConfig, prompt_dim: int, tokenizer: PreTrainedTokenizerBase | None,
                    **switches) -> "ObjectNameGenerator":
        """A local T5 (`t5_dir`) with its own tokenizer, or the tiny T5 over `tokenizer` (e.g. train_name_tokenizer).
        switches: lora_head, text_denoising, denoise_probability (the loss section's settings)."""
        if config.t5_dir:
            t5, tokenizer = load_t5(config)
        elif tokenizer is None:
            raise ValueError("opendet.name_generator.t5_dir is empty (tiny demo T5) and no name tokenizer was given")
        else:
            t5 = tiny_t5(config, tokenizer)
        return cls(t5, tokenizer, prompt_dim, lora_rank=config.lora_rank, lora_alpha=config.lora_alpha,
                   max_name_tokens=config.max_name_tokens, num_beams=config.num_beams, **switches)

    def encode_names(self, names: list[str], device: torch.device) -> Tensor:
        """(K, L) int64 labels, padding as −100 (ignored by T5's cross-entropy)."""
        tokens = self.tokenizer(names, padding=True, truncation=True, max_length=self.max_name_tokens,
                                return_tensors="pt")
        labels = tokens["input_ids"].to(device)
        return labels.masked_fill(tokens["attention_mask"].to(device) == 0, -100)

    def name_loss(self, prompts: Tensor, names: list[str]) -> Tensor:
        """Open-Det eq. 9: token cross-entropy of `names` given one prompt each. prompts: (K, Dt) float."""
        if prompts.shape[0] == 0:
            # A zero that every trainable parameter takes part in: DistributedDataParallel expects a gradient for
            # each of them on every rank, also from a batch without objects.
            return prompts.sum() * 0.0 + sum(p.sum() for p in self.parameters() if p.requires_grad) * 0.0
        inputs = self.prompt_projection(prompts).unsqueeze(1)  # (K, 1, d_model): one encoder token per object
        return self.t5(inputs_embeds=inputs, labels=self.encode_names(names, prompts.device)).loss

    def noisy_text_embeddings(self, text_embeddings: Tensor) -> Tensor:
        """t + ε, ε ~ N(0, std(t)²), for each row with probability `denoise_probability` (Sec. 3.5).

        text_embeddings: (K, Dt) float; std is taken over the whole batch of text embeddings, as the paper states."""
        std = text_embeddings.detach().float().std() if text_embeddings.numel() > 1 else text_embeddings.new_tensor(0.0)
        noisy_rows = torch.rand(text_embeddings.shape[0], 1, device=text_embeddings.device) < self.denoise_probability
        noise = torch.randn_like(text_embeddings) * std
        return text_embeddings.detach() + noise * noisy_rows

    def forward(self, prompts: Tensor, text_embeddings: Tensor, names: list[str]) -> dict[str, Tensor]:
        """prompts, text_embeddings: (K, Dt) float of the matched objects; names: K strings → loss terms."""
        losses = {"loss_name": self.name_loss(prompts, names)}
        if self.text_denoising:
            losses["loss_name_denoise"] = self.name_loss(self.noisy_text_embeddings(text_embeddings), names)
        return losses

    @torch.no_grad()
    def generate(self, prompts: Tensor, num_beams: int | None = None) -> list[str]:
        """Beam-search names, one per prompt. prompts: (K, Dt) float → K strings (possibly empty)."""
        if prompts.shape[0] == 0:
            return []
        inputs = self.prompt_projection(prompts).unsqueeze(1)
        tokens = self.t5.generate(inputs_embeds=inputs, attention_mask=torch.ones(inputs.shape[:2], dtype=torch.long,
                                  device=inputs.device), num_beams=num_beams or self.num_beams,
                                  max_new_tokens=self.max_name_tokens, do_sample=False)
        return [text.strip() for text in self.tokenizer.batch_decode(tokens, skip_special_tokens=True)]
