"""The Object Name Generator: the LoRA head (released: α = 1, base weights trained; paper: base frozen), the two
denoising forms, unit-norm T5 inputs, weighted name losses by hand, beams generated as strings."""
import dataclasses
import math

import pytest
import torch
from huggingface_hub import constants

from tests.hub_cache import add_commit, new_repo_id
from tests.trainers.opendet.tiny_opendet import TINY_T5_DIR
from trainers.opendet.name_generator import ObjectNameGenerator, load_t5, padded_batch_std
from trainers.opendet.config import NameGeneratorConfig
from trainers.opendet.name_tokenizer import train_name_tokenizer
from tests.float32 import approx32

NAMES = ["red circle", "circle", "blue star", "star", "green square", "a square"]
# No input dropout here, so values can be compared; the released dropout is tested on its own.
TINY = NameGeneratorConfig(t5_dir=TINY_T5_DIR, lora_rank=4, lora_alpha=4, input_dropout=0.0)


def _generator(config=TINY, **switches) -> ObjectNameGenerator:
    torch.manual_seed(0)
    return ObjectNameGenerator.from_config(dataclasses.replace(config, **switches), prompt_dim=8,
                                           word_tokenizer=train_name_tokenizer(NAMES))


def _losses(generator, prompts, names):
    """Name and denoising losses with the prompts' own rows as the texts to reconstruct."""
    return generator(prompts, names, prompts, names)


def test_released_lora_head_scales_by_one_over_the_rank_and_trains_its_base_weights():
    generator = _generator(lora_rank=16, lora_alpha=1)
    t5 = generator.t5
    assert t5.lm_head.scaling["default"] == approx32(1 / 16)  # loralib's α = 1 over rank 16
    assert t5.shared.scaling["default"] == approx32(1 / 16)
    assert all(p.requires_grad for p in t5.parameters())  # the released last stage: every T5 weight trains


def test_paper_lora_head_trains_only_its_adapters_while_the_head_is_frozen():
    generator = _generator(dataclasses.replace(TINY, lora_base_trainable=False))
    t5 = generator.t5
    head_bases = {"shared.base_layer.weight", "lm_head.base_layer.weight"} & dict(t5.named_parameters()).keys()
    assert head_bases, "the LoRA wrappers hold the base weights"
    trainable = {name for name, p in t5.named_parameters() if p.requires_grad}
    assert not trainable & head_bases
    assert any("lora_" in name for name in trainable)
    assert any(name.startswith("encoder.block.") for name in trainable)  # the rest of T5 stays active
    # The decoder looks tokens up through the adapter-wrapped embedding.
    assert t5.decoder.embed_tokens is t5.shared
    before = {name: p.detach().clone() for name, p in t5.named_parameters()}
    optimizer = torch.optim.AdamW([p for p in generator.parameters() if p.requires_grad], lr=1e-2)
    losses = _losses(generator, torch.randn(3, 8), ["red circle", "star", "green square"])
    sum(losses.values()).backward()
    optimizer.step()
    after = dict(t5.named_parameters())
    for name in head_bases:
        assert torch.equal(before[name], after[name]), f"{name} moved"
    assert any(not torch.equal(before[n], after[n]) for n in after if "lora_" in n)
    assert any(not torch.equal(before[n], after[n]) for n in after if n.startswith("decoder.block."))


def test_without_lora_head_the_whole_t5_trains():
    generator = _generator(lora_head=False)
    assert all(p.requires_grad for p in generator.t5.parameters())
    assert not any("lora_" in name for name, _ in generator.t5.named_parameters())


def test_paper_noise_has_the_batch_text_std_and_spares_about_one_row_in_ten():
    generator = _generator(denoise_form="paper")
    texts = torch.randn(4000, 8) * 3.0
    noise = generator.noisy_text_embeddings(texts) - texts
    noisy = noise.abs().sum(dim=1) > 0
    assert 0.88 < noisy.float().mean() < 0.92  # p = 0.9 per object
    assert ((noise == 0).all(dim=1) | (noise != 0).all(dim=1)).all()  # a whole row or nothing
    assert noise[noisy].std().item() == pytest.approx(3.0, rel=0.03)


def test_released_noise_std_is_over_the_padded_batch_and_each_element_draws_its_own_coin():
    # Two images with 1 and 3 objects: the padded (2, 3, 8) tensor holds 2 rows of zeros.
    texts = torch.tensor([[3.0] * 8, [1.0] * 8, [-1.0] * 8, [1.0] * 8])
    padded = torch.zeros(2, 3, 8)
    padded[0, 0], padded[1] = texts[0], texts[1:]
    assert padded_batch_std(texts, [1, 3]).item() == approx32(padded.std().item())
    # By hand: 48 entries, 8 of 3, 24 of ±1 (sum 8), 16 zeros → mean 32/48, E[x²] = (72 + 24)/48 = 2.
    mean = 32 / 48
    assert padded.std().item() == approx32(math.sqrt((96 - 48 * mean**2) / 47))
    generator = _generator()  # released
    many = torch.randn(3000, 8)
    noise = generator.noisy_text_embeddings(many, [1000, 2000]) - many
    assert 0.88 < (noise != 0).float().mean() < 0.92  # one Bernoulli(0.9) draw per element
    assert ((noise != 0).sum(dim=1) < 8).float().mean() > 0.5  # rows are partly noised, not all or nothing


def test_t5_inputs_have_unit_norm_unless_switched_off():
    prompts = torch.randn(5, 8) * 7
    assert torch.allclose(_generator().t5_inputs(prompts).norm(dim=-1), torch.ones(5, 1), atol=1e-5)
    raw = _generator(normalize_prompts=False)
    assert torch.allclose(raw.t5_inputs(prompts)[:, 0], raw.prompt_projection(prompts))


def test_weighted_name_loss_by_hand():
    generator = _generator()
    prompts, names = torch.randn(2, 8), ["red circle", "star"]  # 3 and 2 tokens with </s>
    t5_loss = generator.t5(inputs_embeds=generator.t5_inputs(prompts),
                           labels=generator.encode_names(names, prompts.device)).loss
    assert generator.name_loss(prompts, names).item() == approx32(t5_loss.item())
    first = generator.t5(inputs_embeds=generator.t5_inputs(prompts[:1]),
                         labels=generator.encode_names(names[:1], prompts.device)).loss
    # Weight 0 for "star": its 2 tokens count in the denominator, not in the sum.
    weighted = generator.name_loss(prompts, names, torch.tensor([1.0, 0.0]))
    assert weighted.item() == approx32(first.item() * 3 / 5)


def test_losses_follow_the_denoising_switch():
    prompts = torch.randn(2, 8)
    assert set(_losses(_generator(), prompts, ["star", "circle"])) == {"loss_name", "loss_name_denoise"}
    assert set(_losses(_generator(text_denoising=False), prompts, ["star", "circle"])) == {"loss_name"}


def test_generation_returns_the_names_it_was_trained_on():
    generator = _generator(text_denoising=False)
    prompts = torch.eye(8)[:3] * 3
    names = ["red circle", "blue star", "square"]
    optimizer = torch.optim.AdamW([p for p in generator.parameters() if p.requires_grad], lr=3e-2)
    for _ in range(60):
        optimizer.zero_grad()
        _losses(generator, prompts, names)["loss_name"].backward()
        optimizer.step()
    generated = generator.eval().generate(prompts)
    assert all(len(beams) == 3 and all(isinstance(name, str) for name in beams) for beams in generated)
    assert [beams[0] for beams in generated] == names


def test_released_t5_input_dropout_acts_in_training_only():
    generator = _generator(input_dropout=0.1)
    prompts = torch.randn(200, 8)
    dropped = (generator.t5_inputs(prompts) == 0).float().mean().item()
    assert 0.07 < dropped < 0.13  # Generate_with_T5: nn.Dropout(0.1) after the unit norm
    assert (generator.eval().t5_inputs(prompts) != 0).all()
    assert NameGeneratorConfig().input_dropout == 0.1


def test_a_config_only_t5_folder_is_a_random_t5_over_the_word_tokenizer(tmp_path):
    tokenizer = train_name_tokenizer(NAMES)
    t5, read = load_t5(TINY, tokenizer)
    assert read is tokenizer and t5.config.vocab_size == len(tokenizer) and t5.config.d_model == 32
    assert (t5.config.pad_token_id, t5.config.decoder_start_token_id) == (tokenizer.pad_token_id,) * 2
    with pytest.raises(ValueError, match="no tokenizer files"):
        load_t5(TINY)
    # The demo's T5 is the same loader's config-only folder: ShapesOV's former tiny_* sizes.
    demo, _ = load_t5(NameGeneratorConfig(), tokenizer)
    assert (demo.config.d_model, demo.config.d_ff, demo.config.num_layers, demo.config.num_heads) == (64, 128, 2, 4)


def test_missing_t5_directory_names_the_config_key(tmp_path):
    with pytest.raises(FileNotFoundError, match="name_generator.t5_dir"):
        load_t5(NameGeneratorConfig(t5_dir=str(tmp_path / "t5-base")))


def test_a_saved_t5_directory_loads(tmp_path):
    generator = _generator(lora_head=False)
    generator.t5.save_pretrained(tmp_path)
    generator.tokenizer.save_pretrained(tmp_path)
    loaded = ObjectNameGenerator.from_config(NameGeneratorConfig(t5_dir=str(tmp_path)), prompt_dim=8)
    assert loaded.tokenizer("star")["input_ids"] == generator.tokenizer("star")["input_ids"]
    assert torch.equal(loaded.t5.lm_head.base_layer.weight, generator.t5.lm_head.weight)


def test_a_t5_by_hub_repo_id_loads_from_the_cache(tmp_path):
    generator = _generator(lora_head=False)
    generator.t5.save_pretrained(tmp_path)
    generator.tokenizer.save_pretrained(tmp_path)
    repo = new_repo_id("tiny-t5")
    add_commit(repo, tmp_path)
    loaded = ObjectNameGenerator.from_config(NameGeneratorConfig(t5_dir=repo), prompt_dim=8)
    assert loaded.tokenizer("star")["input_ids"] == generator.tokenizer("star")["input_ids"]
    assert torch.equal(loaded.t5.lm_head.base_layer.weight, generator.t5.lm_head.weight)
    with pytest.raises(FileNotFoundError, match="opendet.name_generator.t5_dir") as missing:
        load_t5(NameGeneratorConfig(t5_dir=new_repo_id("absent-t5")))
    assert constants.HF_HUB_CACHE in str(missing.value)
