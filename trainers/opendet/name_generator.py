"""The Object Name Generator (Open-Det Sec. 3.5): T5 reads one VL-prompt per object and writes its name.

LoRA head: the shared token embedding and `lm_head` learn rank-16 adapters (Sec. 3.5 and A.2: 24.7M head parameters
of T5-base become 0.526M trainable), while the rest of T5 trains; the paper freezes the weights under them early in
training, the released code's last stage trains them too (opendet.name_generator.lora_base_trainable).
Text denoising: the objects' text embeddings, with Gaussian noise of the batch's text-embedding std, are also fed to
T5 to reconstruct their names (Sec. 3.5).
"""
from __future__ import annotations

from pathlib import Path

import peft
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from transformers import AutoTokenizer, PreTrainedTokenizerBase, T5Config, T5ForConditionalGeneration

from trainers.opendet.config import NameGeneratorConfig
from vlm.hub import SAFETENSORS_WEIGHTS, TORCH_WEIGHTS, resolve_pretrained_dir

LORA_TARGETS = ("shared", "lm_head")  # Open-Det Sec. 3.5 / A.2: the LoRA head on T5's embedding and head
T5_KEY = "opendet.name_generator.t5_dir"
# The files from which AutoTokenizer builds a tokenizer (a T5's SentencePiece model or a fast tokenizer's JSON).
TOKENIZER_FILES = ("tokenizer.json", "spiece.model", "tokenizer_config.json")


def _holds(folder: Path, patterns: tuple[str, ...]) -> bool:
    return any(any(folder.glob(pattern)) for pattern in patterns)


def reads_word_tokenizer(t5_dir: str) -> bool:
    """True when `t5_dir` is a local folder without tokenizer files: its T5 reads the word tokenizer trained on the
    store's names (trainers.opendet.name_tokenizer). A Hub repo brings its own tokenizer."""
    folder = Path(t5_dir)
    return folder.is_dir() and not _holds(folder, TOKENIZER_FILES)


def load_t5(config: NameGeneratorConfig, word_tokenizer: PreTrainedTokenizerBase | None = None
            ) -> tuple[T5ForConditionalGeneration, PreTrainedTokenizerBase]:
    """The T5 of `opendet.name_generator.t5_dir` and its tokenizer: a save_pretrained folder or a Hub repo id
    (`google/flan-t5-base`) read through the Hugging Face cache (vlm.hub). A folder whose config.json comes without
    weights gives a T5 of that shape with random weights, and one without tokenizer files reads `word_tokenizer`
    (vocabulary size, pad, end and decoder-start ids follow it)."""
    folder = Path(resolve_pretrained_dir(config.t5_dir, T5_KEY).path)
    tokenizer = (AutoTokenizer.from_pretrained(folder, local_files_only=True) if _holds(folder, TOKENIZER_FILES)
                 else word_tokenizer)
    if tokenizer is None:
        raise ValueError(f"{T5_KEY} = {config.t5_dir!r} has no tokenizer files, and no word tokenizer was given")
    if _holds(folder, SAFETENSORS_WEIGHTS + TORCH_WEIGHTS):
        return T5ForConditionalGeneration.from_pretrained(folder, local_files_only=True), tokenizer
    t5_config = T5Config.from_pretrained(folder, local_files_only=True)
    t5_config.update({"vocab_size": len(tokenizer), "pad_token_id": tokenizer.pad_token_id,
                      "eos_token_id": tokenizer.eos_token_id, "decoder_start_token_id": tokenizer.pad_token_id})
    return T5ForConditionalGeneration(t5_config), tokenizer


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
                 config: NameGeneratorConfig = NameGeneratorConfig()):
        """config: the LoRA head, prompt scaling and dropout, denoising and decoding (NameGeneratorConfig)."""
        super().__init__()
        self.tokenizer = tokenizer
        self.max_name_tokens = config.max_name_tokens
        self.num_beams = config.num_beams
        self.t5 = (add_lora_head(t5, config.lora_rank, config.lora_alpha, config.lora_base_trainable)
                   if config.lora_head else t5)
        # One linear map from the text width to T5's width; prompts and text embeddings share it, so the
        # denoising task teaches T5 the very input space the VL-prompts are distilled into (VLD-M, eq. 7).
        self.prompt_projection = nn.Linear(prompt_dim, t5.config.d_model)
        self.input_dropout = nn.Dropout(config.input_dropout)
        self.text_denoising = config.text_denoising
        self.denoise_probability = config.denoise_probability
        self.denoise_form = config.denoise_form
        self.normalize_prompts = config.normalize_prompts

    @classmethod
    def from_config(cls, config: NameGeneratorConfig, prompt_dim: int,
                    word_tokenizer: PreTrainedTokenizerBase | None = None) -> "ObjectNameGenerator":
        """The T5 of `t5_dir` (load_t5; `word_tokenizer` for a folder without tokenizer files)."""
        t5, tokenizer = load_t5(config, word_tokenizer)
        return cls(t5, tokenizer, prompt_dim, config)

    def encode_names(self, names: list[str], device: torch.device) -> Tensor:
        """(K, L) int64 labels, padding as −100 (ignored by T5's cross-entropy)."""
        tokens = self.tokenizer(names, padding=True, truncation=True, max_length=self.max_name_tokens,
                                return_tensors="pt")
        labels = tokens["input_ids"].to(device)
        return labels.masked_fill(tokens["attention_mask"].to(device) == 0, -100)

    def t5_inputs(self, prompts: Tensor) -> Tensor:
        """(K, Dt) → (K, 1, d_model): one encoder token per object, scaled to unit norm when `normalize_prompts`
        (released code: `inputs_t5 / (‖inputs_t5‖ + 1e-6)`), then dropout while training (released: 0.1)."""
        inputs = self.prompt_projection(prompts)
        if self.normalize_prompts:
            inputs = inputs / (inputs.norm(dim=-1, keepdim=True) + 1e-6)
        return self.input_dropout(inputs).unsqueeze(1)

    def token_losses(self, prompts: Tensor, names: list[str], weights: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Per-token cross-entropy of `names` given one prompt each: (K, L) losses (each times its name's weight)
        and (K, L) bool, the tokens that count."""
        labels = self.encode_names(names, prompts.device)
        logits = self.t5(inputs_embeds=self.t5_inputs(prompts), labels=labels).logits  # (K, L, vocab)
        per_token = F.cross_entropy(logits.transpose(1, 2).float(), labels, ignore_index=-100, reduction="none")
        if weights is not None:
            per_token = per_token * weights.detach().float()[:, None]
        return per_token, labels != -100

    def _no_names(self, prompts: Tensor) -> Tensor:
        # A zero that every trainable parameter takes part in: DistributedDataParallel expects a gradient for each
        # of them on every rank, also from a batch without objects.
        return prompts.sum() * 0.0 + sum(p.sum() for p in self.parameters() if p.requires_grad) * 0.0

    def name_loss(self, prompts: Tensor, names: list[str], weights: Tensor | None = None) -> Tensor:
        """Open-Det eq. 9: token cross-entropy of `names` given one prompt each. prompts: (K, Dt) float.

        weights: (K,) float per name (a pseudo name's stored score); each token's loss is multiplied by its name's
        weight and the sum divided by the number of tokens, so weights of 1 give T5's own mean loss."""
        if prompts.shape[0] == 0:
            return self._no_names(prompts)
        per_token, counted = self.token_losses(prompts, names, weights)
        return per_token.sum() / counted.sum().clamp(min=1)

    def name_loss_per_image(self, prompts: Tensor, names: list[str], weights: Tensor | None, counts: list[int]
                            ) -> Tensor:
        """The released denoising loss (DDETRSVLUni.forward): T5's mean token loss of each image's objects, then the
        mean over the images that have any; computed in one T5 call. `counts`: objects per image, rows in order."""
        if prompts.shape[0] == 0:
            return self._no_names(prompts)
        per_token, counted = self.token_losses(prompts, names, weights)
        images = torch.repeat_interleave(torch.arange(len(counts), device=prompts.device),
                                         torch.as_tensor(counts, device=prompts.device))
        sums = per_token.new_zeros(len(counts)).index_add(0, images, per_token.sum(dim=1))
        tokens = per_token.new_zeros(len(counts)).index_add(0, images, counted.sum(dim=1).float())
        present = torch.as_tensor(counts, device=prompts.device) > 0
        return (sums[present] / tokens[present].clamp(min=1)).mean()

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
            if self.denoise_form == "released":
                losses["loss_name_denoise"] = self.name_loss_per_image(
                    noisy, text_names, text_weights, counts if counts is not None else [len(text_names)])
            else:
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
