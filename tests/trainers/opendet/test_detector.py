"""The Open-Det detector and criterion: forward and backward on two random 128-px images."""
import torch

from tests.trainers.opendet.tiny_opendet import TEXT_DIM, TINY, tiny_batch as _batch, tiny_model as _model
from trainers.opendet.config import OpenDetConfig, OpenDetLossConfig
from trainers.opendet.criterion import OpenDetCriterion


def test_forward_shapes_and_query_selection():
    model = _model()
    images, _ = _batch()
    output = model(images)
    assert len(output.layers) == 3
    assert [layer.one_to_one for layer in output.layers] == [False, True, True]  # last two: one-to-one
    batch, queries = output.padding.shape
    assert batch == 2 and TINY.detector.min_queries <= queries <= TINY.detector.max_queries
    final = output.layers[-1]
    assert final.boxes.shape == (2, queries, 4) and ((final.boxes > 0) & (final.boxes < 1)).all()
    assert final.binary_logits.shape == (2, queries)
    assert model.prompts(output).shape == (2, queries, TEXT_DIM)


def test_forward_backward_reaches_every_part():
    model = _model()
    images, targets = _batch()
    losses = OpenDetCriterion(TINY.loss)(model, model(images), targets)
    assert set(losses) == {"loss_l1", "loss_giou", "loss_binary", "loss_alignment", "loss_aux", "loss_distill",
                           "loss_name", "loss_name_denoise"}
    assert all(torch.isfinite(value) for value in losses.values())
    sum(losses.values()).backward()
    for part in ("detector.backbone", "detector.encoder", "detector.decoder", "detector.encoder_score_head",
                 "detector.encoder_box_head", "aligner", "proposal_aligner", "distiller",
                 "name_generator.prompt_projection", "name_generator.t5"):
        grads = [p.grad for n, p in model.named_parameters() if n.startswith(part) and p.requires_grad]
        assert grads and any(g is not None and g.abs().sum() > 0 for g in grads), part
    # DistributedDataParallel needs a gradient for every trainable parameter (unread FPN levels are frozen).
    assert not [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]


def test_a_batch_without_objects_still_reaches_every_trainable_parameter():
    model = _model()
    images, targets = _batch()
    empty = [{"boxes": t["boxes"][:0], "text_embeddings": t["text_embeddings"][:0], "names": []} for t in targets]
    losses = OpenDetCriterion(TINY.loss)(model, model(images), empty)
    assert losses["loss_name"].item() == 0.0 and losses["loss_distill"].item() == 0.0
    sum(losses.values()).backward()
    assert not [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]


def test_switches_drop_their_terms():
    config = OpenDetConfig(detector=TINY.detector, name_generator=TINY.name_generator,
                           loss=OpenDetLossConfig(vl_distillation=False, name_generator=False, joint_loss=False))
    model = _model(config)
    images, targets = _batch()
    losses = OpenDetCriterion(config.loss)(model, model(images), targets)
    assert set(losses) == {"loss_l1", "loss_giou", "loss_binary", "loss_alignment", "loss_aux"}


def test_prompts_of_chosen_queries_equal_those_computed_for_every_query():
    model = _model().eval()  # no dropout: the two computations must agree exactly
    output = model(_batch()[0])
    every = model.prompts(output, 1)[~output.padding]
    rows = torch.tensor([3, 0, every.shape[0] - 1, 7])  # any order, both images
    assert torch.allclose(model.prompts(output, 1, rows), every[rows], atol=1e-5)
    assert model.prompts(output, 1, torch.zeros(0, dtype=torch.long)).shape == (0, TEXT_DIM)
