"""Noun candidates from captions with the real spaCy model."""
import pytest

from pipelines.nouns import NounExtractor
from pipelines.pseudo_labels_config import NounsSection


@pytest.fixture(scope="module")
def extractor():
    return NounExtractor.from_config(NounsSection())


def test_determiners_and_numbers_are_stripped_heads_lemmatised(extractor):
    assert extractor.candidates(["a red star and two blue hearts."]) == [["red star", "star", "blue heart", "heart"]]


def test_stop_words_name_the_picture_not_an_object(extractor):
    # "photo", "picture", "background" and "shape" never become labels; "shape" after a noun leaves that noun.
    got = extractor.candidates(["a photo of a yellow hexagon on a dark background",
                                "a picture of a green diamond shape"])
    assert got == [["yellow hexagon", "hexagon"], ["green diamond", "diamond"]]


def test_compound_nouns_stay_together(extractor):
    assert extractor.candidates(["a stop sign near a parking meter"]) == [
        ["stop sign", "sign", "parking meter", "meter"]]


def test_duplicates_removed_order_kept(extractor):
    assert extractor.candidates(["a star next to another star and a circle"]) == [["star", "circle"]]


def test_empty_and_garbage_captions_give_no_candidates(extractor):
    assert extractor.candidates(["", "   ", "!!! ??? ...", "the of and"]) == [[], [], [], []]


def test_a_patch_names_what_it_is_a_patch_of(extractor):
    """"patch" is a layout word like "area": a patch of something is that thing, a patch of background nothing."""
    assert extractor.candidates(["a patch of grass", "a patch of striped background.",
                                 "part of a red shape on a dotted background."]) == [["grass"], [], []]


def test_batch_keeps_caption_order(extractor):
    captions = ["a red star", "", "a blue heart"]
    assert extractor.candidates(captions) == [["red star", "star"], [], ["blue heart", "heart"]]


def test_without_head_nouns_and_cap():
    extractor = NounExtractor.from_config(NounsSection(add_head_nouns=False, max_candidates=1))
    assert extractor.candidates(["a red star and a blue heart"]) == [["red star"]]


def test_extra_stop_words_from_config():
    extractor = NounExtractor.from_config(NounsSection(extra_stop_words=("Wall",)))
    assert extractor.candidates(["a red star on a wall"]) == [["red star", "star"]]


def test_raw_mode_keeps_the_whole_caption_without_spacy():
    extractor = NounExtractor.from_config(NounsSection(mode="raw", spacy_model="not-installed"))
    assert extractor.candidates(["A red  star on a wall.", ""]) == [["a red star on a wall"], []]


def test_missing_spacy_model_names_the_config_key():
    with pytest.raises(OSError, match="nouns.spacy_model"):
        NounExtractor.from_config(NounsSection(spacy_model="no_such_spacy_model"))
