"""Pseudo-box weights (trainers.pseudo_weights): the released score as stored, or eq. 5 on the standardised cosine,
against values computed by hand with HD-OVD's released μ 0.31, σ 0.026, k 1.3; μ, σ read from a store's manifest."""

import pytest
import torch

from featurestore.writer import ShardWriter
from pipelines.pseudo_label_pick import match_scores
from pipelines.pseudo_labels_config import HDOVD_K, HDOVD_MU, HDOVD_SIGMA
from trainers.pseudo_weights import PseudoBoxWeighting, score_statistics
from tests.float32 import approx32
from tests.focal_by_hand import sigmoid

COSINES = [0.20, 0.31, 0.40]


def stored_scores():
    """What the pseudo-labels stage writes for these cosines (the real scoring function)."""
    return torch.from_numpy(match_scores(COSINES, HDOVD_MU, HDOVD_SIGMA, HDOVD_K))


def test_released_weight_is_the_stored_score():
    # σ((0.20 − 0.31)/0.026)·1.3 = σ(−4.230769)·1.3 = 0.018633; σ(0)·1.3 = 0.65; σ(3.461538)·1.3 = 1.260445.
    expected = [1.3 * sigmoid((c - 0.31) / 0.026) for c in COSINES]
    assert expected == pytest.approx([0.018633, 0.65, 1.260445], abs=1e-5)
    weights = PseudoBoxWeighting("as_stored")(stored_scores(), torch.tensor(COSINES))
    assert weights.tolist() == approx32(expected)


def test_eq5_weight_is_the_sigmoid_of_the_standardised_cosine_not_of_the_score():
    weights = PseudoBoxWeighting("eq5", HDOVD_MU, HDOVD_SIGMA)(stored_scores(), torch.tensor(COSINES))
    # σ(−4.230769) = 0.014333, σ(0) = 0.5, σ(3.461538) = 0.969573: the stored score divided by k.
    assert weights.tolist() == pytest.approx([0.014333, 0.5, 0.969573], abs=1e-5)
    # Squashing the stored score again would give σ(0.018633) = 0.504658 … σ(1.260445) = 0.779103 instead.
    assert sigmoid(0.018633) == pytest.approx(0.504658, abs=1e-5) and weights[0] < 0.02


def test_eq5_needs_mu_and_sigma():
    with pytest.raises(ValueError, match="μ and σ"):
        PseudoBoxWeighting("eq5")
    with pytest.raises(ValueError, match="as_stored or eq5"):
        PseudoBoxWeighting("sigmoid")


def write_manifest(root, pairs):
    """A store whose pseudo-labels stage finished with these (μ, σ) pairs in its summary (the real writer)."""
    writer = ShardWriter(root, "pseudo_labels", 4)
    writer.open_stage({}, "hash")
    writer.finish_stage({"score_mu_sigma": pairs} if pairs is not None else {})


def test_mu_sigma_come_from_the_pseudo_labels_summary(tmp_path):
    write_manifest(tmp_path, [[0.6734, 0.0314]])
    assert score_statistics(str(tmp_path)) == (0.6734, 0.0314)
    weighting = PseudoBoxWeighting.from_store("eq5", str(tmp_path))
    assert weighting(torch.tensor([1.0]), torch.tensor([0.6734 + 0.0314])).item() == pytest.approx(sigmoid(1.0),
                                                                                                  abs=1e-6)
    assert PseudoBoxWeighting.from_store("as_stored", str(tmp_path / "nowhere")).transform == "as_stored"


def test_missing_or_mixed_statistics_are_errors_that_say_what_to_do(tmp_path):
    write_manifest(tmp_path, None)
    with pytest.raises(ValueError, match="make pseudo-labels"):
        score_statistics(str(tmp_path))
    write_manifest(tmp_path, [[0.6, 0.03], [0.31, 0.026]])
    with pytest.raises(ValueError, match="different"):
        score_statistics(str(tmp_path))
