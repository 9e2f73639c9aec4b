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


@dataclass(frozen=True)
class Ranged:
    workers: int = 1

    def __post_init__(self) -> None:
        if self.workers < 1:
            raise ValueError(f"runtime.workers must be >= 1, got {self.workers}")


@dataclass(frozen=True)
class WithRange:
    runtime: Ranged = field(default_factory=Ranged)
    verbose: bool = False


def test_files_layer_left_to_right_each_after_its_bases(tmp_path):
    (tmp_path / "presets").mkdir()
    (tmp_path / "presets" / "base.yaml").write_text("shard_size: 64\ncrop:\n  mode: tight\n  scale: 2\n")
    (tmp_path / "presets" / "coco.yaml").write_text("_base_: base.yaml\ncrop:\n  scale: 3\n")
    (tmp_path / "overlay.yaml").write_text("store: /elsewhere\n")
    config = load_config(StageConfig, [tmp_path / "presets" / "coco.yaml", tmp_path / "overlay.yaml"],
                         ["shard_size=8"])
    assert config == StageConfig(store="/elsewhere", shard_size=8, crop=Crop("tight", 3.0))
    (tmp_path / "both.yaml").write_text("_base_: [presets/coco.yaml, overlay.yaml]\nshard_size: 16\n")
    assert load_config(StageConfig, tmp_path / "both.yaml") == StageConfig(
        store="/elsewhere", shard_size=16, crop=Crop("tight", 3.0))


def test_a_base_cycle_and_a_missing_base_are_named(tmp_path):
    (tmp_path / "a.yaml").write_text("_base_: b.yaml\n")
    (tmp_path / "b.yaml").write_text("_base_: a.yaml\n")
    with pytest.raises(ConfigError, match=r"include each other through _base_: .*a.yaml -> .*b.yaml -> .*a.yaml"):
        load_config(StageConfig, tmp_path / "a.yaml")
    (tmp_path / "c.yaml").write_text("_base_: missing.yaml\n")
    with pytest.raises(ConfigError, match=r"config file not found: .*missing.yaml \(_base_ of .*c.yaml\)"):
        load_config(StageConfig, tmp_path / "c.yaml")


def test_errors_name_the_file_that_set_the_key(tmp_path):
    (tmp_path / "base.yaml").write_text("crop:\n  mode: round\n")
    (tmp_path / "top.yaml").write_text("_base_: base.yaml\nshard_size: 3\n")
    with pytest.raises(ConfigError, match=r"'crop.mode'.*not one of .*\(set in .*base.yaml\)"):
        load_config(StageConfig, tmp_path / "top.yaml")


def test_types_are_strict():
    with pytest.raises(ConfigError, match="'shard_size': expected int, got the boolean True"):
        load_config(StageConfig, None, ["shard_size=true"])
    with pytest.raises(ConfigError, match="'crop.scale': expected float, got the boolean"):
        load_config(StageConfig, None, ["crop.scale=false"])
    with pytest.raises(ConfigError, match="'store': expected str, got 5"):
        load_config(StageConfig, None, ["store=5"])
    with pytest.raises(ConfigError, match="'crop' is a section: give it a mapping of its keys"):
        load_config(StageConfig, None, ["crop=5"])
    with pytest.raises(ConfigError, match="'verbose': expected bool"):
        load_config(WithRange, None, ["verbose=1"])


def test_a_value_out_of_range_is_a_config_error_naming_the_key():
    with pytest.raises(ConfigError, match=r"runtime.workers must be >= 1, got 0 \(set in --set\)"):
        load_config(WithRange, None, ["runtime.workers=0"])
