"""A GPT-2-style byte-level BPE tokenizer trained offline on our caption corpus (no GPT-2 vocabulary exists here).

Saved with `save_pretrained`, so `transformers.AutoTokenizer.from_pretrained(dir)` loads it like any GPT-2 tokenizer.
"""
from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Iterable

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import GPT2Tokenizer

# GPT-2's single special token: bos, eos and unknown at once.
END_OF_TEXT = "<|endoftext|>"


def train_caption_tokenizer(corpus: Iterable[str], vocab_size: int) -> GPT2Tokenizer:
    """Byte-level BPE on `corpus`, wrapped as a transformers GPT-2 tokenizer.

    The byte alphabet is always included, so any text encodes; `vocab_size` caps the merges learned on top of it.
    """
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=[END_OF_TEXT], show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    bpe.train_from_iterator(list(corpus), trainer)
    with tempfile.TemporaryDirectory() as tmp:
        vocab_file, merges_file = bpe.model.save(tmp)
        vocab = json.loads(Path(vocab_file).read_text())
        merges = [tuple(line.split(" ")) for line in Path(merges_file).read_text().splitlines()
                  if line and not line.startswith("#version")]
    return GPT2Tokenizer(vocab=vocab, merges=merges)
