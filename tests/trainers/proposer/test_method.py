"""The proposal network as a method of the training engine: it trains from the base-class file alone (held-out,
full and validation files absent), refuses a file with a novel box before any work, goes on past an unreadable
image, resumes its stream exactly, and its checkpoint is what the proposals job loads."""
from __future__ import annotations

import json
import shutil

import pytest
import torch
from torch.utils.data import DataLoader

from tests.trainers.training_helpers import evaluate_run, train_run
from trainers.methods import load_run_config
from trainers.proposer.base_boxes import read_base_boxes
from trainers.proposer.base_file import main as base_file_main
from trainers.proposer.dataset import BaseBoxDataset, BaseBoxStream, ImageAugmentation
from trainers.proposer.inference import ProposalGenerator
from trainers.train import main as train_main


@pytest.fixture(scope="module")
def full_file(sample, tmp_path_factory):
    """The base boxes and the held-out novel boxes in one file, as a full instances file has them."""
    annotations = sample / "annotations"
    base = json.loads((annotations / "train_base.json").read_text())
    novel = json.loads((annotations / "train_novel_heldout.json").read_text())["annotations"]
    path = tmp_path_factory.mktemp("full") / "train_full.json"
    path.write_text(json.dumps({**base, "annotations": base["annotations"] + novel}))
    return path


def run_settings(data, out, **overrides) -> list[str]:
    settings = {"method": "proposer", "out_dir": out, "batch_size": 4, "num_workers": 0, "log_every": 1,
                "optim.warmup_steps": 2, "proposer.data.annotations": data / "annotations" / "train_base.json",
                "proposer.data.image_root": data / "images" / "train", "proposer.data.split": data / "ov_split.json",
                "eval.novel_annotations": None, "eval.max_dets": "[5,10]"}
    settings.update(overrides)
    return [f"{key}={'null' if value is None else value}" for key, value in settings.items()]


def test_trains_on_the_base_file_alone_and_the_proposals_job_loads_its_checkpoint(sample, tmp_path):
    data = tmp_path / "data"
    (data / "annotations").mkdir(parents=True)
    shutil.copy(sample / "annotations" / "train_base.json", data / "annotations")
    shutil.copy(sample / "ov_split.json", data)
    shutil.copytree(sample / "images" / "train", data / "images" / "train")  # no held-out, full or val file
    config = load_run_config(None, run_settings(data, tmp_path / "run", max_steps=2))
    checkpoint = train_run(config)
    metrics = evaluate_run(config, checkpoint)
    assert set(metrics) == {"base"} and 0.0 <= metrics["base"]["AR@10"] <= metrics["base"]["R50@10"] <= 1.0
    saved = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert saved["num_gt"]["base"] == sum(len(image.boxes) for image in
                                          read_base_boxes(str(data / "annotations" / "train_base.json"),
                                                          str(data / "ov_split.json")).images)
    generator = ProposalGenerator.from_checkpoint(checkpoint)
    pixels = torch.randint(0, 255, (96, 160, 3), dtype=torch.uint8).numpy()
    (proposals,) = generator([pixels])
    assert proposals.shape[1] == 5 and len(proposals) <= config.proposer.output.top_k


def test_a_file_with_a_novel_box_is_refused_before_any_work(sample, full_file, tmp_path, capsys):
    settings = run_settings(sample, tmp_path / "run", **{"proposer.data.annotations": full_file})
    assert train_main([arg for setting in settings for arg in ("--set", setting)]) == 2
    error = capsys.readouterr().err
    assert "proposer.data.annotations" in error and "train_full.json" in error and "novel" in error
    assert not (tmp_path / "run").exists()


def test_the_base_file_tool_cuts_the_novel_boxes_out(sample, full_file, tmp_path):
    out = tmp_path / "base.json"
    assert base_file_main([str(full_file), str(sample / "ov_split.json"), str(out)]) == 0
    cut = read_base_boxes(str(out), str(sample / "ov_split.json"))  # refused if a novel box were left
    given = read_base_boxes(str(sample / "annotations" / "train_base.json"), str(sample / "ov_split.json"))
    assert [image.record for image in cut.images] == [image.record for image in given.images]


def test_an_unreadable_image_is_named_and_skipped(sample, tmp_path, capsys):
    images = tmp_path / "images"
    shutil.copytree(sample / "images" / "train", images)
    boxes = read_base_boxes(str(sample / "annotations" / "train_base.json"), str(sample / "ov_split.json"))
    broken = boxes.images[0].record.file_name
    (images / broken).write_bytes(b"not an image")
    config = load_run_config(None, run_settings(sample, tmp_path / "run", max_steps=3, batch_size=4,
                                                **{"proposer.data.image_root": images}))
    assert train_run(config).is_file()
    assert f"skipped image {boxes.images[0].record.image_id} ({broken})" in capsys.readouterr().out


@pytest.mark.parametrize("workers", [0, 2])
def test_the_stream_resumes_at_the_next_batch_and_splits_whole_batches_among_workers(sample, workers):
    boxes = read_base_boxes(str(sample / "annotations" / "train_base.json"), str(sample / "ov_split.json"))
    stream = BaseBoxStream(BaseBoxDataset(boxes, str(sample / "images" / "train"), ImageAugmentation()), 3, seed=1)

    def epoch_ids(epoch: int, batches_done: int) -> list[list[int]]:
        stream.set_position(epoch, batches_done)
        loader = DataLoader(stream, batch_size=3, num_workers=workers, collate_fn=list)
        return [[sample.image_id for sample in batch] for batch in loader]

    whole = epoch_ids(0, 0)
    assert sorted(i for batch in whole for i in batch) == sorted(image.record.image_id for image in boxes.images)
    assert epoch_ids(0, 2) == whole[2:]
    assert epoch_ids(1, 0) != whole  # a new order each epoch
