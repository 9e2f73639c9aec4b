"""Hungarian matching: one-to-one, one-to-many, and the cost's three parts."""
import pytest
import torch

import math

from trainers.modeling.matching import MatchingCosts, focal_cost, hungarian_match, matching_cost


def test_one_to_one_and_one_to_many_by_hand():
    # Queries 0 and 2 are cheap for object 0, query 1 for object 1, query 3 is a decoy.
    cost = torch.tensor([[0.0, 5.0], [5.0, 0.0], [1.0, 5.0], [4.0, 4.5]])
    queries, objects = hungarian_match(cost)
    assert sorted(zip(queries.tolist(), objects.tolist())) == [(0, 0), (1, 1)]
    queries, objects = hungarian_match(cost, copies=2)
    assert sorted(zip(queries.tolist(), objects.tolist())) == [(0, 0), (1, 1), (2, 0), (3, 1)]


def test_empty_images_match_nothing():
    queries, objects = hungarian_match(torch.zeros(5, 0))
    assert queries.numel() == 0 and objects.numel() == 0


def test_cost_prefers_the_right_box_and_the_aligned_query():
    gt = torch.tensor([[0.5, 0.5, 0.2, 0.2]])
    boxes = torch.tensor([[0.5, 0.5, 0.2, 0.2], [0.1, 0.1, 0.1, 0.1]])
    cost = matching_cost(boxes, torch.zeros(2, 1), gt, MatchingCosts())
    assert cost[0, 0] < cost[1, 0]
    # Same boxes: the higher alignment score wins; the difference is 2·(σ(3) − σ(−3)).
    same = torch.cat([gt, gt])
    cost = matching_cost(same, torch.tensor([[3.0], [-3.0]]), gt, MatchingCosts())
    expected = 2.0 * (torch.sigmoid(torch.tensor(3.0)) - torch.sigmoid(torch.tensor(-3.0)))
    assert torch.isclose(cost[1, 0] - cost[0, 0], expected)


def test_focal_costs_by_hand():
    def by_hand(logit: float, alpha: float) -> float:
        p = 1 / (1 + math.exp(-logit))
        return alpha * (1 - p) ** 2 * -math.log(p + 1e-8) - (1 - alpha) * p**2 * -math.log(1 - p + 1e-8)

    assert focal_cost(torch.tensor([0.7]), 0.25).item() == pytest.approx(by_hand(0.7, 0.25), rel=1e-5)
    gt = torch.tensor([[0.5, 0.5, 0.2, 0.2]])
    same = torch.cat([gt, gt])
    costs = MatchingCosts(alignment=2.0, objectness=1.0, form="focal")
    cost = matching_cost(same, torch.tensor([[1.0], [-1.0]]), gt, costs, torch.tensor([0.5, 2.0]))
    expected = [2 * by_hand(1.0, 0.25) + by_hand(0.5, 0.25), 2 * by_hand(-1.0, 0.25) + by_hand(2.0, 0.25)]
    assert (cost[:, 0] - cost[0, 0] + expected[0]).tolist() == pytest.approx(expected, rel=1e-5)
