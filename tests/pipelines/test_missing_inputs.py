"""A missing or unreadable input file of extract-features is named with the config key that set it: annotations,
split file, proposals (JSON and pickle), object names."""
import json

import pytest

from pipelines.coco import AnnotationError
from pipelines.extract_config import ExtractFeaturesConfig
from pipelines.extract_plan import plan_dataset
from schemas.config import load_config
from tests.beam_jobs.sample import make_sample


@pytest.fixture(scope="module")
def sample(tmp_path_factory):
    return make_sample(tmp_path_factory.mktemp("inputs") / "sample", images=2)


def config(sample, **changed):
    keys = {"annotations": sample.annotations, "image_root": sample.image_root, "split": sample.split,
            "proposals": sample.proposals, **changed}
    return load_config(ExtractFeaturesConfig, None, [f"dataset.{key}={value}" for key, value in keys.items()])


@pytest.mark.parametrize("key, what", [("annotations", "annotation file"), ("split", "split file"),
                                       ("proposals", "proposals file"), ("names", "names file")])
def test_a_missing_input_file_names_its_key(sample, tmp_path, key, what):
    missing = tmp_path / f"no-{key}.json"
    with pytest.raises(FileNotFoundError) as error:
        plan_dataset(config(sample, **{key: missing}))
    assert f"{what} not found: {missing}" in str(error.value) and f"config key dataset.{key}" in str(error.value)


def test_a_missing_proposals_pickle_names_its_key(sample, tmp_path):
    with pytest.raises(FileNotFoundError, match="config key dataset.proposals"):
        plan_dataset(config(sample, proposals=tmp_path / "boxes.pkl"))


@pytest.mark.parametrize("key", ["annotations", "split", "proposals"])
def test_an_input_that_is_not_json_names_its_key(sample, tmp_path, key):
    broken = tmp_path / f"broken-{key}.json"
    broken.write_text('{"images": [')
    with pytest.raises(AnnotationError, match=f"config key dataset.{key}.*not valid JSON"):
        plan_dataset(config(sample, **{key: broken}))
    json.loads(sample.annotations.read_text())  # the sample itself is fine
