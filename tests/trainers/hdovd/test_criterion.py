"""HdovdCriterion: switches name the terms, weights scale them, queues fill only in training, rows align."""

import pytest
import torch
import torch.nn.functional as F

from trainers.hdovd.detector_base import BACKGROUND, DetectorTrainOutput
from trainers.hdovd.criterion import HdovdCriterion
from trainers.hdovd.config import HdovdLossConfig
from trainers.hdovd.losses.relational import relational_kd_loss
from trainers.hdovd.losses.contrastive import sigmoid_contrastive_loss
from tests.float32 import approx32

D = 4


def make_output(seed=0):
    generator = torch.Generator().manual_seed(seed)
    return DetectorTrainOutput(
        box_losses={"loss_box_reg": torch.tensor(0.25)},
        class_logits=torch.randn(3, 2, generator=generator),
        background_logits=None,
        class_targets=torch.tensor([0, 1, BACKGROUND]),
        matched_pseudo_weights=torch.tensor([float("nan"), 0.5, float("nan")]),
        region_queries=F.normalize(torch.randn(3, D, generator=generator), dim=-1),
        region_rows=torch.arange(3),
        region_is_pseudo=torch.tensor([False, False, True]),
        image_queries=F.normalize(torch.randn(2, D, generator=generator), dim=-1),
    )


def teachers(seed=1):
    generator = torch.Generator().manual_seed(seed)
    return F.normalize(torch.randn(3, D, generator=generator), dim=-1), F.normalize(torch.randn(2, D, generator=generator), dim=-1)


def test_all_terms_present_and_finite():
    losses = HdovdCriterion(HdovdLossConfig(), D)(make_output(), *teachers())
    assert set(losses) == {"loss_box_reg", "loss_cls", "loss_ckd_instance", "loss_rkd_instance", "loss_ckd_image"}
    assert all(torch.isfinite(v) for v in losses.values())


def test_switches_remove_terms_and_alphas_scale_them():
    off = HdovdLossConfig(instance_contrastive=False, instance_relational=False, image_contrastive=False)
    assert set(HdovdCriterion(off, D)(make_output(), *teachers())) == {"loss_box_reg", "loss_cls"}
    base = HdovdCriterion(HdovdLossConfig(), D).eval()(make_output(), *teachers())
    doubled = HdovdCriterion(HdovdLossConfig(alpha_instance_relational=10.0), D).eval()(make_output(), *teachers())
    assert doubled["loss_rkd_instance"].item() == approx32(2 * base["loss_rkd_instance"].item())


def test_distilling_base_regions_only_uses_non_pseudo_rows():
    config = HdovdLossConfig(distill_regions="base", alpha_instance_relational=1.0, alpha_instance_contrastive=1.0)
    output, (regions, images) = make_output(), teachers()
    losses = HdovdCriterion(config, D)(output, regions, images)
    q, e = output.region_queries[:2], regions[:2]
    assert losses["loss_rkd_instance"].item() == approx32(relational_kd_loss(q, e, 5.0).item())
    assert losses["loss_ckd_instance"].item() == approx32(sigmoid_contrastive_loss(q, e, None, 20.0).item())


def test_queues_fill_in_training_only_and_feed_the_next_step():
    criterion = HdovdCriterion(HdovdLossConfig(), D)
    criterion.eval()
    first = criterion(make_output(), *teachers())
    assert len(criterion.region_teacher_queue) == 0
    criterion.train()
    again = criterion(make_output(), *teachers())
    assert again["loss_ckd_instance"].item() == approx32(first["loss_ckd_instance"].item())
    assert len(criterion.region_teacher_queue) == 3 and len(criterion.image_teacher_queue) == 2
    with_negatives = criterion(make_output(), *teachers())
    assert with_negatives["loss_ckd_instance"] > first["loss_ckd_instance"]  # 3 more BCE negatives
    assert "region_teacher_queue.slots" in criterion.state_dict()


def test_region_rows_outside_the_batch_are_an_error():
    regions, images = teachers()
    with pytest.raises(ValueError, match="rows must be the batch's"):
        HdovdCriterion(HdovdLossConfig(), D)(make_output(), regions[:2], images)


def test_region_rows_pick_each_distilled_query_its_teacher():
    config = HdovdLossConfig(alpha_instance_relational=1.0, instance_contrastive=False, image_contrastive=False)
    output, (regions, images) = make_output(), teachers()
    output.region_rows = torch.tensor([2, 0, 1])  # queries stand for the batch's regions in another order
    loss = HdovdCriterion(config, D)(output, regions, images)["loss_rkd_instance"]
    assert loss.item() == approx32(relational_kd_loss(output.region_queries, regions[[2, 0, 1]], 5.0).item())


def test_pseudo_weighting_down_weights_the_pseudo_row():
    weighted = HdovdCriterion(HdovdLossConfig(), D)  # α = 0.5 for the pseudo RoI
    unweighted = HdovdCriterion(HdovdLossConfig(pseudo_weighting=False), D)
    assert weighted(make_output(), *teachers())["loss_cls"] < unweighted(make_output(), *teachers())["loss_cls"]
