"""Novel-class-aware classification (eq. 4–5) and the released weighted-softmax variant, by hand."""
import math

import pytest
import torch

from trainers.hdovd.detector_base import BACKGROUND
from trainers.hdovd.losses.classification import (
    roi_class_weights,
    sigmoid_focal_classification_loss,
    weighted_softmax_classification_loss,
)
from tests.float32 import approx32
from tests.focal_by_hand import ALPHA, GAMMA, focal


LOGITS = torch.tensor([[2.0, -1.0], [0.0, 0.0]])
TARGETS = torch.tensor([0, BACKGROUND])
WEIGHTS = torch.tensor([0.5, 1.0])  # row 0 matched to a pseudo box with α = 0.5


def test_sigmoid_focal_by_hand():
    row0 = 0.5 * (focal(2.0, True) + focal(-1.0, False))
    row1 = 2 * focal(0.0, False)
    loss = sigmoid_focal_classification_loss(LOGITS, None, TARGETS, WEIGHTS, ALPHA, GAMMA)
    assert loss.item() == approx32((row0 + row1) / 1)  # one foreground RoI


def test_sigmoid_focal_gradient_signs():
    logits = LOGITS.clone().requires_grad_()
    sigmoid_focal_classification_loss(logits, None, TARGETS, WEIGHTS, ALPHA, GAMMA).backward()
    assert logits.grad[0, 0] < 0  # raise the target logit
    assert logits.grad[0, 1] > 0 and (logits.grad[1] > 0).all()  # lower every non-target logit


def test_weighted_softmax_by_hand():
    background = torch.tensor([0.5, 1.0])  # background is the last softmax column
    ce0 = -math.log(math.exp(2) / (math.exp(2) + math.exp(-1) + math.exp(0.5)))
    ce1 = -math.log(math.e / (1 + 1 + math.e))
    loss = weighted_softmax_classification_loss(LOGITS, background, TARGETS, WEIGHTS, ALPHA, GAMMA)
    assert loss.item() == approx32((0.5 * ce0 + 1.0 * ce1) / 2)


def test_weighted_softmax_gradient_signs():
    logits = LOGITS.clone().requires_grad_()
    background = torch.tensor([0.5, 1.0], requires_grad=True)
    weighted_softmax_classification_loss(logits, background, TARGETS, WEIGHTS, ALPHA, GAMMA).backward()
    assert logits.grad[0, 0] < 0 and background.grad[0] > 0
    assert background.grad[1] < 0 and (logits.grad[1] > 0).all()


def test_weighted_softmax_without_background_names_the_config_key():
    with pytest.raises(ValueError, match="classifier head of that loss"):
        weighted_softmax_classification_loss(LOGITS, None, TARGETS, WEIGHTS, ALPHA, GAMMA)


def test_roi_weights_are_the_matched_pseudo_weight_or_one():
    matched = torch.tensor([float("nan"), 0.25, 1.25])
    assert torch.equal(roi_class_weights(matched, True), torch.tensor([1.0, 0.25, 1.25]))
    assert torch.equal(roi_class_weights(matched, False), torch.ones(3))  # Table V without "Wei."
