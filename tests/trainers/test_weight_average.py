"""The weight average: its recurrence by hand, that it leaves training alone, resume, and what evaluation reads."""
import json

import pytest
import torch

from tests.float32 import approx32
from tests.trainers.training_helpers import evaluate_run, step_losses, tiny_config, train_run
from trainers.weight_average import WeightAverage, evaluated_weights


def test_the_average_follows_the_recurrence_by_hand():
    layer = torch.nn.Linear(1, 1, bias=False)
    with torch.no_grad():
        layer.weight.fill_(1.0)
    average = WeightAverage(layer, decay=0.5)
    with torch.no_grad():
        layer.weight.fill_(3.0)
    average.update(layer)  # d = min(0.5, 2/11) = 2/11: 2/11 · 1 + 9/11 · 3
    assert average.weights["weight"].item() == approx32(2 / 11 + 27 / 11)
    with torch.no_grad():
        layer.weight.fill_(5.0)
    average.update(layer)  # d = min(0.5, 3/12) = 1/4
    assert average.weights["weight"].item() == approx32(0.25 * (29 / 11) + 0.75 * 5)
    for _ in range(20):
        average.update(layer)
    assert average.decay_at(average.updates) == 0.5  # the ramp (1+n)/(10+n) passed the decay at n = 8


def test_counters_are_copied_and_the_model_is_not_touched():
    norm = torch.nn.BatchNorm1d(2)
    average = WeightAverage(norm, decay=0.9)
    norm.train()
    norm(torch.tensor([[0.0, 1.0], [2.0, 5.0]]))
    running_mean = norm.running_mean.clone()
    average.update(norm)
    assert average.weights["num_batches_tracked"].item() == 1
    assert average.weights["running_mean"] == approx32((2 / 11) * 0 + (9 / 11) * running_mean)
    assert torch.equal(norm.running_mean, running_mean)


def test_decay_outside_its_range_is_refused_with_the_key():
    with pytest.raises(ValueError, match="optim.ema_decay"):
        WeightAverage(torch.nn.Linear(1, 1), decay=1.0)


def test_a_checkpoint_of_another_model_is_refused_by_name():
    average = WeightAverage(torch.nn.Linear(2, 2), decay=0.9)
    with pytest.raises(ValueError, match="lacks 1 detector entries .*first: bias"):
        average.load_state_dict({"updates": 3, "weights": {"weight": torch.zeros(2, 2)}})


def test_keeping_an_average_changes_no_training_step(tiny_store, tmp_path):
    plain = train_run(tiny_config(tiny_store, tmp_path / "plain", max_steps=3))
    averaged = train_run(tiny_config(tiny_store, tmp_path / "averaged", max_steps=3, **{"optim.ema_decay": 0.9}))
    assert step_losses(tmp_path / "plain") == step_losses(tmp_path / "averaged")
    plain_state = torch.load(plain, weights_only=True)
    averaged_state = torch.load(averaged, weights_only=True)
    assert "detector_average" not in plain_state
    for name, value in plain_state["detector"].items():
        assert torch.equal(value, averaged_state["detector"][name]), name
    average = averaged_state["detector_average"]
    assert average["updates"] == 3
    moved = [name for name, value in average["weights"].items()
             if value.is_floating_point() and not torch.equal(value, averaged_state["detector"][name])]
    assert moved, "an average of three steps equals the last step's weights"


def test_a_resumed_run_keeps_the_same_average(tiny_store, tmp_path):
    settings = {"optim.ema_decay": 0.9}
    straight = train_run(tiny_config(tiny_store, tmp_path / "straight", max_steps=4, **settings))
    interrupted = train_run(tiny_config(tiny_store, tmp_path / "resumed", max_steps=2, **settings))
    resumed = train_run(tiny_config(tiny_store, tmp_path / "resumed", max_steps=4, **settings), resume=interrupted)
    expected = torch.load(straight, weights_only=True)["detector_average"]
    got = torch.load(resumed, weights_only=True)["detector_average"]
    assert got["updates"] == expected["updates"] == 4
    for name, value in expected["weights"].items():
        assert torch.equal(got["weights"][name], value), name


def test_evaluation_reads_the_weights_eval_weights_names(tiny_store, tmp_path):
    checkpoint = train_run(tiny_config(tiny_store, tmp_path / "run", max_steps=2, **{"optim.ema_decay": 0.9}))
    state = torch.load(checkpoint, weights_only=True)
    assert evaluated_weights(state, "average") == (state["detector_average"]["weights"], "average")
    assert evaluated_weights(state, "trained") == (state["detector"], "trained")
    del state["detector_average"]
    assert evaluated_weights(state, "average") == (state["detector"], "trained")  # a run that kept none
    for choice in ("average", "trained"):
        out = tmp_path / choice
        evaluate_run(tiny_config(tiny_store, out, **{"eval.weights": choice}), checkpoint)
        assert json.loads((out / "metrics.json").read_text())["weights"] == choice


def test_resuming_a_run_without_an_average_starts_one_there(tiny_store, tmp_path, capsys):
    interrupted = train_run(tiny_config(tiny_store, tmp_path / "run", max_steps=2))
    resumed = train_run(tiny_config(tiny_store, tmp_path / "run", max_steps=3, **{"optim.ema_decay": 0.9}),
                    resume=interrupted)
    assert torch.load(resumed, weights_only=True)["detector_average"]["updates"] == 1
    assert "without a weight average" in capsys.readouterr().out
