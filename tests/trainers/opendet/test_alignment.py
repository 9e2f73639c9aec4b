"""BVLA-M: s(q, t) = cos(W_v q, t) + (W_i q)·(W_l t), by hand with set weights; the released refinement of the
one-to-one layers' queries before they are scored."""
import dataclasses
import math

import pytest
import torch

from schemas.config import ConfigError, load_config
from trainers.opendet.alignment import BidirectionalAlignment
from tests.trainers.opendet.tiny_opendet import TINY, tiny_batch, tiny_model
from trainers.opendet.config import AlignmentConfig, OpenDetLossConfig
from tests.float32 import approx32

QUERIES = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
TEXTS = torch.tensor([[1.0, 0.0], [1.0, 1.0]])


def _set(module: BidirectionalAlignment) -> None:
    with torch.no_grad():
        module.bias.zero_()
        for layer, scale in ((module.vision_to_language, 1.0), (getattr(module, "query_map", None), 1.0),
                             (getattr(module, "language_to_vision", None), 2.0)):
            if layer is not None:
                layer.weight.copy_(scale * torch.eye(2))
                layer.bias.zero_()


def test_bidirectional_score_by_hand():
    module = BidirectionalAlignment(2, 2)
    _set(module)
    r = 1 / math.sqrt(2)
    # cos part [[1, r], [0, r]]; dot part q·(2t) = [[2, 2], [0, 4]].
    assert module(QUERIES, TEXTS).tolist() == [approx32([3.0, 2.0 + r]), approx32([0.0, 4.0 + r])]


def test_vision_to_language_only_is_the_cosine():
    module = BidirectionalAlignment(2, 2, bidirectional=False)
    _set(module)
    r = 1 / math.sqrt(2)
    assert module(QUERIES, TEXTS).tolist() == [approx32([1.0, r]), approx32([0.0, r])]
    assert not hasattr(module, "language_to_vision")


def test_scores_start_at_the_focal_prior():
    module = BidirectionalAlignment(2, 2, prior_probability=0.01)
    prior_bias = module.bias.item()
    _set(module)
    module.bias.data.fill_(prior_bias)
    zero_scores = module(torch.zeros(1, 2), torch.zeros(1, 2))  # no signal: the score is the bias alone
    assert torch.sigmoid(zero_scores).item() == approx32(0.01)


def test_gradient_of_a_positive_score_reaches_both_directions():
    module = BidirectionalAlignment(2, 3)
    module(torch.randn(2, 2), torch.randn(2, 3))[0, 0].backward()
    for layer in (module.vision_to_language, module.query_map, module.language_to_vision):
        assert layer.weight.grad.abs().sum() > 0


def test_table_rows_are_configs():
    table4_without_mal = load_config(OpenDetLossConfig, None, ["masked_alignment=false"])
    assert table4_without_mal.masked_alignment is False and table4_without_mal.joint_loss is True
    with pytest.raises(ConfigError, match="joint_alpha_typo"):
        load_config(OpenDetLossConfig, None, ["joint_alpha_typo=1"])
    with pytest.raises(ValueError, match="joint_alpha"):
        OpenDetLossConfig(joint_alpha=0.5)


def test_one_to_one_layers_are_scored_on_refined_queries():
    model = tiny_model()
    output = model(tiny_batch()[0])
    assert len(model.refiner.blocks) == TINY.detector.one_to_one_layers == 2
    assert torch.equal(model.aligned_queries(output, 0), output.layers[0].queries)  # one-to-many: as they are
    for layer in (1, 2):
        refined = model.aligned_queries(output, layer)
        assert refined.shape == output.layers[layer].queries.shape
        assert not torch.allclose(refined, output.layers[layer].queries)
    unrefined = tiny_model(dataclasses.replace(TINY, alignment=AlignmentConfig(refine_queries=False)))
    assert unrefined.refiner is None
    output = unrefined(tiny_batch()[0])
    assert torch.equal(unrefined.aligned_queries(output, 2), output.layers[2].queries)
