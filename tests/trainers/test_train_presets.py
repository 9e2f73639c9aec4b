"""Every shipped training preset and variant (configs/) resolves, prints with --print-config without touching
anything, carries only its own method's section, and holds the constants of its source."""
import dataclasses
import os
from pathlib import Path
from typing import get_args, get_type_hints

import pytest
import yaml

from schemas.config import ConfigError, to_dict
from trainers.hdovd.config import CLASSIFIER_OF_LOSS, DetectorConfig
from trainers.hdovd.detectors import DETECTORS
from trainers.hdovd.heads import CLASSIFIERS
from trainers.methods import METHODS, load_run_config
from trainers.modeling.backbones import BACKBONES
from trainers.modeling.query_detector import QueryDetectorConfig
from trainers.train import main as train_main

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
PRESETS = {"shapes/hdovd.yaml": "hdovd", "shapes/opendet.yaml": "opendet", "ov_coco/hdovd.yaml": "hdovd",
           "ov_lvis/hdovd.yaml": "hdovd", "vg/opendet.yaml": "opendet", "shapes/proposer.yaml": "proposer",
           "ov_coco/proposer.yaml": "proposer", "ov_lvis/proposer.yaml": "proposer"}
VARIANTS = sorted(path.name for path in (CONFIGS / "variants").glob("*.yaml"))


def test_the_presets_and_variants_are_shipped():
    assert all((CONFIGS / preset).is_file() for preset in PRESETS)
    assert {"hdovd_paper.yaml", "hdovd_released.yaml", "opendet_paper.yaml", "opendet_released.yaml",
            "opendet_paper_detection.yaml", "opendet_paper_names.yaml"} <= set(VARIANTS)


@pytest.mark.parametrize("preset", PRESETS)
def test_print_config_prints_only_its_methods_keys_and_touches_nothing(preset, tmp_path, monkeypatch, capsys):
    path = CONFIGS / preset
    monkeypatch.chdir(tmp_path)  # out_dir and the other relative paths would land here
    assert train_main(["--config", str(path), "--print-config"]) == 0
    printed = yaml.safe_load(capsys.readouterr().out)
    method = PRESETS[preset]
    assert printed == to_dict(load_run_config(path)) and printed["method"] == method
    assert method in printed and not set(METHODS) - {method} & set(printed)
    assert not os.listdir(tmp_path)


def test_an_hdovd_run_prints_under_a_hundred_lines_of_keys(capsys):
    assert train_main(["--config", str(CONFIGS / "ov_coco/hdovd.yaml"), "--print-config"]) == 0
    assert len(capsys.readouterr().out.splitlines()) <= 100


@pytest.mark.parametrize("variant", VARIANTS)
def test_each_variant_overlays_its_methods_preset(variant):
    method = variant.split("_")[0]
    preset = "ov_coco/hdovd.yaml" if method == "hdovd" else "vg/opendet.yaml"
    plain = to_dict(load_run_config(CONFIGS / preset))
    layered = to_dict(load_run_config([CONFIGS / preset, CONFIGS / "variants" / variant]))
    assert layered["method"] == method
    if not variant.endswith("_released.yaml"):  # the released forms are the defaults the presets keep
        assert layered != plain


def test_the_paper_variant_is_both_halves_and_the_best_beam():
    paper = load_run_config([CONFIGS / "vg/opendet.yaml", CONFIGS / "variants/opendet_paper.yaml"]).opendet
    assert paper.loss.binary_loss == "eq4" and paper.distiller.form == "paper"
    assert paper.loss.match_cost_form == "probability" and paper.alignment.refine_queries is False
    assert paper.name_generator.lora_base_trainable is False and paper.inference.join_beams is False


def test_print_config_applies_overrides(capsys):
    assert train_main(["--config", str(CONFIGS / "ov_coco/hdovd.yaml"), "--set", "hdovd.inference.beta_novel=0.5",
                       "--print-config"]) == 0
    assert yaml.safe_load(capsys.readouterr().out)["hdovd"]["inference"]["beta_novel"] == 0.5


def test_ov_coco_preset_is_the_released_recipe_with_the_papers_temperatures():
    config = load_run_config(CONFIGS / "ov_coco/hdovd.yaml")
    hdovd = config.hdovd
    assert config.method == "hdovd" and config.eval.protocol == "ov_coco"
    assert "_base_: ../variants/hdovd_released.yaml" in (CONFIGS / "ov_coco/hdovd.yaml").read_text()
    assert (hdovd.inference.beta_base, hdovd.inference.beta_novel) == (0.25, 0.45)
    assert (hdovd.loss.tau_ckd, hdovd.loss.tau_rkd, hdovd.detector.tau_cls) == (20.0, 5.0, 50.0)
    assert (hdovd.loss.alpha_instance_contrastive, hdovd.loss.alpha_instance_relational,
            hdovd.loss.alpha_image_contrastive) == (0.1, 1.0, 0.1)
    detector = hdovd.detector
    assert (detector.backbone, detector.min_size, detector.max_size, detector.representation_size,
            detector.box_batch_size_per_image) == ("resnet50", 800, 1333, 1024, 512)
    assert (config.optim.name, config.optim.lr, config.optim.epochs) == ("sgd", 0.02, 12)


def test_ov_lvis_preset_is_the_coco_preset_and_its_differences():
    lvis, coco = load_run_config(CONFIGS / "ov_lvis/hdovd.yaml"), load_run_config(CONFIGS / "ov_coco/hdovd.yaml")
    assert (lvis.hdovd.inference.beta_base, lvis.hdovd.inference.beta_novel) == (0.25, 0.45)
    assert lvis.eval.protocol == "lvis" and lvis.hdovd.inference.detections_per_image == 300
    assert lvis.hdovd.detector == coco.hdovd.detector and lvis.hdovd.loss == coco.hdovd.loss
    assert lvis.optim == coco.optim
    text = (CONFIGS / "ov_lvis/hdovd.yaml").read_text()
    assert "_base_: ../ov_coco/hdovd.yaml" in text and len(text.splitlines()) < 40


def test_opendet_preset_has_the_papers_detector_sizes():
    config = load_run_config(CONFIGS / "vg/opendet.yaml")
    detector = config.opendet.detector
    assert config.method == "opendet"
    assert (detector.decoder_layers, detector.one_to_one_layers, detector.hidden_dim) == (6, 2, 256)
    assert detector.selection_threshold == 0.05 and config.opendet.name_generator.lora_rank == 16


def test_demo_configs_keep_the_demo_detector_and_share_the_engine_keys():
    hdovd, opendet = load_run_config(CONFIGS / "shapes/hdovd.yaml"), load_run_config(CONFIGS / "shapes/opendet.yaml")
    assert hdovd.hdovd.detector.embed_dim == 64 and hdovd.hdovd.detector.roi_sampling_ratio == 1
    assert hdovd.hdovd.inference.distill_probability == "softmax"
    assert opendet.opendet.loss.weight_name == 5.0 and opendet.opendet.detector.resize == "square"
    assert opendet.opendet.loss.pseudo_min_proposal_score == 0.7
    # Open-Det trains 6 epochs of the shared schedule, HD-OVD 4; every other engine key is shared.
    assert (hdovd.optim.schedule_scale, opendet.optim.schedule_scale) == (0.34, 0.5)
    assert (hdovd.optim, hdovd.stream, hdovd.eval, hdovd.store) == (
        dataclasses.replace(opendet.optim, schedule_scale=0.34), opendet.stream, opendet.eval, opendet.store)


def test_config_choices_are_the_registries():
    assert set(get_args(get_type_hints(DetectorConfig)["backbone"])) == set(BACKBONES)
    assert set(get_args(get_type_hints(QueryDetectorConfig)["backbone"])) == set(BACKBONES)
    assert set(get_args(get_type_hints(DetectorConfig)["name"])) == set(DETECTORS)
    assert set(CLASSIFIER_OF_LOSS.values()) == set(CLASSIFIERS)
    assert {method.run_config().method for method in METHODS.values()} == set(METHODS)


def test_a_choice_outside_the_literal_names_the_dotted_key():
    with pytest.raises(ConfigError, match="hdovd.detector.backbone"):
        load_run_config(None, ["hdovd.detector.backbone=resnet18"])
    with pytest.raises(ConfigError, match="opendet.detector.one_to_one_layers"):
        load_run_config(None, ["method=opendet", "opendet.detector.one_to_one_layers=9"])


def test_another_methods_keys_are_an_error_that_says_so(tmp_path):
    with pytest.raises(ConfigError, match="section of method opendet, but this run's method is hdovd .*--set"):
        load_run_config(CONFIGS / "shapes/hdovd.yaml", ["opendet.loss.weight_name=2"])
    with pytest.raises(ConfigError, match=r"method is opendet \(set in .*shapes/hdovd.yaml\)"):
        load_run_config([CONFIGS / "shapes/opendet.yaml", CONFIGS / "shapes/hdovd.yaml"], ["method=opendet"])
    with pytest.raises(ConfigError, match="'method': 'yolo' is unknown"):
        load_run_config(None, ["method=yolo"])


def test_a_wrong_value_names_the_file_that_set_it(tmp_path):
    overlay = tmp_path / "overlay.yaml"
    overlay.write_text("_base_: " + str(CONFIGS / "shapes/hdovd.yaml") + "\nbatch_size: true\n")
    with pytest.raises(ConfigError, match=f"'batch_size': expected int, got the boolean True \\(set in {overlay}\\)"):
        load_run_config(overlay)
