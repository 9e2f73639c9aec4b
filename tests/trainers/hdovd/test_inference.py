"""Score ensemble (eq. 12), detection selection, and the detect() path on the tiny detector."""
import math

import pytest
import torch

from trainers.hdovd.config import DetectorConfig, InferenceConfig
from trainers.hdovd.detectors import build_detector
from trainers.hdovd.inference import (
    detect,
    distillation_probabilities,
    ensemble_scores,
    select_detections,
)
from tests.float32 import approx32


def test_ensemble_uses_beta1_for_base_and_beta2_for_novel():
    p_cls = torch.tensor([[0.64, 0.64]])
    p_dis = torch.tensor([[0.25, 0.25]])
    scores = ensemble_scores(p_cls, p_dis, torch.tensor([False, True]), beta_base=0.5, beta_novel=0.65)
    assert scores[0, 0].item() == approx32(0.8 * 0.5)  # 0.64^0.5 · 0.25^0.5
    assert scores[0, 1].item() == approx32(0.64**0.35 * 0.25**0.65)


def test_ensemble_extremes_pick_one_source():
    p_cls, p_dis = torch.tensor([[0.9]]), torch.tensor([[0.2]])
    assert ensemble_scores(p_cls, p_dis, torch.tensor([False]), 0.0, 1.0).item() == approx32(0.9)
    assert ensemble_scores(p_cls, p_dis, torch.tensor([True]), 0.0, 1.0).item() == approx32(0.2)


def test_distillation_probability_is_sigmoid_of_scaled_cosine():
    queries, text = torch.eye(2), torch.tensor([[1.0, 0.0]])
    assert distillation_probabilities(queries, text, 20.0).squeeze(1).tolist() == approx32(
        [torch.sigmoid(torch.tensor(20.0)).item(), 0.5])


def test_softmax_distillation_probability_normalises_over_classes():
    # cosines 0.66 and 0.35 (the ShapesOV teacher's right and wrong class): the sigmoid saturates on both,
    # the softmax keeps them apart: e^(20·0.66) / (e^(20·0.66) + e^(20·0.35)) = 1 / (1 + e^-6.2).
    queries = torch.tensor([[1.0, 0.0]])
    text = torch.tensor([[0.66, (1 - 0.66**2) ** 0.5], [0.35, (1 - 0.35**2) ** 0.5]])
    sigmoid = distillation_probabilities(queries, text, 20.0, "sigmoid")[0]
    assert sigmoid.min().item() > 0.999
    softmax = distillation_probabilities(queries, text, 20.0, "softmax")[0]
    assert softmax.tolist() == approx32([1 / (1 + math.exp(-6.2)), 1 / (1 + math.exp(6.2))])


def test_unknown_distillation_probability_is_refused_by_name():
    with pytest.raises(ValueError, match="distill_probability"):
        distillation_probabilities(torch.eye(2), torch.eye(2), 20.0, "tanh")


def test_select_detections_thresholds_nms_per_class_and_top_k():
    boxes = torch.tensor([[0.0, 0, 10, 10], [1.0, 0, 11, 10], [50.0, 50, 60, 60]])
    scores = torch.tensor([[0.9, 0.01], [0.8, 0.7], [0.3, 0.02]])
    result = select_detections(boxes, scores, InferenceConfig(score_threshold=0.05))
    # class 0: box 1 suppressed by box 0 (IoU 0.82); class 1: box 1 survives (NMS is per class)
    kept = sorted(zip(result["labels"].tolist(), result["scores"].tolist()))
    assert kept == [(0, approx32(0.3)), (0, approx32(0.9)), (1, approx32(0.7))]
    top = select_detections(boxes, scores, InferenceConfig(score_threshold=0.05, detections_per_image=1))
    assert top["scores"].tolist() == [approx32(0.9)]


def test_detect_returns_boxes_in_input_pixels_and_restores_training_mode():
    torch.manual_seed(0)
    detector = build_detector(DetectorConfig(embed_dim=8))
    detector.train()
    text = torch.nn.functional.normalize(torch.randn(3, 8), dim=-1)
    images = [torch.rand(3, 96, 160), torch.rand(3, 128, 128)]
    results = detect(detector, images, text, torch.tensor([False, False, True]), InferenceConfig(score_threshold=0.0))
    assert detector.training
    assert len(results) == 2
    for result, image in zip(results, images):
        assert 0 < len(result["boxes"]) <= 100
        assert result["boxes"][:, 2].max() <= image.shape[2] + 1e-3 and result["boxes"][:, 3].max() <= image.shape[1] + 1e-3
        assert result["labels"].max() < 3 and (result["scores"] >= 0).all()
