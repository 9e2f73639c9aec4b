"""The Open-Det query detector as an HD-OVD detector (DETECTORS["query_detr"]): the contract's outputs, the HD-OVD
criterion's forward and backward, and predictions in image pixels."""
import torch

from tests.trainers.hdovd.test_detector import D, class_vectors, detector_pseudo, make_batch
from trainers.hdovd.config import DetectorConfig, HdovdLossConfig
from trainers.hdovd.detectors import BACKGROUND, build_detector
from trainers.hdovd.batch_losses import hdovd_losses
from trainers.hdovd.criterion import HdovdCriterion
from tests.trainers.training_helpers import step_losses, tiny_config, train_run


def _detector():
    torch.manual_seed(0)
    return build_detector(DetectorConfig(name="query_detr", embed_dim=D))


def test_contract_outputs_on_two_images():
    detector = _detector()
    batch = make_batch([0, 1])
    output = detector(batch["images"], batch["targets"], detector_pseudo(batch), class_vectors()[:2])
    assert output.region_queries.shape == (6, D)  # 2 images × (2 ground-truth + 1 pseudo)
    assert torch.allclose(output.region_queries.norm(dim=-1), torch.ones(6))
    assert output.region_is_pseudo.tolist() == [False, False, True] * 2
    assert output.image_queries.shape == (2, D)
    assert output.class_logits.shape == (len(output.class_targets), 3)  # 2 base + 1 pseudo column
    targets = output.class_targets.tolist()
    # Each image: its two base boxes and one pseudo box (column 2) each own one query; the rest is background.
    assert sorted(t for t in targets if t != BACKGROUND) == [0, 0, 1, 1, 2, 2]
    pseudo_rows = output.class_targets == 2
    assert torch.equal(output.matched_pseudo_weights[pseudo_rows], torch.tensor([2.0, 2.0]))
    assert output.matched_pseudo_weights[~pseudo_rows].isnan().all()


def test_pseudo_boxes_are_background_without_pseudo_classes():
    detector = _detector()
    batch = make_batch([0, 1])
    output = detector(batch["images"], batch["targets"], detector_pseudo(batch), class_vectors()[:2],
                      classify_pseudo=False)
    assert output.class_logits.shape[1] == 2 and sorted(set(output.class_targets.tolist())) == [BACKGROUND, 0, 1]
    assert output.region_queries.shape == (6, D)  # pseudo boxes are still distilled


def test_hdovd_losses_backward_and_predict():
    detector = _detector()
    batch = make_batch([0, 1])
    losses = hdovd_losses(detector, HdovdCriterion(HdovdLossConfig(), D), batch, class_vectors()[:2])
    assert {"loss_l1", "loss_giou", "loss_binary", "loss_cls", "loss_ckd_instance"} <= set(losses)
    assert all(torch.isfinite(v) for v in losses.values())
    sum(losses.values()).backward()
    assert detector.query_projection.weight.grad.abs().sum() > 0
    assert detector.detr.encoder_score_head.weight.grad.abs().sum() > 0
    predictions = detector.predict([torch.rand(3, 96, 128)], class_vectors())
    assert predictions[0].class_probs.shape[1] == 3
    assert (predictions[0].boxes[:, [1, 3]] <= 96 + 1e-4).all() and (predictions[0].boxes >= -1e-4).all()


def test_hdovd_trains_with_the_query_detector_through_the_loop(tiny_store, tmp_path):  # noqa: F811
    train_run(tiny_config(tiny_store, tmp_path / "run", max_steps=2, **{"hdovd.detector.name": "query_detr"}))
    assert sorted(step_losses(tmp_path / "run")) == [1, 2]
