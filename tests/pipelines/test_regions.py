import numpy as np

from pipelines.coco import Annotation, ImageRecord
from pipelines.extract_config import RegionsSection
from pipelines.regions import plan_regions
from tests.float32 import approx32

IMAGE = ImageRecord(1, "a.jpg", 100, 80)


def _ann(k, x, y, w, h, category=1, crowd=False):
    return Annotation(k, 1, category, (x, y, w, h), crowd)


def test_gt_then_proposals_then_whole_image_with_reasons():
    annotations = (_ann(10, 10, 10, 20, 20), _ann(11, 50, 50, 10, 10, crowd=True), _ann(12, 5, 5, 0.5, 30),
                   _ann(13, 60, 5, 30, 30, category=2))
    proposals = np.array([
        [10, 10, 30, 30, 0.99],  # the base GT itself: overlaps base
        [60, 40, 90, 70, 0.9],  # free
        [61, 41, 91, 71, 0.8],  # duplicate of the previous: NMS
        [0, 60, 2, 79, 0.7],  # 2 px wide: too small
        [np.nan, 0, 5, 5, 0.6],  # bad
        [5, 45, 40, 75, 0.5],  # free
    ], dtype=np.float32)
    plan = plan_regions(IMAGE, annotations, proposals, frozenset({1, 2}), RegionsSection(top_k=5))
    assert [r.source for r in plan.regions] == ["gt", "gt", "proposal", "proposal", "image"]
    assert [r.region_id for r in plan.regions] == [0, 1, 2, 3, 4]
    assert [r.category_id for r in plan.regions[:2]] == [1, 2]
    assert [r.proposal_score for r in plan.regions[2:4]] == [np.float32(0.9), np.float32(0.5)]
    assert plan.regions[4].box == (0.0, 0.0, 100.0, 80.0)
    assert all(r.max_iou_base <= 0.5 for r in plan.regions[2:4])
    assert plan.skipped == {"gt_crowd": 1, "proposal_nms_or_top_k": 1, "proposal_overlaps_base": 1,
                            "proposal_too_small": 1}
    assert [(b.source, b.index, b.kind) for b in plan.bad_boxes] == [("gt", 12, "degenerate_box"),
                                                                     ("proposal", 4, "nan_box")]


def test_top_k_threshold_and_bad_gt():
    proposals = np.array([[x, 0, x + 9, 9, 1 - x / 100] for x in range(0, 90, 10)], dtype=np.float32)
    plan = plan_regions(IMAGE, (_ann(1, -20, 0, 10, 10), _ann(2, 95, 0, 50, 10)), proposals, frozenset({1}),
                        RegionsSection(top_k=3, include_image=False))
    assert [r.box[0] for r in plan.regions] == [0.0, 10.0, 20.0]
    assert [(b.source, b.index, b.kind) for b in plan.bad_boxes] == [("gt", 1, "negative_box"),
                                                                     ("gt", 2, "out_of_image")]
    # A looser threshold lets proposals on base objects through; a stricter one keeps them out.
    gt = (_ann(1, 0, 0, 9, 9),)
    assert len(plan_regions(IMAGE, gt, proposals[:1], frozenset({1}), RegionsSection(max_iou_base=1.0)).regions) == 3
    assert len(plan_regions(IMAGE, gt, proposals[:1], frozenset({1}), RegionsSection(max_iou_base=0.5)).regions) == 2


def test_proposals_below_the_score_threshold_are_no_candidates():
    proposals = np.array([[x, 0, x + 9, 9, 0.95 - x / 100] for x in range(0, 90, 10)], dtype=np.float32)
    everything = plan_regions(IMAGE, (), proposals, frozenset({1}), RegionsSection(top_k=9, include_image=False))
    assert len(everything.regions) == 9 and "proposal_low_score" not in everything.skipped
    plan = plan_regions(IMAGE, (), proposals, frozenset({1}),
                        RegionsSection(top_k=9, include_image=False, min_proposal_score=0.6))
    assert [r.proposal_score for r in plan.regions] == approx32([0.95, 0.85, 0.75, 0.65])
    assert plan.skipped["proposal_low_score"] == 5


def test_novel_gt_kept_outside_strict_mode_does_not_block_proposals():
    novel = (_ann(1, 10, 10, 30, 30, category=9),)
    plan = plan_regions(IMAGE, novel, np.array([[10, 10, 40, 40, 0.9]], np.float32), frozenset({1}))
    assert [r.source for r in plan.regions] == ["gt", "proposal", "image"]
    assert plan.regions[1].max_iou_base == 0.0
