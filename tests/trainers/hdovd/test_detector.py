"""The Faster R-CNN open-vocabulary detector with the tiny CPU backbone, on scenes drawn here with PIL."""
import random

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw

from trainers.data.batching import DetectorInputs
from trainers.hdovd.config import DetectorConfig, HdovdLossConfig
from trainers.hdovd.detectors import BACKGROUND, build_detector
from trainers.hdovd.batch_losses import hdovd_losses, with_class_weights
from trainers.hdovd.criterion import HdovdCriterion
from trainers.pseudo_weights import PseudoBoxWeighting
from tests.float32 import approx32

D = 16  # a small stand-in for the CLIP width
SIZE = 128
# The scenes' shapes are 26–40 px: every pseudo box counts (the released > 32 px rule is tested on its own).
SMALL = DetectorConfig(embed_dim=D, min_pseudo_box_side=0)


def draw_scene(seed: int):
    """A rectangle (base class 0), an ellipse (base class 1) and a triangle (pseudo box, label id 7)."""
    rng = random.Random(seed)
    image = Image.new("RGB", (SIZE, SIZE), tuple(rng.randint(90, 140) for _ in range(3)))
    draw = ImageDraw.Draw(image)
    boxes = []
    for column in range(3):
        x0, y0 = column * 42 + rng.randint(0, 6), rng.randint(10, 70)
        boxes.append([x0, y0, x0 + rng.randint(26, 34), y0 + rng.randint(26, 40)])
    draw.rectangle(boxes[0], fill=(220, 40, 40))
    draw.ellipse(boxes[1], fill=(40, 200, 60))
    x0, y0, x1, y1 = boxes[2]
    draw.polygon([(x0, y1), (x1, y1), ((x0 + x1) / 2, y0)], fill=(40, 60, 220))
    pixels = torch.from_numpy(np.asarray(image).copy()).permute(2, 0, 1).float() / 255
    return pixels, torch.tensor(boxes, dtype=torch.float32)


def class_vectors():
    return F.normalize(torch.randn(3, D, generator=torch.Generator().manual_seed(0)), dim=-1)


def make_batch(seeds) -> DetectorInputs:
    """The batch of trainers.hdovd.detectors' contract: CLIP-like embeddings are the class vectors plus noise."""
    vectors, noise = class_vectors(), torch.Generator().manual_seed(1)
    images, targets, pseudo, regions = [], [], [], []
    for seed in seeds:
        image, boxes = draw_scene(seed)
        images.append(image)
        targets.append({"boxes": boxes[:2], "labels": torch.tensor([0, 1])})
        pseudo.append({"boxes": boxes[2:], "label_ids": torch.tensor([0]), "scores": torch.tensor([2.0]),
                       "cos": torch.tensor([0.4]), "proposal_scores": torch.tensor([0.9]),
                       "text_embeddings": vectors[2:]})
        regions.append(F.normalize(vectors + 0.1 * torch.randn(3, D, generator=noise), dim=-1))
    image_embeddings = F.normalize(torch.stack([e.mean(0) for e in regions]), dim=-1)
    return DetectorInputs(images, targets, pseudo, torch.cat(regions), image_embeddings, ["triangle"])


def detector_pseudo(batch):
    """The batch's pseudo boxes as the detector reads them: their stored score as the class weight (as_stored)."""
    return [with_class_weights(boxes, PseudoBoxWeighting()) for boxes in batch.pseudo]


def test_forward_backward_gives_finite_losses_and_aligned_queries():
    torch.manual_seed(0)
    detector = build_detector(SMALL)
    batch = make_batch([0, 1])
    output = detector(batch.images, batch.targets, detector_pseudo(batch), class_vectors()[:2])
    # Every box is added as a proposal of itself, so each has a positive RoI and is distilled.
    assert output.region_queries.shape == (6, D)  # 2 images × (2 ground-truth + 1 pseudo)
    assert output.region_rows.tolist() == list(range(6))
    assert torch.allclose(output.region_queries.norm(dim=-1), torch.ones(6))
    assert output.region_is_pseudo.tolist() == [False, False, True] * 2
    assert output.image_queries.shape == (2, D)
    assert output.class_logits.shape[1] == 3  # 2 base columns + 1 pseudo column
    pseudo_rows = output.class_targets == 2
    assert pseudo_rows.any(), "the pseudo box is added as a proposal, so some RoI must be matched to it"
    assert torch.equal(~torch.isnan(output.matched_pseudo_weights), pseudo_rows)
    criterion = HdovdCriterion(HdovdLossConfig(), D)
    losses = criterion(output, batch.region_embeddings, batch.image_embeddings)
    assert all(torch.isfinite(v) for v in losses.values()), losses
    sum(losses.values()).backward()
    stem = detector.rcnn.backbone.body.stem[0].weight.grad
    assert stem is not None and torch.isfinite(stem).all() and stem.abs().sum() > 0


def test_pseudo_boxes_can_be_left_out_of_the_classifier():
    torch.manual_seed(0)
    detector = build_detector(SMALL)
    batch = make_batch([0])
    output = detector(batch.images, batch.targets, detector_pseudo(batch), class_vectors()[:2],
                      classify_pseudo=False)
    assert output.class_logits.shape[1] == 2
    assert set(output.class_targets.tolist()) <= {0, 1, BACKGROUND}
    assert torch.isnan(output.matched_pseudo_weights).all()
    assert output.region_queries.shape == (3, D)  # still matched by RoIs, so still distilled


def test_pseudo_boxes_never_supervise_box_regression():
    from trainers.hdovd.faster_rcnn import _class_agnostic_box_loss

    deltas = torch.zeros(3, 4)
    targets = torch.tensor([[1.0, 0, 0, 0], [5.0, 5, 5, 5], [9.0, 9, 9, 9]])
    labels = torch.tensor([1, 3, 0])  # base, pseudo (label > num_base = 2), background
    expected = (1.0 - 0.5 / 9) / 3  # smooth-L1 (β = 1/9) of the base row only, over 3 sampled RoIs
    assert _class_agnostic_box_loss(deltas, targets, labels, num_base=2).item() == approx32(expected)


def test_no_pseudo_box_read_keeps_the_rows_of_the_ground_truth():
    import dataclasses

    torch.manual_seed(0)
    detector = build_detector(dataclasses.replace(SMALL, max_pseudo_boxes=0))
    batch = make_batch([0, 1])
    output = detector(batch.images, batch.targets, detector_pseudo(batch), class_vectors()[:2])
    assert output.region_rows.tolist() == [0, 1, 3, 4] and not output.region_is_pseudo.any()


def test_missing_backbone_checkpoint_names_the_config_key(tmp_path):
    with pytest.raises(FileNotFoundError, match="hdovd.detector.backbone_weights"):
        build_detector(DetectorConfig(backbone="resnet50", backbone_weights=str(tmp_path / "resnet50.pth")))


def test_a_few_training_steps_lower_the_loss():
    torch.manual_seed(0)
    detector = build_detector(SMALL)
    # No queues here: a filling queue adds negatives and raises the contrastive terms step by step.
    criterion = HdovdCriterion(HdovdLossConfig(region_queue_length=0, image_queue_length=0), D)
    optimizer = torch.optim.AdamW(detector.parameters(), lr=1e-3)
    batch, base_text = make_batch([0, 1, 2, 3]), class_vectors()[:2]
    totals = []
    for _ in range(8):
        losses = hdovd_losses(detector, criterion, batch, base_text)
        total = sum(losses.values())
        optimizer.zero_grad()
        total.backward()
        optimizer.step()
        totals.append(total.item())
    assert all(np.isfinite(totals))
    assert np.mean(totals[-2:]) < 0.5 * np.mean(totals[:2]), totals


def test_a_batch_whose_region_rows_do_not_match_its_boxes_is_refused():
    import dataclasses

    detector = build_detector(SMALL)
    criterion = HdovdCriterion(HdovdLossConfig(), D).eval()
    batch = make_batch([0, 1])
    with pytest.raises(ValueError, match="rows must be"):
        hdovd_losses(detector, criterion, dataclasses.replace(batch, region_embeddings=batch.region_embeddings[:5]),
                     class_vectors()[:2])


def test_resnet50_backbone_runs_and_refuses_a_foreign_checkpoint(tmp_path):
    import dataclasses

    from safetensors.torch import save_file

    small = DetectorConfig(backbone="resnet50", embed_dim=D, min_size=64, max_size=64, rpn_pre_nms_top_n_train=50,
                           rpn_post_nms_top_n_train=20, box_batch_size_per_image=16, representation_size=64)
    torch.manual_seed(0)
    output = build_detector(small)([torch.rand(3, 64, 64)], [{"boxes": torch.tensor([[5.0, 5, 40, 40]]),
                                                              "labels": torch.tensor([0])}],
                                   [{"boxes": torch.zeros(0, 4), "label_ids": torch.zeros(0, dtype=torch.long),
                                     "weights": torch.zeros(0), "text_embeddings": torch.zeros(0, D)}],
                                   class_vectors()[:2])
    assert output.region_queries.shape == (1, D)
    assert all(torch.isfinite(v) for v in output.box_losses.values())
    foreign = tmp_path / "not_resnet.safetensors"
    save_file({"conv.weight": torch.zeros(2, 2)}, str(foreign))
    with pytest.raises(ValueError, match="not a torchvision ResNet-50 state dict"):
        build_detector(dataclasses.replace(small, backbone_weights=str(foreign)))


def test_class_weights_of_pseudo_boxes_follow_the_criterions_weighting():
    pseudo = {"boxes": torch.zeros(2, 4), "label_ids": torch.tensor([0, 1]), "scores": torch.tensor([0.65, 1.3]),
              "cos": torch.tensor([0.31, 0.9]), "text_embeddings": torch.zeros(2, D)}
    released = with_class_weights(pseudo, PseudoBoxWeighting("as_stored"))
    assert set(released) == {"boxes", "label_ids", "weights", "text_embeddings"}
    assert released["weights"].tolist() == approx32([0.65, 1.3])
    # eq. 5 with μ 0.31, σ 0.026: σ(0) = 0.5 and σ((0.9 − 0.31)/0.026) = σ(22.7) ≈ 1 − 1.4e-10.
    eq5 = with_class_weights(pseudo, PseudoBoxWeighting("eq5", 0.31, 0.026))
    assert eq5["weights"].tolist() == pytest.approx([0.5, 1.0], abs=1e-6)
