"""A word-level tokenizer for object names, trained offline with `tokenizers` (no T5 vocabulary exists here).

Object names are short ("red star", "star"), so one token per word is exact and tiny. Wrapped as a transformers
`PreTrainedTokenizerFast` with T5's special-token layout (pad 0, eos 1, unk 2; pad is T5's decoder start), so the
same code path serves it and a real T5 tokenizer loaded from a local directory.
"""
from __future__ import annotations

from typing import Iterable

from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
from transformers import PreTrainedTokenizerFast

# T5's ids: pad = 0 (also decoder_start_token_id), eos = 1, unk = 2.
T5_SPECIAL_TOKENS = ("<pad>", "</s>", "<unk>")


def train_name_tokenizer(names: Iterable[str]) -> PreTrainedTokenizerFast:
    """Every lower-cased word of `names` becomes a token; each encoding ends with </s> as T5's does."""
    word_level = Tokenizer(models.WordLevel(unk_token="<unk>"))
    word_level.normalizer = normalizers.Lowercase()
    word_level.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    word_level.decoder = decoders.WordPiece(prefix="##")  # joins word tokens with single spaces
    trainer = trainers.WordLevelTrainer(special_tokens=list(T5_SPECIAL_TOKENS), min_frequency=1, show_progress=False)
    word_level.train_from_iterator(list(names), trainer)
    eos_id = word_level.token_to_id("</s>")
    word_level.post_processor = processors.TemplateProcessing(single="$A </s>", special_tokens=[("</s>", eos_id)])
    return PreTrainedTokenizerFast(tokenizer_object=word_level, pad_token="<pad>", eos_token="</s>",
                                   unk_token="<unk>")
