"""The training loop on a real (tiny) store: exact resume, non-finite stop, evaluation, DDP with gloo."""
import json
import os
import subprocess
import sys

import pytest
import torch

from tests.featurestore.store_factory import DIM, write_store
from tests.float32 import approx32
from tests.trainers.training_helpers import step_losses, tiny_config, train_run
from trainers.loop import NonFiniteLossError
from trainers.train import main as train_main

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_resume_gives_the_same_next_step_loss(tiny_store, tmp_path):
    train_run(tiny_config(tiny_store, tmp_path / "straight", max_steps=4))
    interrupted = train_run(tiny_config(tiny_store, tmp_path / "resumed", max_steps=2))
    train_run(tiny_config(tiny_store, tmp_path / "resumed", max_steps=4), resume=interrupted)
    straight, resumed = step_losses(tmp_path / "straight"), step_losses(tmp_path / "resumed")
    assert sorted(resumed) == [1, 2, 3, 4]
    for step in (3, 4):
        assert resumed[step] == approx32(straight[step]), step


def test_checkpoint_holds_everything_to_continue(tiny_store, tmp_path):
    path = train_run(tiny_config(tiny_store, tmp_path / "run", max_steps=1))
    state = torch.load(path, weights_only=True)
    assert {"detector", "criterion", "optimizer", "scheduler", "position", "rng", "config"} <= set(state)
    assert state["position"]["step"] == 1
    assert any("queue" in key for key in state["criterion"])


def test_non_finite_loss_stops_with_step_and_terms(tiny_store, tmp_path):
    config = tiny_config(tiny_store, tmp_path / "nan", max_steps=3, **{"optim.lr": 1e30, "optim.warmup_steps": 0,
                                                                       "optim.clip_grad_norm": 0})
    with pytest.raises(NonFiniteLossError, match=r"non-finite loss at steps? [\d-]+ .*loss_cls="):
        train_run(config)


def test_train_then_evaluate_writes_metrics(tiny_store, tmp_path, capsys):
    out = tmp_path / "cli"
    settings = [f"store={tiny_store / 'store'}", f"image_root={tiny_store / 'images'}", f"out_dir={out}",
                f"hdovd.detector.embed_dim={DIM}", "hdovd.detector.min_size=64", "hdovd.detector.max_size=64",
                "batch_size=2", "num_workers=0", "max_steps=2", f"eval.annotations={tiny_store / 'val.json'}",
                f"eval.image_root={tiny_store / 'images'}"]
    assert train_main([arg for s in settings for arg in ("--set", s)]) == 0
    metrics = json.loads((out / "metrics.json").read_text())["metrics"]
    assert set(metrics) == {"AP50_all", "AP50_base", "AP50_novel"}
    assert 0.0 <= metrics["AP50_base"] <= 1.0 and metrics["AP50_novel"] is None  # no novel GT in this set
    assert "AP50_base" in capsys.readouterr().out


def test_trains_from_a_store_in_an_s3_bucket(tiny_store, tmp_path, s3_bucket):
    """The same store in a bucket (moto on loopback), the images local: vocabulary, manifest and the streaming
    dataset (two DataLoader workers) all read it through its URL."""
    store = write_store(f"{s3_bucket}/store", shards=2)
    out = tmp_path / "s3"
    settings = [f"store={store}", f"image_root={tiny_store / 'images'}", f"out_dir={out}",
                f"hdovd.detector.embed_dim={DIM}", "hdovd.detector.min_size=64", "hdovd.detector.max_size=64",
                "batch_size=2", "num_workers=2", "max_steps=2"]
    assert train_main(["--no-eval"] + [arg for s in settings for arg in ("--set", s)]) == 0
    assert torch.load(out / "checkpoint.pt", weights_only=True)["position"]["step"] == 2


def test_unknown_config_key_is_named(capsys):
    assert train_main(["--set", "optim.lrr=1"]) == 2
    assert "optim.lrr" in capsys.readouterr().err


@pytest.mark.skipif(sys.platform != "linux", reason="torchrun with gloo on Linux")
@pytest.mark.slow
def test_torchrun_two_cpu_processes(tiny_store, tmp_path):
    out = tmp_path / "ddp"
    settings = [f"store={tiny_store / 'store'}", f"image_root={tiny_store / 'images'}", f"out_dir={out}",
                f"hdovd.detector.embed_dim={DIM}", "hdovd.detector.min_size=64", "hdovd.detector.max_size=64",
                "batch_size=1", "num_workers=0", "max_steps=2", "threads=1"]
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
               "-m", "trainers.train", "--no-eval"] + [arg for s in settings for arg in ("--set", s)]
    result = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "world size 2" in result.stdout
    assert torch.load(out / "checkpoint.pt", weights_only=True)["position"]["step"] == 2


def test_accumulation_takes_its_micro_batches_per_step_and_logs_samples_per_second(tiny_store, tmp_path, capsys):
    path = train_run(tiny_config(tiny_store, tmp_path / "acc", max_steps=1, **{"optim.accumulate": 2}))
    position = torch.load(path, weights_only=True)["position"]
    assert (position["step"], position["batches_done"]) == (1, 2)
    assert "samples/s" in capsys.readouterr().out
    rows = [json.loads(line) for line in (tmp_path / "acc" / "scalars.jsonl").read_text().splitlines()]
    assert all(row["samples_per_s"] == approx32(row["it_per_s"] * 2 * 2) for row in rows)
