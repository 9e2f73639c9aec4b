"""Open-Det against transcriptions of the released Open-Det2 functions (tests/trainers/opendet/released_open_det2.py) on
hand-made inputs, two images with unequal object counts: loss weights, the encoder proposals' losses and their
gradient, the matching costs, VLD-M's and the denoising loss's averaging, the joined-beam cut, DDP normalisers."""
import os

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F

from tests.float32 import approx32
from tests.trainers.opendet.released_open_det2 import (
    released_denoising_loss,
    released_description,
    released_interm_losses,
    released_match_one_image,
    released_num_boxes,
    released_one_to_many_cost_one_image,
    released_vl_distillation,
    released_weight,
    released_weight_dict,
)
from tests.trainers.opendet.tiny_opendet import TINY, tiny_batch, tiny_model
from trainers.distributed import count_over_ranks
from trainers.modeling.matching import matching_cost
from trainers.modeling.query_detector import DecoderLayerOutput
from trainers.opendet.config import OpenDetLossConfig
from trainers.opendet.criterion import ObjectTargets, OpenDetCriterion
from trainers.opendet.inference import NamedBoxes
from trainers.opendet.losses import vl_distillation_loss
from trainers.opendet.name_generator import ObjectNameGenerator
from trainers.opendet.name_tokenizer import train_name_tokenizer

# Two images, 4 queries each, 2 and 1 objects (so the released texts pad image 1 to width 2).
GT = [torch.tensor([[0.30, 0.30, 0.20, 0.20], [0.70, 0.60, 0.30, 0.20]]), torch.tensor([[0.50, 0.50, 0.40, 0.40]])]
TEXTS = F.normalize(torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [1.0, 0.0, 0.0]]), dim=-1)  # img 1 = img 0's obj 0


def inputs():
    generator = torch.Generator().manual_seed(3)
    boxes = torch.tensor([[[0.31, 0.29, 0.2, 0.22], [0.68, 0.61, 0.28, 0.2], [0.2, 0.8, 0.1, 0.1], [0.5, 0.5, 0.5, 0.5]],
                          [[0.52, 0.48, 0.38, 0.4], [0.1, 0.1, 0.1, 0.1], [0.49, 0.5, 0.3, 0.3], [0.9, 0.9, 0.1, 0.1]]])
    align = torch.randn(2, 4, 2, generator=generator)
    align[1, :, 1] = 0.0  # VL_Align_Ours multiplies the padded text column by text_mask
    binary = torch.randn(2, 4, generator=generator)
    return boxes.requires_grad_(True), align.requires_grad_(True), binary.requires_grad_(True)


def objects() -> ObjectTargets:
    return ObjectTargets(torch.cat(GT), [2, 1], None, text_embeddings=TEXTS, names=["circle", "star", "circle"],
                         weights=torch.ones(3))


def flat_alignment(align: torch.Tensor) -> torch.Tensor:
    """The released (B, Q, W) per-image scores as our (B·Q, Nt) matrix; cross-image entries are never read."""
    zeros = torch.zeros(4, 1)
    return torch.cat([torch.cat([align[0, :, :2], zeros], 1), torch.cat([zeros, zeros, align[1, :, :1]], 1)])


def test_loss_bce_carries_weight_one_in_every_layer_and_for_the_proposals():
    weights = released_weight_dict()
    for name in ["loss_bce", *[f"loss_bce_{layer}" for layer in range(5)], "loss_bce_interm", "loss_bce_dn"]:
        assert released_weight(name, weights) == 1.0
    assert [released_weight(name, weights) for name in ("loss_ce", "loss_bbox", "loss_giou", "loss_ce_interm",
                                                          "loss_bbox_interm", "loss_giou_interm")] == [2, 5, 2, 2, 5, 2]
    ours = OpenDetLossConfig()
    assert (ours.weight_binary, ours.weight_alignment, ours.weight_l1, ours.weight_giou) == (1.0, 2.0, 5.0, 2.0)
    # The criterion applies it: loss_binary is the unweighted term of the last layer (doubling the weight doubles it).
    model, (images, targets) = tiny_model(), tiny_batch()
    output = model.eval()(images)
    torch.manual_seed(0)
    one = OpenDetCriterion(TINY.loss)(model, output, targets)
    torch.manual_seed(0)
    two = OpenDetCriterion(OpenDetLossConfig(weight_binary=2.0))(model, output, targets)
    assert two["loss_binary"].item() == approx32(2 * one["loss_binary"].item())


def test_proposals_are_matched_one_to_one_and_trained_as_the_released_interm_outputs():
    boxes, align, binary = inputs()
    indices = []
    for image, gt in enumerate(GT):
        _, rows, columns = released_match_one_image(align[image, :, :len(gt)].detach(), boxes[image].detach(),
                                                    binary[image].detach(), gt)
        indices.append((rows, columns))
    texts = torch.stack([TEXTS[:2], torch.cat([TEXTS[2:], torch.zeros(1, 3)])])
    expected = released_interm_losses(align, boxes, binary[..., None], [{"boxes": gt} for gt in GT], texts, indices,
                                      num_boxes=3.0)
    weights = released_weight_dict()
    released_total = sum(released_weight(f"{name}_interm", weights) * value for name, value in expected.items())

    criterion = OpenDetCriterion(OpenDetLossConfig())
    ours_boxes, ours_align, ours_binary = (t.detach().clone().requires_grad_(True) for t in inputs())
    stage = DecoderLayerOutput(ours_boxes, ours_binary, torch.zeros(2, 4, 1), one_to_one=True)
    terms, match = criterion.stage_losses(stage, stage.queries, lambda queries, texts: flat_alignment(ours_align),
                                          torch.zeros(2, 4, dtype=torch.bool), objects(), 1, (3.0, 3.0))
    released_pairs = sorted((int(q) + 4 * image, int(o) + 2 * image) for image, (rows, cols) in enumerate(indices)
                            for q, o in zip(rows, cols))
    assert sorted(zip(match.queries.tolist(), match.objects.tolist())) == released_pairs
    for ours, theirs in (("l1", "loss_bbox"), ("giou", "loss_giou"), ("binary", "loss_bce"), ("alignment", "loss_ce")):
        assert terms[ours].item() == approx32(expected[theirs].item()), ours
    weights_ours = {"l1": 5.0, "giou": 2.0, "binary": 1.0, "alignment": 2.0}  # the criterion's weights of the stage
    sum(weights_ours[name] * value for name, value in terms.items()).backward()
    released_total.backward()
    for ours, theirs in ((ours_boxes, boxes), (ours_align, align), (ours_binary, binary)):
        assert ours.grad.flatten().tolist() == approx32(theirs.grad.flatten().tolist())


def test_the_model_trains_its_proposals_with_their_own_alignment_module():
    model, (images, targets) = tiny_model(), tiny_batch()
    output = model(images)
    assert output.proposals.one_to_one and output.proposals.boxes.shape == output.layers[0].boxes.shape
    losses = OpenDetCriterion(TINY.loss)(model, output, targets)
    losses["loss_aux"].backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.proposal_aligner.parameters())
    assert model.detector.encoder_box_head.layers[0].weight.grad.abs().sum() > 0


def test_matching_costs_are_the_released_focal_costs():
    boxes, align, binary = (t.detach() for t in inputs())
    criterion = OpenDetCriterion(OpenDetLossConfig())
    costs, many = criterion.box_criterion.costs, criterion.box_criterion.one_to_many_costs
    for image, gt in enumerate(GT):
        expected, _, _ = released_match_one_image(align[image, :, :len(gt)], boxes[image], binary[image], gt)
        ours = matching_cost(boxes[image], align[image, :, :len(gt)], gt, costs, binary[image])
        assert ours.flatten().tolist() == approx32(expected.flatten().tolist())
        expected_many = released_one_to_many_cost_one_image(align[image, :, :len(gt)], boxes[image], binary[image], gt)
        ours_many = matching_cost(boxes[image], align[image, :, :len(gt)], gt, many, binary[image])
        assert ours_many.flatten().tolist() == approx32(expected_many.flatten().tolist())


def test_vl_distillation_is_a_mean_per_image_then_over_the_images():
    generator = torch.Generator().manual_seed(4)
    prompts = torch.randn(4, 6, generator=generator, requires_grad=True)  # 3 matched pairs in image 0, 1 in image 1
    texts = F.normalize(torch.randn(4, 6, generator=generator), dim=-1)
    expected = released_vl_distillation([prompts[:3], prompts[3:]], [texts[:3], texts[3:]])
    ours = vl_distillation_loss(prompts, texts, images=torch.tensor([0, 0, 0, 1]))
    assert ours.item() == approx32(expected.item())
    assert ours.item() != approx32(vl_distillation_loss(prompts, texts).item())  # not one mean over the 4 pairs
    (expected_grad,) = torch.autograd.grad(expected, prompts)
    (ours_grad,) = torch.autograd.grad(ours, prompts)
    assert ours_grad.flatten().tolist() == approx32(expected_grad.flatten().tolist())


def test_denoising_loss_is_t5s_loss_per_image_then_averaged():
    from tests.trainers.opendet.tiny_opendet import TINY_T5_DIR
    from trainers.opendet.config import NameGeneratorConfig

    names = ["red circle", "circle", "star", "a square"]
    torch.manual_seed(0)
    generator = ObjectNameGenerator.from_config(NameGeneratorConfig(t5_dir=TINY_T5_DIR, input_dropout=0.0), 8,
                                                train_name_tokenizer(names))
    noisy = torch.randn(4, 8)
    per_image = [noisy[:3], noisy[3:]]
    names_per_image = [names[:3], names[3:]]

    def t5_loss(inputs, image_names):
        return generator.t5(inputs_embeds=generator.t5_inputs(inputs),
                            labels=generator.encode_names(image_names, inputs.device)).loss

    expected = released_denoising_loss(t5_loss, per_image, names_per_image)
    ours = generator.name_loss_per_image(noisy, names, None, [3, 1])
    assert ours.item() == approx32(expected.item())
    weight = generator.prompt_projection.weight
    (expected_grad,) = torch.autograd.grad(expected, weight)
    (ours_grad,) = torch.autograd.grad(generator.name_loss_per_image(noisy, names, None, [3, 1]), weight)
    assert ours_grad.flatten().tolist() == approx32(expected_grad.flatten().tolist())


def test_joined_beams_are_cut_at_75_characters():
    beams = [("a very long name of an orange triangle", "another long name of a crescent", "and a third name")]
    named = NamedBoxes(torch.zeros(1, 4), torch.ones(1), [beams[0][0]], beams)
    assert named.descriptions(join_beams=True, prefix="a ") == [released_description(list(beams[0]))]
    assert len(named.descriptions(join_beams=True, prefix="a ")[0]) == 77
    short = NamedBoxes(torch.zeros(1, 4), torch.ones(1), ["star"], [("star", "cross")])
    assert short.descriptions(True, "a ") == [released_description(["star", "cross"])] == ["a star, cross"]


def _rank_count(rank: int, world: int, store: str, counts: list[int], out: str) -> None:
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=world)
    try:
        with open(f"{out}.{rank}", "w") as file:
            file.write(repr(count_over_ranks(counts[rank], torch.device("cpu"))))
    finally:
        dist.destroy_process_group()


@pytest.mark.slow  # starts two processes
def test_loss_normalisers_are_averaged_over_the_processes(tmp_path):
    for counts in ([3, 0], [0, 0]):
        out = str(tmp_path / f"count{counts[0]}")
        mp.spawn(_rank_count, args=(2, str(tmp_path / f"store{counts[0]}"), counts, out), nprocs=2)
        results = [float(open(f"{out}.{rank}").read()) for rank in range(2)]
        assert results == [released_num_boxes(counts)] * 2  # 1.5 for 3 + 0 objects, at least 1 for none
    assert count_over_ranks(0, torch.device("cpu")) == 1.0 and count_over_ranks(7, torch.device("cpu")) == 7.0
    assert "WORLD_SIZE" not in os.environ  # the plain run above needed no process group
