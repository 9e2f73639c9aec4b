"""Max-cosine selection among candidates and HD-OVD's matching score."""
import numpy as np
import pytest

from pipelines.pseudo_label_pick import TextEmbeddingCache, match_scores, pick_labels
from pipelines.pseudo_labels_config import HDOVD_K, HDOVD_MU, HDOVD_SIGMA
from tests.float32 import approx32

WORDS = {"star": [1.0, 0.0, 0.0], "red star": [0.8, 0.6, 0.0], "heart": [0.0, 1.0, 0.0], "wall": [0.0, 0.0, 2.0]}


class CountingEncoder:
    """A text encoder over a fixed table that records every string it was asked for."""

    def __init__(self):
        self.calls: list[list[str]] = []

    def __call__(self, texts):
        self.calls.append(list(texts))
        return np.array([WORDS[t] for t in texts], dtype=np.float32)


def test_max_cosine_candidate_wins():
    cache = TextEmbeddingCache(CountingEncoder())
    regions = np.array([[1.0, 0.1, 0.0], [0.0, 0.0, 5.0], [0.1, 1.0, 0.0]], dtype=np.float16)
    picks = pick_labels(regions, [["red star", "star"], ["star", "wall"], ["star", "heart"]], cache)
    assert [p.label for p in picks] == ["star", "wall", "heart"]
    expected = float(np.dot(regions[0].astype(np.float32) / np.linalg.norm(regions[0].astype(np.float32)), [1, 0, 0]))
    assert picks[0].cos == pytest.approx(expected, abs=1e-4)
    assert np.linalg.norm(picks[1].text_embedding) == approx32(1.0)  # stored normalised


def test_region_without_candidates_gets_none():
    cache = TextEmbeddingCache(CountingEncoder())
    assert pick_labels(np.ones((2, 3)), [[], ["star"]], cache)[0] is None
    assert pick_labels(np.ones((1, 3)), [[]], cache) == [None]


def test_each_string_encoded_once():
    encoder = CountingEncoder()
    cache = TextEmbeddingCache(encoder, batch_size=2)
    pick_labels(np.ones((2, 3)), [["star", "heart", "star"], ["heart", "wall"]], cache)
    pick_labels(np.ones((1, 3)), [["wall", "star"]], cache)
    encoded = [t for call in encoder.calls for t in call]
    assert sorted(encoded) == ["heart", "star", "wall"] and max(len(c) for c in encoder.calls) <= 2


def test_score_formula_with_released_constants():
    cos = np.array([HDOVD_MU, HDOVD_MU + HDOVD_SIGMA, 0.0])
    scores = match_scores(cos, HDOVD_MU, HDOVD_SIGMA, HDOVD_K)
    assert scores[0] == approx32(HDOVD_K / 2)
    assert scores[1] == approx32(HDOVD_K / (1 + np.exp(-1)))
    assert 0 <= scores[2] < 1e-4 and scores.dtype == np.float32


def test_score_rejects_non_positive_sigma():
    with pytest.raises(ValueError, match="score.sigma"):
        match_scores(np.zeros(2), 0.3, 0.0, 1.3)


def test_a_regions_cosine_does_not_depend_on_the_batch_around_it():
    """The runner batches regions as bundles come; a region's picked cosine must be the same bits in any batch."""
    rng = np.random.default_rng(0)
    vocabulary = {f"word{i}": rng.normal(size=64) for i in range(40)}
    cache = TextEmbeddingCache(lambda texts: np.stack([vocabulary[t] for t in texts]))
    regions = rng.normal(size=(300, 64)).astype(np.float16)
    candidates = [list(rng.choice(list(vocabulary), size=5, replace=False)) for _ in regions]
    batched = pick_labels(regions, candidates, cache)
    for row in (0, 1, 150, 299):
        alone = pick_labels(regions[row:row + 1], candidates[row:row + 1], cache)[0]
        pair = pick_labels(regions[row:row + 2], candidates[row:row + 2], cache)[0]
        assert alone.label == pair.label == batched[row].label
        assert alone.cos == pair.cos == batched[row].cos
        assert alone.cos == float(np.float32(alone.cos))  # the store's float32, rounded once
