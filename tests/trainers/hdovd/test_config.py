"""HdovdConfig: YAML + overrides through the project loader; the keys without freedom are derived, not configured."""
import pytest

from schemas.config import ConfigError, load_config
from trainers.hdovd.config import HdovdConfig


def test_yaml_and_overrides_reach_every_section(tmp_path):
    path = tmp_path / "hdovd.yaml"
    path.write_text("loss:\n  classification_variant: weighted_softmax\n")
    config = load_config(HdovdConfig, path, ["loss.instance_relational=false", "inference.beta_novel=0.45"])
    assert config.loss.instance_relational is False and config.loss.tau_rkd == 5.0
    assert config.inference.beta_novel == 0.45


def test_the_classifier_head_follows_the_classification_loss():
    assert load_config(HdovdConfig).classifier == "sigmoid"
    assert load_config(HdovdConfig, None, ["loss.classification_variant=weighted_softmax"]).classifier == \
        "softmax_background"


def test_keys_without_freedom_are_not_config_keys():
    with pytest.raises(ConfigError, match="inference.tau_distill"):
        load_config(HdovdConfig, None, ["inference.tau_distill=10"])
    with pytest.raises(ConfigError, match="detector.classifier"):
        load_config(HdovdConfig, None, ["detector.classifier=sigmoid"])


def test_unknown_keys_are_errors():
    with pytest.raises(ConfigError, match="loss.tau_typo"):
        load_config(HdovdConfig, None, ["loss.tau_typo=3"])
