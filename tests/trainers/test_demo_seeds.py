"""`make demo-seeds` (trainers.demo_seeds) on the tiny store: every seed trains the demo's runs with its seed, the
summary gives each demo row's mean and range over the seeds, and a seed already trained is read, not retrained."""
import json
from pathlib import Path

import pytest

from tests.tiny_clip import save_local_dir
from tests.trainers.opendet.tiny_opendet import TINY_OPENDET_SETTINGS
from tests.trainers.training_helpers import TINY_HDOVD
from trainers.demo_seeds import main, summarize



def test_summary_is_the_mean_and_range_over_the_seeds():
    per_seed = {0: {"row": {"AP50_all": 0.2, "name_right_base": None}}, 1: {"row": {"AP50_all": 0.4,
                                                                                    "name_right_base": 0.9}}}
    entry = summarize(per_seed)["row"]
    assert entry["AP50_all"]["mean"] == pytest.approx(0.3) and (entry["AP50_all"]["min"], entry["AP50_all"]["max"]) == (
        0.2, 0.4)
    assert entry["name_right_base"]["mean"] == 0.9 and entry["name_right_base"]["values"] == [None, 0.9]


@pytest.mark.slow  # starts the demo's runs as processes
def test_demo_seeds_trains_each_seed_and_summarises(tiny_store, tmp_path, capsys, monkeypatch):
    # Open-Det's evaluation embeds names with the store's CLIP, which the tiny store's manifest names "local-dir:tiny".
    save_local_dir(tmp_path / "tiny")
    monkeypatch.chdir(tmp_path)
    configs = Path(__file__).resolve().parents[2] / "configs" / "shapes"
    common = {"image_root": tiny_store / "images", "stream.image_size": 64, "stream.shuffle_buffer": 3,
              "batch_size": 2, "num_workers": 0, "max_steps": 2, "log_every": 1, "optim.warmup_steps": 2,
              "eval.annotations": tiny_store / "val.json", "eval.image_root": tiny_store / "images"}
    argv = ["--seeds", "0,1", "--store", str(tiny_store / "store"), "--out", str(tmp_path / "seeds"), "--rows",
            "base_only", "--hdovd-config", str(configs / "hdovd.yaml"), "--opendet-config", str(configs / "opendet.yaml")]
    argv += [flag for key, value in common.items() for flag in ("--set", f"{key}={value}")]
    argv += [flag for key, value in TINY_HDOVD.items() for flag in ("--hdovd-set", f"{key}={value}")]
    argv += [flag for key, value in TINY_OPENDET_SETTINGS.items() for flag in ("--opendet-set", f"{key}={value}")]
    assert main(argv) == 0
    for seed in (0, 1):
        config = json.loads((tmp_path / "seeds" / f"seed_{seed}" / "opendet_pseudo" / "metrics.json").read_text()
                            )["config"]
        assert (config["seed"], config["stream"]["seed"], config["opendet"]["loss"]["pseudo_names"]) == (seed, seed,
                                                                                                         True)
    summary = json.loads((tmp_path / "seeds" / "seeds.json").read_text())
    assert summary["seeds"] == [0, 1]
    rows = summary["rows"]
    assert {"HD-OVD base_only (class names)", "Open-Det (none (names generated))",
            "Open-Det + pseudo names (none (names generated))"} <= set(rows)
    ap = rows["HD-OVD base_only (class names)"]["AP50_all"]
    assert len(ap["values"]) == 2 and ap["min"] <= ap["mean"] <= ap["max"]
    assert "mean (min–max)" in (tmp_path / "seeds" / "seeds.md").read_text()
    capsys.readouterr()
    assert main(argv) == 0  # both seeds are there: read, not trained again
    assert "== seed" not in capsys.readouterr().out
