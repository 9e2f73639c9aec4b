"""The two stage configs share one RuntimeSection; what it and pseudo-labels' `pick` section say (how a job runs)
never enters a shard fingerprint, what the stage computes always does."""
from pathlib import Path

import pytest

from pipelines.extract_config import ExtractFeaturesConfig, ExtractRuntimeSection
from pipelines.pseudo_labels_config import PseudoLabelsConfig
from pipelines.runtime_section import RuntimeSection
from beam_jobs.extract_features import main as extract_features_main
from schemas.config import ConfigError, load_config

CONFIGS = Path(__file__).resolve().parents[2] / "configs" / "shapes"


def test_the_shipped_configs_share_one_runtime_section():
    extract = load_config(ExtractFeaturesConfig, CONFIGS / "extract_features.yaml")
    labels = load_config(PseudoLabelsConfig, CONFIGS / "pseudo_labels.yaml")
    assert extract.runtime == ExtractRuntimeSection(max_failure_rate=0.01, shards_per_run=4)
    assert isinstance(extract.runtime, RuntimeSection)  # the shared keys, plus where extract-features cuts crops
    assert labels.runtime == RuntimeSection(min_batch_size=4, max_batch_size=32, max_failure_rate=0.05)
    assert labels.pick.batch_size == 64
    assert PseudoLabelsConfig().runtime == labels.runtime  # the stage's own defaults, file or no file


@pytest.mark.parametrize("cls, file, how, what", [
    (ExtractFeaturesConfig, "extract_features.yaml",
     ["runtime.device=cpu", "runtime.max_batch_size=8", "runtime.shards_per_run=1", "runtime.max_failure_rate=1.0",
      "runtime.crop_on=device", "runtime.crop_resize=batched"],
     "crop.mode=tight"),
    (PseudoLabelsConfig, "pseudo_labels.yaml",
     ["runtime.large_model=true", "runtime.shards_per_run=0", "pick.batch_size=2"], "score.k=1.0")])
def test_how_a_job_runs_is_left_out_of_the_content_hash(cls, file, how, what):
    shipped = load_config(cls, CONFIGS / file)
    assert load_config(cls, CONFIGS / file, how).content_hash() == shipped.content_hash()
    assert load_config(cls, CONFIGS / file, [what]).content_hash() != shipped.content_hash()


def test_the_fault_injection_key_is_gone():
    with pytest.raises(ConfigError, match="runtime.crash_after_commits"):
        load_config(ExtractFeaturesConfig, overrides=["runtime.crash_after_commits=1"])


def test_where_crops_are_cut_is_a_key_of_extract_features_only():
    with pytest.raises(ConfigError, match="runtime.crop_on"):
        load_config(PseudoLabelsConfig, overrides=["runtime.crop_on=device"])


@pytest.mark.parametrize("override, message", [
    ("shard_size=0", "shard_size must be >= 1, got 0"),
    ("shard_size=true", "'shard_size': expected int, got the boolean True"),
    ("dataset=5", "'dataset' is a section: give it a mapping"),
    ("regions.top_k=-1", "regions.top_k must be >= 0"),
    ("regions.nms_iou=1.5", "regions.nms_iou must be in"),
    ("runtime.max_failure_rate=-0.1", "runtime.max_failure_rate must be >= 0"),
    ("runtime.min_batch_size=0", "runtime.min_batch_size=0"),
    ("crop.context_scale=0", "crop.context_scale must be > 0"),
])
def test_a_bad_value_is_a_config_error_naming_the_key(override, message):
    with pytest.raises(ConfigError, match=f"{message}.*set in --set"):
        load_config(ExtractFeaturesConfig, CONFIGS / "extract_features.yaml", [override])


def test_a_job_refuses_a_bad_value_before_any_work(tmp_path, capsys):
    assert extract_features_main(["--store", str(tmp_path / "store"), "--set", "shard_size=0"]) == 2
    assert "shard_size must be >= 1" in capsys.readouterr().err
    assert not (tmp_path / "store").exists()
