"""Captions → candidate pseudo text labels: spaCy noun chunks, cleaned, lemmatised and deduplicated.

HD-OVD (Sec. III-C) extracts the noun phrases of each region caption with a grammar parser and lets CLIP pick one;
its Table VIII compares that with using the raw caption, which `mode="raw"` reproduces.
"""
from __future__ import annotations

from typing import Sequence

from pipelines.pseudo_labels_config import SPACY_MODEL, NounMode, NounsSection

# Words that name the picture or its layout rather than an object in it. Captioners trained on web captions say
# "a photo of …", "… in the background", "a close up of …"; as labels these would teach the detector that a
# region is a "photo" ("a patch of grass" names the grass; "a patch of striped background", nothing). Kept as data
# so a dataset can extend it through the config (nouns.extra_stop_words).
CAPTION_STOP_WORDS: frozenset[str] = frozenset({
    "photo", "photograph", "image", "picture", "pic", "background", "foreground", "view", "close", "closeup",
    "close-up", "scene", "shot", "frame", "camera", "screen", "shape", "object", "thing", "something", "item",
    "kind", "type", "lot", "bunch", "group", "couple", "pair", "set", "front", "side", "top", "bottom", "middle",
    "center", "centre", "left", "right", "corner", "edge", "part", "piece", "area", "patch", "one", "ones",
})
# Parts of speech that never belong in a label: determiners ("a", "the", "this"), numbers ("two"), pronouns,
# possessive markers and punctuation.
DROPPED_POS: frozenset[str] = frozenset({"DET", "NUM", "PRON", "PART", "PUNCT", "SYM", "X", "SPACE", "CCONJ", "ADP"})


def load_spacy(model: str = SPACY_MODEL):
    """The spaCy pipeline with the components noun chunks need (NER is not used, so it is not run)."""
    import spacy
    try:
        return spacy.load(model, exclude=["ner"])
    except OSError as error:
        raise OSError(f"spaCy model {model!r} is not installed (config key nouns.spacy_model)") from error


class NounExtractor:
    """Many captions in, one ordered candidate list per caption out; spaCy runs batched with `nlp.pipe`.

    nlp: a loaded spaCy pipeline (None in mode "raw", which parses nothing); extra_stop_words join
    CAPTION_STOP_WORDS, case-insensitively.
    """

    def __init__(self, nlp, *, mode: NounMode, add_head_nouns: bool, max_candidates: int,
                 extra_stop_words: Sequence[str], batch_size: int):
        self.nlp = nlp
        self.mode = mode
        self.add_head_nouns = add_head_nouns
        self.max_candidates = max_candidates
        self.stop_words = CAPTION_STOP_WORDS | {w.lower() for w in extra_stop_words}
        self.batch_size = batch_size

    @classmethod
    def from_config(cls, section: NounsSection) -> "NounExtractor":
        """Loads the section's spaCy model, unless mode "raw" needs none."""
        nlp = None if section.mode == "raw" else load_spacy(section.spacy_model)
        return cls(nlp, mode=section.mode, add_head_nouns=section.add_head_nouns,
                   max_candidates=section.max_candidates, extra_stop_words=section.extra_stop_words,
                   batch_size=section.batch_size)

    def candidates(self, captions: Sequence[str]) -> list[list[str]]:
        """captions: N strings → N lists of candidate labels (possibly empty), in caption order."""
        if self.mode == "raw":
            return [[_normalise(c)] if _normalise(c) else [] for c in captions]
        texts = [c.strip() for c in captions]
        docs = self.nlp.pipe(texts, batch_size=self.batch_size)
        return [self._from_doc(doc)[: self.max_candidates] for doc in docs]

    def _from_doc(self, doc) -> list[str]:
        found: list[str] = []
        for chunk in doc.noun_chunks:
            kept = [token for token in chunk if self._keeps(token)]
            nouns = [token for token in kept if token.pos_ in ("NOUN", "PROPN")]
            if not nouns:
                continue
            # The head is the parser's root when it survives stripping; otherwise the last noun left: in
            # "a green diamond shape" the root is the stop word "shape", and the object is the "diamond".
            head = chunk.root if chunk.root.i in {t.i for t in nouns} else nouns[-1]
            phrase = " ".join(_lemma_or_text(t, t.i == head.i) for t in kept)
            for candidate in (phrase, _lemma_or_text(head, True)) if self.add_head_nouns else (phrase,):
                if candidate not in found:
                    found.append(candidate)
        return found

    def _keeps(self, token) -> bool:
        text = token.text.lower()
        return (token.pos_ not in DROPPED_POS and token.is_alpha and text not in self.stop_words
                and token.lemma_.lower() not in self.stop_words and not (token.is_stop and token.pos_ != "NOUN"))


def _lemma_or_text(token, is_head: bool) -> str:
    # Only the head noun is lemmatised ("hearts" → "heart"); modifiers keep their surface form because the
    # lemmatiser turns adjectives like "textured" into verbs ("texture").
    return (token.lemma_ if is_head else token.text).lower()


def _normalise(caption: str) -> str:
    return " ".join(caption.lower().split()).strip(" .")
