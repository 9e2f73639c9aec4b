"""ClipCap: official state-dict layout round trip (legacy keys, both mappers), strict loading, batched decoding."""
from __future__ import annotations

import logging
import pickle
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file
from transformers import GPT2Config, GPT2LMHeadModel

from shapesov.teachers.tokenizer import train_caption_tokenizer
from vlm.clipcap import ClipCapCaptioner, ClipCapConfig, ClipCapModel, beam_generate, greedy_generate, load_clipcap
from tests.memory_limited import linux_only, run_child

CORPUS = [f"a {c} {s} on a textured background." for c in ("red", "blue", "green") for s in ("star", "heart", "cross")]
PREFIX_SIZE = 24


@pytest.fixture(scope="module")
def tokenizer():
    return train_caption_tokenizer(CORPUS, vocab_size=300)


def _gpt_dir(tmp_path: Path, tokenizer) -> Path:
    eos = tokenizer.eos_token_id
    config = GPT2Config(vocab_size=len(tokenizer), n_embd=32, n_layer=2, n_head=4, n_positions=40,
                        bos_token_id=eos, eos_token_id=eos)
    gpt_dir = tmp_path / "gpt2"
    config.save_pretrained(gpt_dir)
    tokenizer.save_pretrained(gpt_dir)
    return gpt_dir


def _random_clipcap(gpt_dir: Path, mapping_type: str, stop_id: int | None = None) -> ClipCapModel:
    torch.manual_seed(0)
    transformer_only = {"clip_length": 2, "num_layers": 2} if mapping_type == "transformer" else {}
    config = ClipCapConfig(mapping_type, prefix_size=PREFIX_SIZE, prefix_length=3, **transformer_only)
    model = ClipCapModel(config, GPT2LMHeadModel(GPT2Config.from_pretrained(gpt_dir))).eval()
    if stop_id is not None:
        # Raise the stop token's logit by one nat (through the tied head: bias . w = 1), so that random sequences
        # stop after different numbers of tokens and the stopping logic is exercised.
        with torch.no_grad():
            w = model.gpt.transformer.wte.weight[stop_id]
            model.gpt.transformer.ln_f.bias.copy_(w / w.norm() ** 2)
    return model


def _with_legacy_buffers(state: dict, n_layer: int) -> dict:
    """What checkpoints saved by older transformers contain: causal-mask buffers per attention layer."""
    state = dict(state)
    for i in range(n_layer):
        state[f"gpt.transformer.h.{i}.attn.bias"] = torch.tril(torch.ones(40, 40)).view(1, 1, 40, 40)
        state[f"gpt.transformer.h.{i}.attn.masked_bias"] = torch.tensor(-1e4)
    return state


@pytest.mark.parametrize("mapping_type,expected_keys", [
    ("mlp", {"clip_project.model.0.weight", "clip_project.model.2.bias"}),
    ("transformer", {"clip_project.linear.weight", "clip_project.prefix_const",
                     "clip_project.transformer.layers.1.attn.to_keys_values.weight",
                     "clip_project.transformer.layers.0.mlp.fc2.bias"}),
])
@pytest.mark.parametrize("suffix", [".pt", ".safetensors"])
def test_official_layout_round_trip(tmp_path, tokenizer, mapping_type, expected_keys, suffix):
    gpt_dir = _gpt_dir(tmp_path, tokenizer)
    model = _random_clipcap(gpt_dir, mapping_type)
    state = model.state_dict()
    assert expected_keys <= set(state) and "gpt.transformer.wte.weight" in state
    path = tmp_path / f"clipcap{suffix}"
    legacy = _with_legacy_buffers({k: v.clone() for k, v in state.items()}, n_layer=2)
    if suffix == ".pt":
        torch.save(legacy, path)
    else:
        legacy.pop("gpt.lm_head.weight")  # safetensors refuses shared tensors; the head is tied to wte anyway
        save_file({k: v.contiguous() for k, v in legacy.items()}, str(path))
    loaded = load_clipcap(path, gpt_dir, mapping_type=mapping_type, prefix_length=3)
    assert loaded.config == model.config
    embeddings = torch.randn(5, PREFIX_SIZE)
    tokens = torch.randint(len(tokenizer), (5, 4))
    with torch.no_grad():
        torch.testing.assert_close(loaded(tokens, embeddings), model(tokens, embeddings), rtol=0, atol=0)
    stop = tokenizer.encode(".")[0]
    assert beam_generate(loaded, embeddings, stop, 3, 8) == beam_generate(model, embeddings, stop, 3, 8)


def test_loading_is_strict_and_checks_the_architecture(tmp_path, tokenizer):
    gpt_dir = _gpt_dir(tmp_path, tokenizer)
    state = _random_clipcap(gpt_dir, "mlp").state_dict()
    extra = tmp_path / "extra.pt"
    torch.save({**state, "gpt.transformer.h.0.attn.unknown": torch.zeros(1)}, extra)
    with pytest.raises(ValueError, match="unexpected"):
        load_clipcap(extra, gpt_dir)
    missing = tmp_path / "missing.pt"
    torch.save({k: v for k, v in state.items() if k != "gpt.transformer.ln_f.weight"}, missing)
    with pytest.raises(ValueError, match="missing"):
        load_clipcap(missing, gpt_dir)
    good = tmp_path / "good.pt"
    torch.save(state, good)
    with pytest.raises(ValueError, match="prefix_length"):
        load_clipcap(good, gpt_dir, prefix_length=10)
    with pytest.raises(ValueError, match="mapping_type"):
        load_clipcap(good, gpt_dir, mapping_type="transformer")


def test_checkpoints_are_read_as_data_only(tmp_path, tokenizer):
    gpt_dir = _gpt_dir(tmp_path, tokenizer)
    path = tmp_path / "code.pt"
    torch.save({"clip_project.model.0.weight": torch.zeros(2, 2), "payload": Path("/")}, path)
    with pytest.raises(pickle.UnpicklingError):
        load_clipcap(path, gpt_dir)


def _reference_beam(model: ClipCapModel, embedding: torch.Tensor, stop: int, k: int, max_tokens: int) -> list[int]:
    """One embedding at a time, no cache, the whole sequence recomputed each step (official generate_beam)."""
    generated = model.prefix_embeddings(embedding[None])
    scores, tokens, lengths, stopped = None, None, torch.ones(k), torch.zeros(k, dtype=torch.bool)
    for _ in range(max_tokens):
        log_probs = model.gpt(inputs_embeds=generated).logits[:, -1].float().log_softmax(-1)
        if scores is None:
            scores, next_tokens = log_probs.topk(k, -1)
            scores, next_tokens = scores[0], next_tokens.T
            generated, tokens = generated.expand(k, -1, -1), next_tokens
        else:
            log_probs[stopped] = float("-inf")
            log_probs[stopped, 0] = 0.0
            totals = scores[:, None] + log_probs
            lengths[~stopped] += 1
            _, flat = (totals / lengths[:, None]).view(-1).topk(k)
            source, next_tokens = flat // totals.shape[1], (flat % totals.shape[1])[:, None]
            lengths, stopped, generated = lengths[source], stopped[source], generated[source]
            tokens, scores = torch.cat([tokens[source], next_tokens], dim=1), totals.view(-1)[flat]
        generated = torch.cat([generated, model.gpt.transformer.wte(next_tokens)], dim=1)
        stopped = stopped | next_tokens[:, 0].eq(stop)
        if stopped.all():
            break
    best = int((scores / lengths).argmax())
    return tokens[best, : int(lengths[best])].tolist()


@torch.no_grad()
def test_batched_decoding_matches_one_at_a_time_reference(tmp_path, tokenizer):
    gpt_dir = _gpt_dir(tmp_path, tokenizer)
    stop = tokenizer.encode(".")[0]
    model = _random_clipcap(gpt_dir, "transformer", stop_id=stop)
    embeddings = torch.randn(6, PREFIX_SIZE, generator=torch.Generator().manual_seed(1))
    batched = beam_generate(model, embeddings, stop, beam_size=4, max_tokens=10)
    assert batched == [_reference_beam(model, e, stop, 4, 10) for e in embeddings]
    lengths = {len(row) for row in batched}
    assert len(lengths) > 1 and any(row[-1] == stop for row in batched), "stopping was not exercised"
    assert beam_generate(model, embeddings, stop, beam_size=1, max_tokens=10) == greedy_generate(
        model, embeddings, stop, max_tokens=10)


def test_captioner_returns_strings_in_input_order(tmp_path, tokenizer):
    gpt_dir = _gpt_dir(tmp_path, tokenizer)
    model = _random_clipcap(gpt_dir, "mlp")
    path = tmp_path / "clipcap.pt"
    torch.save(model.state_dict(), path)
    captioner = ClipCapCaptioner.from_paths(path, gpt_dir)
    embeddings = torch.randn(7, PREFIX_SIZE)
    together = captioner.caption(embeddings, method="greedy", max_tokens=6)
    in_pieces = captioner.caption(embeddings, method="greedy", max_tokens=6, batch_size=3)
    assert together == in_pieces and all(isinstance(c, str) for c in together) and len(together) == 7


def test_the_captioner_moves_to_a_device_and_dtype_and_decodes_there(tmp_path, tokenizer, caplog):
    """`to(device, dtype)` is how pseudo-labels puts ClipCap on a GPU; here the CPU device in bf16 (every tensor of
    the decoding loop is created on the model's device, so the same code runs on cuda)."""
    gpt_dir = _gpt_dir(tmp_path, tokenizer)
    path = tmp_path / "clipcap.pt"
    torch.save(_random_clipcap(gpt_dir, "mlp").state_dict(), path)
    captioner = ClipCapCaptioner.from_paths(path, gpt_dir).to("cpu", "bf16")
    assert next(captioner.model.parameters()).dtype == torch.bfloat16
    embeddings = torch.randn(5, PREFIX_SIZE)
    for method in ("beam", "greedy"):
        captions = captioner.caption(embeddings, method=method, beam_size=3, max_tokens=5)
        assert len(captions) == 5 and all(isinstance(c, str) for c in captions)

    # fp16 on a CPU has no fast kernels: the captioner runs in fp32 and says so, naming the key.
    with caplog.at_level(logging.WARNING, logger="vlm.clip"):
        captioner.to("cpu", "fp16")
    assert next(captioner.model.parameters()).dtype == torch.float32
    assert "captioner.clipcap.dtype=fp16 on a CPU" in caplog.text


OOM_CHILD = '''
import resource, sys
import torch
from transformers import GPT2Config, GPT2LMHeadModel
from shapesov.teachers.tokenizer import train_caption_tokenizer
from vlm.clipcap import ClipCapCaptioner, ClipCapConfig, ClipCapModel

torch.set_num_threads(1)
tokenizer = train_caption_tokenizer(["a red star on a wall.", "a blue heart."], vocab_size=300)
# GPT-2's vocabulary with a tiny body: the logits of a 512-caption batch (512 x 4 prefix tokens x 50257 floats,
# 412 MB) cannot be allocated under the cap below, those of 64 captions can.
config = GPT2Config(vocab_size=50257, n_embd=32, n_layer=1, n_head=2, n_positions=32,
                    bos_token_id=tokenizer.eos_token_id, eos_token_id=tokenizer.eos_token_id)
torch.manual_seed(0)
model = ClipCapModel(ClipCapConfig("mlp", prefix_size=16, prefix_length=4), GPT2LMHeadModel(config)).eval()
captioner = ClipCapCaptioner(model, tokenizer)
embeddings = torch.randn(512, 16, generator=torch.Generator().manual_seed(1))
reference = captioner.caption(embeddings, method="greedy", max_tokens=3, batch_size=32)
size = next(int(line.split()[1]) * 1024 for line in open("/proc/self/status") if line.startswith("VmSize"))
resource.setrlimit(resource.RLIMIT_AS, (size + 160 * 2 ** 20, resource.RLIM_INFINITY))
assert captioner.caption(embeddings, method="greedy", max_tokens=3, batch_size=512) == reference
print("cap", captioner.batch_cap)
'''


@linux_only
@pytest.mark.slow
def test_a_real_out_of_memory_error_halves_the_caption_batch_for_good():
    done = run_child(OOM_CHILD)
    cap = int(done.stdout.split("cap")[1])
    assert 1 <= cap <= 256  # halved at least once, kept for later calls; captions unchanged
    assert "DefaultCPUAllocator: can't allocate memory" in done.stderr
