"""The Object Name Generator: LoRA head trains only its adapters, denoising noise, names generated as strings."""
import pytest
import torch
from huggingface_hub import constants

from tests.hub_cache import add_commit, new_repo_id
from trainers.opendet.name_generator import ObjectNameGenerator, load_t5
from trainers.opendet.config import NameGeneratorConfig
from trainers.opendet.name_tokenizer import train_name_tokenizer

NAMES = ["red circle", "circle", "blue star", "star", "green square", "a square"]
TINY = NameGeneratorConfig(tiny_d_model=32, tiny_d_ff=64, tiny_layers=1, tiny_heads=4, lora_rank=4, lora_alpha=4)


def _generator(**switches) -> ObjectNameGenerator:
    torch.manual_seed(0)
    return ObjectNameGenerator.from_config(TINY, prompt_dim=8, tokenizer=train_name_tokenizer(NAMES), **switches)


def test_lora_head_trains_only_its_adapters_while_the_head_is_frozen():
    generator = _generator()
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
    losses = generator(torch.randn(3, 8), torch.randn(3, 8), ["red circle", "star", "green square"])
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


def test_noise_has_the_batch_text_std_and_spares_about_one_row_in_ten():
    generator = _generator()
    texts = torch.randn(4000, 8) * 3.0
    noise = generator.noisy_text_embeddings(texts) - texts
    noisy = noise.abs().sum(dim=1) > 0
    assert 0.88 < noisy.float().mean() < 0.92  # Sec. 3.5 / DESIGN: p = 0.9
    assert noise[noisy].std().item() == pytest.approx(3.0, rel=0.03)


def test_losses_follow_the_denoising_switch():
    prompts, texts = torch.randn(2, 8), torch.randn(2, 8)
    assert set(_generator()(prompts, texts, ["star", "circle"])) == {"loss_name", "loss_name_denoise"}
    assert set(_generator(text_denoising=False)(prompts, texts, ["star", "circle"])) == {"loss_name"}


def test_generation_returns_the_names_it_was_trained_on():
    generator = _generator(text_denoising=False)
    prompts = torch.eye(8)[:3] * 3
    names = ["red circle", "blue star", "square"]
    optimizer = torch.optim.AdamW([p for p in generator.parameters() if p.requires_grad], lr=3e-2)
    for _ in range(60):
        optimizer.zero_grad()
        generator(prompts, prompts, names)["loss_name"].backward()
        optimizer.step()
    generated = generator.generate(prompts)
    assert all(isinstance(name, str) for name in generated)
    assert generated == names


def test_missing_t5_directory_names_the_config_key(tmp_path):
    with pytest.raises(FileNotFoundError, match="name_generator.t5_dir"):
        load_t5(NameGeneratorConfig(t5_dir=str(tmp_path / "t5-base")))


def test_a_saved_t5_directory_loads(tmp_path):
    generator = _generator(lora_head=False)
    generator.t5.save_pretrained(tmp_path)
    generator.tokenizer.save_pretrained(tmp_path)
    loaded = ObjectNameGenerator.from_config(NameGeneratorConfig(t5_dir=str(tmp_path)), prompt_dim=8, tokenizer=None)
    assert loaded.tokenizer("star")["input_ids"] == generator.tokenizer("star")["input_ids"]
    assert torch.equal(loaded.t5.lm_head.base_layer.weight, generator.t5.lm_head.weight)


def test_a_t5_by_hub_repo_id_loads_from_the_cache(tmp_path):
    generator = _generator(lora_head=False)
    generator.t5.save_pretrained(tmp_path)
    generator.tokenizer.save_pretrained(tmp_path)
    repo = new_repo_id("tiny-t5")
    add_commit(repo, tmp_path)
    loaded = ObjectNameGenerator.from_config(NameGeneratorConfig(t5_dir=repo), prompt_dim=8, tokenizer=None)
    assert loaded.tokenizer("star")["input_ids"] == generator.tokenizer("star")["input_ids"]
    assert torch.equal(loaded.t5.lm_head.base_layer.weight, generator.t5.lm_head.weight)
    with pytest.raises(FileNotFoundError, match="opendet.name_generator.t5_dir") as missing:
        load_t5(NameGeneratorConfig(t5_dir=new_repo_id("absent-t5")))
    assert constants.HF_HUB_CACHE in str(missing.value)
