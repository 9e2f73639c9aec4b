"""Config loading: YAML, dotted overrides, type checks, and unknown keys named in the error."""
from dataclasses import dataclass, field
from typing import Literal

import pytest

from schemas.config import ConfigError, config_hash, load_config, to_dict


@dataclass(frozen=True)
class Crop:
    mode: Literal["tight", "square", "context"] = "square"
    scale: float = 1.5


@dataclass(frozen=True)
class StageConfig:
    store: str = "data/store"
    shard_size: int = 256
    crop: Crop = field(default_factory=Crop)
    templates: tuple[str, ...] = ("a photo of a {}.",)


def test_defaults_file_and_overrides(tmp_path):
    path = tmp_path / "stage.yaml"
    path.write_text("shard_size: 64\ncrop:\n  mode: tight\n")
    config = load_config(StageConfig, path, ["crop.scale=2", "store=/elsewhere", "templates=['a {}', 'b {}']"])
    assert config == StageConfig(store="/elsewhere", shard_size=64, crop=Crop("tight", 2.0),
                                 templates=("a {}", "b {}"))


def test_unknown_key_is_named(tmp_path):
    path = tmp_path / "stage.yaml"
    path.write_text("crop:\n  mdoe: tight\n")
    with pytest.raises(ConfigError, match=r"unknown config key 'crop.mdoe' \(valid keys here: mode, scale\)"):
        load_config(StageConfig, path)
    with pytest.raises(ConfigError, match="unknown config key 'shardsize'"):
        load_config(StageConfig, None, ["shardsize=3"])


def test_wrong_type_and_choice_are_refused():
    with pytest.raises(ConfigError, match="'shard_size': expected int"):
        load_config(StageConfig, None, ["shard_size=many"])
    with pytest.raises(ConfigError, match="not one of"):
        load_config(StageConfig, None, ["crop.mode=round"])


def test_missing_file_names_the_flag(tmp_path):
    with pytest.raises(ConfigError, match="--config"):
        load_config(StageConfig, tmp_path / "missing.yaml")


def test_config_is_frozen_and_hash_follows_settings():
    config = load_config(StageConfig)
    with pytest.raises(AttributeError):
        config.shard_size = 3
    assert config_hash(config) == config_hash(load_config(StageConfig))
    assert config_hash(config) != config_hash(load_config(StageConfig, None, ["crop.scale=1.6"]))
    assert to_dict(config)["crop"] == {"mode": "square", "scale": 1.5}
