"""Deformable cross-attention: sampling lands where the reference box says, and offsets learn."""
import torch

from trainers.modeling.deformable import DeformableCrossAttention, split_levels
from tests.float32 import approx32


def _identity_attention(dim: int = 4, heads: int = 2, levels: int = 1, points: int = 1) -> DeformableCrossAttention:
    """Offsets 0, projections identity: each head reads the value map at its box centre, unchanged."""
    attention = DeformableCrossAttention(dim, heads, levels, points)
    with torch.no_grad():
        attention.sampling_offsets.bias.zero_()
        for linear in (attention.value_projection, attention.output_projection):
            linear.weight.copy_(torch.eye(dim))
            linear.bias.zero_()
    return attention


def test_split_levels_restores_each_map():
    maps = [torch.randn(2, 3, 4, 5), torch.randn(2, 3, 2, 2)]
    tokens = torch.cat([m.flatten(2).transpose(1, 2) for m in maps], dim=1)
    for restored, original in zip(split_levels(tokens, [(4, 5), (2, 2)]), maps):
        assert torch.equal(restored, original)


def test_zero_offsets_read_the_value_at_the_box_centre():
    values = torch.arange(2 * 2 * 4, dtype=torch.float32).view(1, 4, 2, 2)  # (B, d, h, w)
    tokens = values.flatten(2).transpose(1, 2)
    # centre (0.75, 0.25) is the centre of pixel (row 0, column 1) of a 2×2 map: no interpolation.
    reference = torch.tensor([[[0.75, 0.25, 0.5, 0.5]]])
    out = _identity_attention()(torch.zeros(1, 1, 4), reference, tokens, [(2, 2)])
    assert out[0, 0].tolist() == approx32(values[0, :, 0, 1].tolist())


def test_offsets_scale_with_the_box_and_interpolate_bilinearly():
    values = torch.tensor([[0.0, 10.0], [20.0, 30.0]]).expand(1, 2, 2, 2).contiguous()
    tokens = values.flatten(2).transpose(1, 2)
    attention = _identity_attention(dim=2, heads=1)
    with torch.no_grad():
        attention.sampling_offsets.bias.copy_(torch.tensor([1.0, 0.0]))  # half a box width to the right
    # centre x 0.25 + 1 · 0.5 / 2 = 0.5: halfway between the columns' centres → mean of 0 and 10 on row 0.
    out = attention(torch.zeros(1, 1, 2), torch.tensor([[[0.25, 0.25, 0.5, 0.5]]]), tokens, [(2, 2)])
    assert out[0, 0].tolist() == approx32([5.0, 5.0])


def test_gradients_reach_offsets_and_weights():
    torch.manual_seed(0)
    attention = DeformableCrossAttention(8, 2, 2, 3)
    tokens = torch.randn(2, 16 + 4, 8, requires_grad=True)
    queries = torch.randn(2, 5, 8)
    reference = torch.rand(2, 5, 4) * 0.5 + 0.25
    attention(queries, reference, tokens, [(4, 4), (2, 2)]).square().sum().backward()
    assert attention.sampling_offsets.weight.grad.abs().sum() > 0
    assert attention.attention_weights.weight.grad.abs().sum() > 0
    assert tokens.grad.abs().sum() > 0
