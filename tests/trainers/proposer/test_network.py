"""The proposal network's two objectness variants: OLN's losses and scoring worked out by hand, the standard
variant's shape, and the network's inputs and outputs in the images' own pixels."""
from __future__ import annotations

import math

import pytest
import torch

from tests.float32 import approx32
from trainers.modeling.backbones import build_backbone
from trainers.proposer.config import ProposalOutputConfig, ProposerNetworkConfig
from trainers.proposer.network import ProposalNetwork
from trainers.proposer.rpn import CenternessRpn, ScoredRpn, build_rpn

GT = torch.tensor([[0.0, 0.0, 16.0, 16.0]])


@pytest.fixture()
def centerness_rpn() -> CenternessRpn:
    return build_rpn(build_backbone("tiny"), ProposerNetworkConfig())


def test_oln_rpn_losses_by_hand(centerness_rpn):
    anchors = [torch.tensor([[0.0, 0.0, 16.0, 16.0],  # IoU 1: box positive; centerness 1
                             [4.0, 0.0, 20.0, 16.0],  # IoU 0.6: ignored by the box sampler, centerness positive
                             [40.0, 40.0, 56.0, 56.0]])]  # IoU 0: negative for both
    objectness = torch.zeros(3, 1)  # sigmoid 0.5 everywhere
    codes = torch.zeros(3, 4)  # each side at one anchor size from the centre: [-8, -8, 24, 24] for anchor 0
    losses = centerness_rpn.losses(objectness, codes, anchors, [{"boxes": GT}])
    # The box sampler draws anchors 0 (positive) and 2 (negative): both losses are divided by 2.
    # Centerness of anchor 1's centre (12, 8): l, r = 12, 4; t, b = 8, 8 → sqrt(4/12) ≈ 0.577.
    assert losses["loss_rpn_centerness"].item() == approx32((0.5 + abs(0.5 - math.sqrt(1 / 3)) + 0.5) / 2)
    # IoU of [-8, -8, 24, 24] with the box: 256 / 1024; IoU loss x 10 (OLN).
    assert losses["loss_rpn_box"].item() == approx32(10 * (1 - 0.25) / 2)


def test_oln_rpn_skips_box_regression_of_positives_centred_outside_their_box(centerness_rpn):
    wide = torch.tensor([[0.0, 0.0, 40.0, 4.0]])  # a thin box; the only anchor overlapping it is centred below it
    anchors = [torch.tensor([[0.0, 0.0, 40.0, 12.0], [100.0, 100.0, 110.0, 110.0]])]
    losses = centerness_rpn.losses(torch.zeros(2, 1), torch.zeros(2, 4), anchors, [{"boxes": wide}])
    # Anchor 0 is a low-quality match (IoU 1/3, the box's best): positive, but its centre (20, 6) is outside.
    assert losses["loss_rpn_box"].item() == 0.0
    assert losses["loss_rpn_centerness"].item() == approx32((0.5 + 0.5) / 2)  # target 0 for both


def _box_head_with_constant_outputs(network: ProposalNetwork, score_logit: float):
    predictor = network.box_head.roi_heads.box_predictor
    with torch.no_grad():
        for layer in (predictor.score, predictor.deltas):
            layer.weight.zero_()
            layer.bias.zero_()
        predictor.score.bias.fill_(score_logit)
    return network.box_head


def _features(size: int = 128) -> dict[str, torch.Tensor]:
    return {str(level): torch.randn(1, 64, size // 4 >> level, size // 4 >> level) for level in range(3)}


def test_oln_box_head_learns_the_iou_of_each_positive_roi():
    network = ProposalNetwork.from_config(ProposerNetworkConfig())
    head = _box_head_with_constant_outputs(network, 0.0)  # IoU score sigmoid(0) = 0.5, deltas 0
    proposals = [torch.tensor([[0.0, 0.0, 16.0, 12.0],  # IoU 0.75 with GT: positive
                               [60.0, 60.0, 90.0, 90.0]])]  # negative
    losses = head.losses(_features(), proposals, [GT], [(128, 128)])
    # Sampled: the two proposals and the ground truth itself (added as a proposal): 3 RoIs, 2 positive.
    assert losses["loss_box_iou_score"].item() == approx32((abs(0.5 - 0.75) + abs(0.5 - 1.0)) / 3)
    # Delta targets of [0, 0, 16, 12] → GT with weights (10, 10, 5, 5): dy = 10 · 2/12, dh = 5 · ln(16/12).
    assert losses["loss_box"].item() == approx32((10 * 2 / 12 + 5 * math.log(16 / 12)) / 3)


def test_oln_score_is_the_geometric_mean_of_rpn_centerness_and_box_iou_then_nms_and_top_k():
    network = ProposalNetwork.from_config(ProposerNetworkConfig())
    head = _box_head_with_constant_outputs(network, math.log(0.8 / 0.2))  # box IoU score 0.8
    proposals = [torch.tensor([[0.0, 0.0, 20.0, 20.0], [1.0, 1.0, 21.0, 21.0], [50.0, 50.0, 70.0, 90.0],
                               [90.0, 10.0, 100.0, 30.0]])]
    rpn_scores = [torch.tensor([0.2, 0.45, 0.8, 0.05])]
    (boxes, scores), = head.detect(_features(), proposals, rpn_scores, [(128, 128)],
                                   ProposalOutputConfig(top_k=2, nms_thresh=0.7))
    # Box 1 suppresses box 0 (IoU 0.82); the best two of the rest are boxes 2 and 1.
    assert scores.tolist() == approx32([math.sqrt(0.8 * 0.8), math.sqrt(0.45 * 0.8)])
    assert boxes.tolist() == [approx32([50.0, 50.0, 70.0, 90.0]), approx32([1.0, 1.0, 21.0, 21.0])]


def test_standard_variant_is_torchvision_rpn_with_three_anchors_and_a_softmax_object_score():
    network = ProposalNetwork.from_config(ProposerNetworkConfig(objectness="classification"))
    assert type(network.rpn) is ScoredRpn and network.rpn.head.cls_logits.out_channels == 3
    assert network.box_head.roi_heads.box_predictor.score.out_features == 2
    head = _box_head_with_constant_outputs(network, 0.0)
    with torch.no_grad():
        head.roi_heads.box_predictor.score.bias.copy_(torch.tensor([0.0, math.log(3.0)]))  # softmax: 0.25, 0.75
    (_, scores), = head.detect(_features(), [torch.tensor([[0.0, 0.0, 20.0, 20.0]])], [torch.tensor([0.1])],
                               [(128, 128)], ProposalOutputConfig())
    assert scores.tolist() == approx32([0.75])  # the RPN score plays no part


@pytest.mark.parametrize("objectness, names", [
    ("centerness", {"loss_rpn_centerness", "loss_rpn_box", "loss_box_iou_score", "loss_box"}),
    ("classification", {"loss_rpn_objectness", "loss_rpn_box", "loss_box_classification", "loss_box"}),
])
def test_losses_reach_every_head_and_proposals_come_back_in_image_pixels(objectness, names):
    torch.manual_seed(0)
    network = ProposalNetwork.from_config(ProposerNetworkConfig(objectness=objectness))
    images = [torch.rand(3, 96, 200), torch.rand(3, 256, 180)]
    boxes = [torch.tensor([[10.0, 10.0, 60.0, 50.0], [100.0, 20.0, 150.0, 90.0]]), torch.tensor([[30., 40, 120, 200]])]
    losses = network.losses(images, boxes)
    assert set(losses) == names and all(torch.isfinite(v) for v in losses.values())
    sum(losses.values()).backward()
    for module in (network.backbone, network.rpn.head, network.box_head):
        assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in module.parameters())
    network.eval()
    with torch.inference_mode():
        found = network.propose(images, ProposalOutputConfig(top_k=7))
    for (boxes_out, scores), image in zip(found, images):
        height, width = image.shape[-2:]
        assert boxes_out.shape == (7, 4) and scores.shape == (7,)
        assert boxes_out[:, 2].max() <= width + 1e-3 and boxes_out[:, 3].max() <= height + 1e-3
        assert torch.all(scores[:-1] >= scores[1:]) and scores.min() >= 0 and scores.max() <= 1


def test_proposals_are_in_the_pixels_of_the_image_as_given():
    torch.manual_seed(0)
    network = ProposalNetwork.from_config(ProposerNetworkConfig()).eval()
    small = torch.rand(3, 96, 128)  # the network's input size (128 px)
    large = small.repeat_interleave(2, dim=1).repeat_interleave(2, dim=2)  # the same picture at 192 x 256
    with torch.inference_mode():
        (small_boxes, small_scores), (large_boxes, large_scores) = network.propose([small, large],
                                                                                   ProposalOutputConfig(top_k=20))
    # Halving `large` bilinearly gives `small` back, so the network sees one picture twice; boxes scale by 2.
    torch.testing.assert_close(large_scores, small_scores, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(large_boxes, 2 * small_boxes, rtol=1e-4, atol=1e-3)
