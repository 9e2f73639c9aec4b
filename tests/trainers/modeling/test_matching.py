"""Hungarian matching: one-to-one, one-to-many, and the cost's three parts."""
import torch

from trainers.modeling.matching import hungarian_match, matching_cost


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
    cost = matching_cost(boxes, torch.zeros(2, 1), gt, 2.0, 5.0, 2.0)
    assert cost[0, 0] < cost[1, 0]
    # Same boxes: the higher alignment score wins; the difference is 2·(σ(3) − σ(−3)).
    same = torch.cat([gt, gt])
    cost = matching_cost(same, torch.tensor([[3.0], [-3.0]]), gt, 2.0, 5.0, 2.0)
    expected = 2.0 * (torch.sigmoid(torch.tensor(3.0)) - torch.sigmoid(torch.tensor(-3.0)))
    assert torch.isclose(cost[1, 0] - cost[0, 0], expected)
