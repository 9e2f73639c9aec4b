"""HdovdConfig: YAML + overrides through the project loader; mismatched heads and losses are refused."""
import pytest

from schemas.config import ConfigError, load_config
from trainers.hdovd.config import HdovdConfig


def test_yaml_and_overrides_reach_every_section(tmp_path):
    path = tmp_path / "hdovd.yaml"
    path.write_text("loss:\n  classification_variant: weighted_softmax\n"
                    "detector:\n  classifier: softmax_background\n")
    config = load_config(HdovdConfig, path, ["loss.instance_relational=false", "inference.beta_novel=0.45"])
    assert config.detector.classifier == "softmax_background"
    assert config.loss.instance_relational is False and config.loss.tau_rkd == 5.0
    assert config.inference.beta_novel == 0.45


def test_mismatched_classifier_and_loss_are_refused():
    with pytest.raises(ValueError, match="detector.classifier=softmax_background"):
        load_config(HdovdConfig, None, ["loss.classification_variant=weighted_softmax"])
    with pytest.raises(ValueError, match="inference.tau_distill"):
        load_config(HdovdConfig, None, ["inference.tau_distill=10"])


def test_unknown_keys_are_errors():
    with pytest.raises(ConfigError, match="loss.tau_typo"):
        load_config(HdovdConfig, None, ["loss.tau_typo=3"])
