"""HD-OVD's Faster R-CNN against transcriptions of the released functions (tests/trainers/hdovd/released_hdovd.py) on
hand-made inputs, two images with unequal box counts: which pseudo boxes the RPN and the RoI head read, the distilled
query of each box, the ensemble of eq. 12 with the background column, and the released constants of the presets."""
import dataclasses

import torch
import torch.nn.functional as F

from tests.float32 import approx32
from tests.trainers.hdovd.released_hdovd import released_distilled_queries, released_ensemble, released_pseudo_boxes
from trainers.hdovd.config import DetectorConfig, HdovdLossConfig, HdovdRunConfig
from trainers.hdovd.detectors import build_detector
from trainers.hdovd.faster_rcnn import batch_region_rows, mean_positive_queries, pseudo_box_rows
from trainers.hdovd.inference import ensemble_scores
from trainers.methods import load_run_config

GT = [torch.tensor([[0.0, 0, 50, 50]]), torch.tensor([[10.0, 10, 90, 90], [5.0, 5, 45, 60]])]
PROPOSALS = [
    # image 0: 33 × 40 counts, 32 × 40 does not (strictly wider than 32), 40 × 30 does not, then six that count
    torch.tensor([[0.0, 0, 33, 40], [0, 0, 32, 40], [0, 0, 40, 30]] + [[i, i, i + 40.0, i + 40] for i in range(6)]),
    torch.tensor([[0.0, 0, 20, 20], [1, 1, 60, 70]]),
]


def test_pseudo_boxes_over_32_px_are_rpn_targets_and_the_first_five_of_them_are_read():
    rpn_gt, roi_pseudo = released_pseudo_boxes(GT, PROPOSALS)
    for gt, proposals, expected_rpn, expected_roi in zip(GT, PROPOSALS, rpn_gt, roi_pseudo):
        counted, read = pseudo_box_rows(proposals, 32.0, 5)
        assert torch.equal(torch.cat([gt, proposals[counted]]), expected_rpn)
        assert torch.equal(proposals[read], expected_roi)
    assert [len(r) for r in rpn_gt] == [1 + 7, 2 + 1] and [len(r) for r in roi_pseudo] == [5, 1]


def test_the_detector_hands_the_rpn_every_counted_pseudo_box():
    detector = build_detector(DetectorConfig(embed_dim=8, min_size=100, max_size=100))
    seen = []
    detector.rcnn.rpn.register_forward_pre_hook(lambda module, args: seen.append(args[2]))
    pseudo = [{"boxes": p, "label_ids": torch.arange(len(p)), "weights": torch.ones(len(p)),
               "text_embeddings": F.normalize(torch.randn(len(p), 8), dim=-1)} for p in PROPOSALS]
    targets = [{"boxes": gt, "labels": torch.zeros(len(gt), dtype=torch.long)} for gt in GT]
    output = detector([torch.rand(3, 100, 100), torch.rand(3, 100, 100)], targets, pseudo, torch.eye(8)[:2])
    rpn_gt, _ = released_pseudo_boxes(GT, PROPOSALS)
    assert [torch.equal(t["boxes"], expected) for t, expected in zip(seen[0], rpn_gt)] == [True, True]
    # Distilled rows name the batch's region rows: image 0 holds rows 0..9 (1 + 9), image 1 rows 10..13 (2 + 2).
    assert set(output.region_rows.tolist()) <= {0, 1, 4, 5, 6, 7, 10, 11, 13}
    without = dataclasses.replace(DetectorConfig(embed_dim=8, min_size=100, max_size=100), pseudo_boxes_to_rpn=False)
    seen.clear()
    detector = build_detector(without)
    detector.rcnn.rpn.register_forward_pre_hook(lambda module, args: seen.append(args[2]))
    detector([torch.rand(3, 100, 100), torch.rand(3, 100, 100)], targets, pseudo, torch.eye(8)[:2])
    assert [torch.equal(t["boxes"], gt) for t, gt in zip(seen[0], GT)] == [True, True]


def test_read_pseudo_boxes_map_to_their_rows_of_the_batch():
    _, read0 = pseudo_box_rows(PROPOSALS[0], 32.0, 5)
    _, read1 = pseudo_box_rows(PROPOSALS[1], 32.0, 5)
    rows, is_pseudo = batch_region_rows([1, 2], [9, 2], [read0, read1])
    assert rows.tolist() == [0, 1, 4, 5, 6, 7, 10, 11, 13]
    assert is_pseudo.tolist() == [False] + [True] * 5 + [False, False, True]


def test_distilled_query_is_the_normalised_mean_of_the_positive_rois_of_each_box():
    generator = torch.Generator().manual_seed(0)
    # image 0: 3 boxes, 4 positive RoIs (box 1 has none) and 2 negatives; image 1: 2 boxes, 3 positives, 1 negative.
    features = [torch.randn(6, 5, generator=generator), torch.randn(4, 5, generator=generator)]
    assigned = [torch.tensor([0, 2, 0, 2]), torch.tensor([1, 1, 0])]
    expected, which = released_distilled_queries(features, assigned, [3, 2])
    labels = [torch.tensor([1, 1, 1, 1, 0, 0]), torch.tensor([4, 4, 2, 0])]
    matched = [torch.cat([a, torch.zeros(n, dtype=torch.long)]) for a, n in zip(assigned, (2, 1))]
    ours_input = torch.cat(features).requires_grad_(True)
    queries, boxes = mean_positive_queries(ours_input, labels, matched, [3, 2])
    assert boxes.tolist() == [0, 2, 3, 4] and which == [(0, 0), (0, 2), (1, 0), (1, 1)]
    assert queries.flatten().tolist() == approx32(expected.flatten().tolist())
    # The gradient reaches each positive RoI through its box's mean, as the released loop's does.
    weights = torch.randn_like(expected)
    (queries * weights).sum().backward()
    released_input = [f.clone().requires_grad_(True) for f in features]
    released, _ = released_distilled_queries(released_input, assigned, [3, 2])
    (released * weights).sum().backward()
    released_grad = torch.cat([f.grad for f in released_input])
    assert ours_input.grad.flatten().tolist() == approx32(released_grad.flatten().tolist())


def test_ensemble_keeps_the_background_column_and_renormalises_as_released():
    generator = torch.Generator().manual_seed(1)
    softmax = torch.softmax(torch.randn(4, 5, generator=generator), dim=1)  # 4 classes + background
    distill = torch.rand(4, 4, generator=generator)
    is_novel = torch.tensor([False, True, False, True])
    expected = released_ensemble(softmax, distill, torch.tensor([0, 2]), torch.tensor([1, 3]))
    ours = ensemble_scores(softmax[:, :-1], distill, is_novel, 0.25, 0.45, background_probs=softmax[:, -1])
    assert ours.flatten().tolist() == approx32(expected[:, :-1].flatten().tolist())
    # Without a background column (eq. 4's sigmoid classifier) eq. 12 is applied as printed.
    printed = ensemble_scores(softmax[:, :-1], distill, is_novel, 0.25, 0.45)
    assert printed[0, 1].item() == approx32((softmax[0, 1] ** 0.55 * distill[0, 1] ** 0.45).item())


def test_the_ov_coco_preset_is_the_released_faster_rcnn_recipe():
    config = load_run_config("configs/ov_coco/hdovd.yaml")
    assert isinstance(config, HdovdRunConfig)
    loss, inference, detector = config.hdovd.loss, config.hdovd.inference, config.hdovd.detector
    # myfasterrcnn_r50_1x_coco.py: loss_visual_skd 0.1, loss_visual_rkd 1.0; StandardRoIHead: loss_img_distill 0.1.
    assert (loss.alpha_instance_contrastive, loss.alpha_instance_relational, loss.alpha_image_contrastive) == (
        0.1, 1.0, 0.1)
    # StandardRoIHead's alpha 0.25 / beta 0.45 (the released config does not set them), p_dis a sigmoid at skd_tau.
    assert (inference.beta_base, inference.beta_novel, inference.distill_probability) == (0.25, 0.45, "sigmoid")
    assert (loss.classification_variant, loss.instance_contrastive_variant, loss.rkd_variant) == (
        "weighted_softmax", "info_nce", "released")
    assert (detector.min_pseudo_box_side, detector.max_pseudo_boxes, detector.pseudo_boxes_to_rpn) == (32.0, 5, True)
    # novel_obj_queue_dict: 2048 region and 512 image embeddings, the dataclass defaults too.
    assert (HdovdLossConfig().region_queue_length, HdovdLossConfig().image_queue_length) == (2048, 512)
    paper = load_run_config(["configs/ov_coco/hdovd.yaml", "configs/variants/hdovd_paper_ov_coco.yaml"]).hdovd
    assert (paper.loss.alpha_instance_contrastive, paper.loss.alpha_instance_relational,
            paper.loss.alpha_image_contrastive) == (0.5, 5.0, 0.2)  # HD-OVD Sec. IV-B
    assert (paper.inference.beta_base, paper.inference.beta_novel) == (0.35, 0.65)
