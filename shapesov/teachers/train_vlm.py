"""Training of the ShapesOV instruction-following teacher: LLaVA's projector and a small Llama learn to answer the
`vlm` labeler's region prompts, the CLIP image tower frozen (LLaVA's recipe, Liu et al. 2023).

Every view goes through the teacher's own processor once (the tokens and pixels the labeler will give it) and its
image tokens through the frozen tower once; each step then projects a batch of cached tokens and runs the real
LlavaForConditionalGeneration forward on them (`mm_encoder_outputs`), the loss on the answer's tokens only.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
from transformers import LlavaForConditionalGeneration, LlavaProcessor
from transformers.modeling_outputs import BaseModelOutputWithPooling

from shapesov.teachers.training_steps import StepPlan, run_training_steps
from shapesov.teachers.vlm_config import VlmTeacherConfig
from shapesov.teachers.vlm_examples import VlmExamples
from vlm.image_text_model import ImageTextModel

IGNORE = -100  # labels transformers' loss leaves out (the prompt, the padding)


@dataclass(frozen=True)
class EncodedExamples:
    """image_tokens: (N, T, D) float32 tower outputs; ids: (N, L) long, prompt then answer then padding;
    answer_start, length: (N,) long."""

    image_tokens: torch.Tensor
    ids: torch.Tensor
    answer_start: torch.Tensor
    length: torch.Tensor


def tokenizer_corpus(examples: VlmExamples) -> list[str]:
    """The texts the tokenizer is trained on: the prompts, the answers, the conversation's own words."""
    return list(examples.prompts) + list(examples.answers) + ["USER: ", "ASSISTANT:"]


@torch.inference_mode()
def encode_examples(model: LlavaForConditionalGeneration, processor: LlavaProcessor, examples: VlmExamples,
                    chunk: int = 256) -> EncodedExamples:
    """Every example through the processor (the chat template, `<image>` expanded) and its view through the frozen
    image tower; answers as " <answer>" + end of text."""
    formatter = ImageTextModel(model.eval(), processor)  # eval: the tower's BatchNorm uses CLIP's statistics
    tokenizer = processor.tokenizer
    prompt_ids, token_chunks = [], []
    for start in range(0, len(examples), chunk):
        stop = min(start + chunk, len(examples))
        texts = [formatter.format(prompt) for prompt in examples.prompts[start:stop]]
        inputs = processor(images=examples.images[start:stop], text=texts, return_tensors="pt", padding=True)
        prompt_ids += [row[mask.bool()].tolist() for row, mask in zip(inputs["input_ids"], inputs["attention_mask"])]
        token_chunks.append(model.model.vision_tower(inputs["pixel_values"]).last_hidden_state.float())
    answers = [tokenizer.encode(" " + answer, add_special_tokens=False) + [tokenizer.eos_token_id]
               for answer in examples.answers]
    lengths = [len(p) + len(a) for p, a in zip(prompt_ids, answers)]
    ids = torch.full((len(examples), max(lengths)), tokenizer.pad_token_id, dtype=torch.long)
    for row, (prompt, answer) in enumerate(zip(prompt_ids, answers)):
        ids[row, :len(prompt) + len(answer)] = torch.tensor(prompt + answer)
    return EncodedExamples(torch.cat(token_chunks), ids, torch.tensor([len(p) for p in prompt_ids]),
                           torch.tensor(lengths))


def batch_loss(model: LlavaForConditionalGeneration, encoded: EncodedExamples, index: torch.Tensor) -> torch.Tensor:
    """The answer tokens' cross-entropy of the examples at `index`, given their projected image tokens."""
    used = int(encoded.length[index].max())
    ids = encoded.ids[index, :used]
    positions = torch.arange(used)[None, :]
    attention = positions < encoded.length[index, None]
    labels = torch.where(attention & (positions >= encoded.answer_start[index, None]), ids, IGNORE)
    image = model.model.multi_modal_projector(encoded.image_tokens[index])
    outputs = model(input_ids=ids, attention_mask=attention.long(), labels=labels,
                    mm_encoder_outputs={"image": BaseModelOutputWithPooling(pooler_output=list(image))})
    return outputs.loss


def train_vlm(cfg: VlmTeacherConfig, model: LlavaForConditionalGeneration, encoded: EncodedExamples,
              log: Callable[[str], None] = print) -> list[float]:
    """AdamW on the projector and the language model (the tower stays frozen); returns the loss per step."""
    model.train()
    model.model.vision_tower.eval()  # frozen: only the projector and the language model learn
    parameters = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(parameters, lr=cfg.lr, weight_decay=cfg.weight_decay)
    generator = torch.Generator().manual_seed(cfg.seed)
    def step_loss(step: int) -> torch.Tensor:
        return batch_loss(model, encoded, torch.randint(len(encoded.ids), (cfg.batch_size,), generator=generator))

    plan = StepPlan("vlm", cfg.steps, cfg.warmup_steps, cfg.batch_size, unit="examples", lr_flag="lr")
    losses = run_training_steps(plan, optimizer, step_loss, log)
    return losses
