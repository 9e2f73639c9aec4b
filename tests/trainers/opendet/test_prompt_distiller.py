"""VLD-M in its released form (gated 3-layer projections, bias-free fusion, refinements on detached queries) and
its paper form, by hand and by where the gradient goes."""
import torch
import torch.nn.functional as F

from trainers.modeling.transformer import TokenLayout
from trainers.opendet.prompt_distiller import FUSION_DROPOUT, GatedProjection, PromptDistiller


def test_gated_projection_by_hand():
    torch.manual_seed(0)
    projection = GatedProjection(2, 3, 2).eval()  # eval: no dropout
    assert projection.identity.bias is None and projection.gate.bias is None
    with torch.no_grad():
        for layer in projection.layers:
            layer.weight.fill_(0.5)
            layer.bias.fill_(0.25)
        projection.identity.weight.copy_(torch.eye(2))
        projection.gate.weight.zero_()  # σ(0) = 1/2
    x = torch.tensor([[1.0, 3.0]])
    hidden = F.relu6(torch.full((1, 3), 0.5 * 4 + 0.25))  # 2.25
    hidden = F.relu6(hidden.sum(-1, keepdim=True) * 0.5 + 0.25).expand(1, 3)  # 3.625
    mlp = hidden.sum(-1, keepdim=True) * 0.5 + 0.25  # 5.6875
    expected = mlp.expand(1, 2) + x * 0.5
    assert torch.allclose(projection(x), expected, rtol=1e-5, atol=1e-6)
    assert torch.allclose(projection(x), torch.tensor([[6.1875, 7.1875]]), rtol=1e-5, atol=1e-6)


def _distiller(form):
    torch.manual_seed(0)
    return PromptDistiller(16, 8, heads=2, ffn_dim=32, levels=1, sampling_points=2, form=form).eval()


def _inputs():
    torch.manual_seed(1)
    queries = torch.randn(1, 3, 16, requires_grad=True)
    boxes = torch.tensor([[[0.3, 0.3, 0.2, 0.2], [0.6, 0.5, 0.3, 0.4], [0.5, 0.5, 0.9, 0.9]]])
    tokens = torch.randn(1, 16, 16)
    return queries, boxes, tokens, torch.randn(1, 16, 16), torch.zeros(1, 16, 16), TokenLayout(boxes, [(4, 4)])


def test_released_fusion_is_bias_free_and_refinements_read_detached_queries():
    distiller = _distiller("released")
    assert distiller.fuse.bias is None and all(isinstance(lift, GatedProjection) for lift in distiller.lift)
    queries, *rest = _inputs()
    with torch.no_grad():
        distiller.fuse.weight[:, :8].zero_()  # drop the original queries' own path from the fusion
    distiller(queries, *rest).sum().backward()
    assert torch.count_nonzero(queries.grad) == 0  # the refinements saw the queries detached


def test_paper_form_refinements_pull_on_the_queries():
    distiller = _distiller("paper")
    assert distiller.fuse.bias is not None and len(distiller.lift[0].layers) == 2  # two linear layers
    queries, *rest = _inputs()
    with torch.no_grad():
        distiller.fuse.weight[:, :8].zero_()
    distiller(queries, *rest).sum().backward()
    assert torch.count_nonzero(queries.grad) > 0


def test_released_fusion_dropout_is_on_the_prompts_t5_reads_only():
    """DETRsegmVLUni.forward fuses the three lifted versions through nn.Dropout(0.3) for T5; its l2_loss (VLD-M) fuses
    them without it. The lifts' own dropout is switched off here to see the fusion's alone."""
    distiller = _distiller("released").train()
    for lift in distiller.lift:
        lift.dropout.p = 0.0
    queries, boxes, *rest = _inputs()
    versions = tuple(torch.randn(500, 16) for _ in range(3))
    assert torch.equal(distiller.fuse_versions(versions), distiller.fuse_versions(versions))  # VLD-M: no dropout
    lifted = torch.cat([lift(v) for lift, v in zip(distiller.lift, versions)], dim=-1)
    named = distiller.fuse_versions(versions, for_names=True)
    assert not torch.allclose(named, distiller.fuse(lifted))
    assert FUSION_DROPOUT == 0.3
    # Dropout 0.3 keeps each entry with probability 0.7 and scales it by 1 / 0.7: the mean is unchanged.
    ratio = (named.abs().mean() / distiller.fuse(lifted).abs().mean()).item()
    assert 0.8 < ratio < 1.35
