"""The teachers' shared optimisation loop: warm-up then cosine rate per parameter group, one loss per step, a
non-finite loss refused with the setting to lower."""
import math

import pytest
import torch

from shapesov.teachers.training_steps import StepPlan, learning_rate_factor, run_training_steps


def test_learning_rate_warms_up_linearly_then_decays_to_zero_by_a_cosine():
    assert [learning_rate_factor(step, 4, 12) for step in range(4)] == [0.25, 0.5, 0.75, 1.0]
    assert learning_rate_factor(4, 4, 12) == 1.0
    assert learning_rate_factor(8, 4, 12) == pytest.approx(0.5)
    assert learning_rate_factor(12, 4, 12) == pytest.approx(0.0, abs=1e-12)


def test_each_group_follows_the_schedule_from_its_own_rate_and_every_loss_is_kept():
    weight = torch.nn.Parameter(torch.tensor([1.0]))
    bias = torch.nn.Parameter(torch.tensor([0.0]))
    optimizer = torch.optim.SGD([{"params": [weight], "lr": 0.1}, {"params": [bias], "lr": 0.01}])
    seen, lines = [], []

    def step_loss(step: int) -> torch.Tensor:
        seen.append([group["lr"] for group in optimizer.param_groups])
        return (weight * 2 + bias - 1).pow(2).sum()

    plan = StepPlan("toy", steps=5, warmup_steps=2, batch_size=8, unit="rows", lr_flag="toy.lr", log_every=2)
    losses = run_training_steps(plan, optimizer, step_loss, lines.append)
    factors = [learning_rate_factor(step, 2, 5) for step in range(5)]
    assert seen == [pytest.approx([0.1 * f, 0.01 * f]) for f in factors]
    assert len(losses) == 5 and losses[0] == pytest.approx(1.0) and losses[-1] < losses[0]
    assert [line.split()[:3] for line in lines] == [["toy", "step", f"{step}/5"] for step in (0, 2, 4)]
    assert lines[0].endswith("rows/s")


def test_a_non_finite_loss_stops_with_the_step_and_the_setting_to_lower():
    weight = torch.nn.Parameter(torch.tensor([1.0]))
    optimizer = torch.optim.SGD([weight], lr=0.1)
    plan = StepPlan("toy", steps=3, warmup_steps=1, batch_size=1, unit="rows", lr_flag="toy.lr")
    with pytest.raises(FloatingPointError, match=r"toy training loss is nan at step 1; lower toy.lr"):
        run_training_steps(plan, optimizer, lambda step: weight.sum() * (math.nan if step == 1 else 1.0),
                           lambda line: None)
    assert weight.item() == pytest.approx(0.9)  # the first step ran, the bad one changed nothing
