"""Every shipped training config (configs/train_*.yaml) resolves, prints with --print-config without touching
anything, and holds the constants of its source."""
import os
from pathlib import Path
from typing import get_args, get_type_hints

import pytest
import yaml

from schemas.config import ConfigError, load_config, to_dict
from trainers.config import TrainConfig
from trainers.hdovd.config import DetectorConfig
from trainers.hdovd.detectors import DETECTORS
from trainers.hdovd.heads import CLASSIFIERS
from trainers.methods import METHODS
from trainers.modeling.backbones import BACKBONES
from trainers.opendet.config import QueryDetectorConfig
from trainers.train import main as train_main

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
PRESETS = sorted(CONFIGS.glob("train_*.yaml"))


def test_the_presets_are_shipped():
    assert {p.name for p in PRESETS} >= {"train_shapes.yaml", "train_ov_coco.yaml", "train_ov_lvis.yaml",
                                         "train_opendet.yaml"}


@pytest.mark.parametrize("preset", PRESETS, ids=lambda p: p.name)
def test_print_config_prints_the_resolved_config_and_touches_nothing(preset, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)  # out_dir and the other relative paths would land here
    assert train_main(["--config", str(preset), "--print-config"]) == 0
    printed = yaml.safe_load(capsys.readouterr().out)
    assert printed == to_dict(load_config(TrainConfig, preset))
    assert not os.listdir(tmp_path)


def test_print_config_applies_overrides(capsys):
    assert train_main(["--config", str(CONFIGS / "train_ov_coco.yaml"), "--set", "hdovd.inference.beta_novel=0.5",
                       "--print-config"]) == 0
    assert yaml.safe_load(capsys.readouterr().out)["hdovd"]["inference"]["beta_novel"] == 0.5


def test_ov_coco_preset_holds_the_papers_constants():
    config = load_config(TrainConfig, CONFIGS / "train_ov_coco.yaml")
    hdovd = config.hdovd
    assert config.method == "hdovd" and config.eval.protocol == "ov_coco"
    assert (hdovd.inference.beta_base, hdovd.inference.beta_novel) == (0.35, 0.65)
    assert (hdovd.loss.tau_ckd, hdovd.loss.tau_rkd, hdovd.detector.tau_cls) == (20.0, 5.0, 50.0)
    assert (hdovd.loss.alpha_instance_contrastive, hdovd.loss.alpha_instance_relational,
            hdovd.loss.alpha_image_contrastive) == (0.5, 5.0, 0.2)
    detector = hdovd.detector
    assert (detector.backbone, detector.min_size, detector.max_size, detector.representation_size,
            detector.box_batch_size_per_image) == ("resnet50", 800, 1333, 1024, 512)
    assert (config.optim.name, config.optim.lr, config.optim.epochs) == ("sgd", 0.02, 12)


def test_ov_lvis_preset_uses_the_lvis_betas_and_protocol():
    config = load_config(TrainConfig, CONFIGS / "train_ov_lvis.yaml")
    assert (config.hdovd.inference.beta_base, config.hdovd.inference.beta_novel) == (0.25, 0.45)
    assert config.eval.protocol == "lvis" and config.hdovd.inference.detections_per_image == 300


def test_opendet_preset_has_the_papers_detector_sizes():
    config = load_config(TrainConfig, CONFIGS / "train_opendet.yaml")
    detector = config.opendet.detector
    assert config.method == "opendet"
    assert (detector.decoder_layers, detector.one_to_one_layers, detector.hidden_dim) == (6, 2, 256)
    assert detector.selection_threshold == 0.05 and config.opendet.name_generator.lora_rank == 16


def test_demo_config_keeps_the_demo_detector():
    config = load_config(TrainConfig, CONFIGS / "train_shapes.yaml")
    assert config.hdovd.detector.embed_dim == 64 and config.hdovd.detector.roi_sampling_ratio == 1
    assert config.hdovd.inference.distill_probability == "softmax"


def test_config_choices_are_the_registries():
    assert set(get_args(get_type_hints(DetectorConfig)["backbone"])) == set(BACKBONES)
    assert set(get_args(get_type_hints(QueryDetectorConfig)["backbone"])) == set(BACKBONES)
    assert set(get_args(get_type_hints(DetectorConfig)["name"])) == set(DETECTORS)
    assert set(get_args(get_type_hints(DetectorConfig)["classifier"])) == set(CLASSIFIERS)
    assert set(get_args(get_type_hints(TrainConfig)["method"])) == set(METHODS)


def test_a_choice_outside_the_literal_names_the_dotted_key():
    with pytest.raises(ConfigError, match="hdovd.detector.backbone"):
        load_config(TrainConfig, None, ["hdovd.detector.backbone=resnet18"])
    with pytest.raises(ValueError, match="opendet.detector.one_to_one_layers"):
        load_config(TrainConfig, None, ["opendet.detector.one_to_one_layers=9"])
