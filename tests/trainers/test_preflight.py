"""A training run checks what it will read before any work: each wrong setting is an error naming its key and the
file that set it, and nothing is trained or written. A store without pseudo labels is no HD-OVD run unless asked for,
and the first line a run prints says how many pseudo boxes and classes it trains on."""
import shutil
from pathlib import Path

import pytest

from tests.featurestore.store_factory import DIM, write_store
from trainers.train import main as train_main


def settings(tiny_store, out, drop: tuple[str, ...] = (), **extra) -> list[str]:
    """--set flags of a tiny HD-OVD run on `tiny_store` (tests/trainers/conftest.py), without the keys starting with
    a prefix in `drop`, with `extra`."""
    values = {"store": tiny_store / "store", "image_root": tiny_store / "images", "out_dir": out,
              "hdovd.detector.embed_dim": DIM, "hdovd.detector.min_size": 64, "hdovd.detector.max_size": 64,
              "batch_size": 2, "num_workers": 0, "max_steps": 1, "eval.annotations": tiny_store / "val.json",
              "eval.image_root": tiny_store / "images", **extra}
    return [arg for key, value in values.items() if not key.startswith(drop) for arg in ("--set", f"{key}={value}")]


@pytest.mark.parametrize("key, value, says", [
    ("eval.annotations", "/datasets/coco/annotations/instances_val2017_ov65.json",
     "config key 'eval.annotations': the evaluation annotation file /datasets/coco/annotations/"),
    ("eval.image_root", "/datasets/coco/val2017", "config key 'eval.image_root': the evaluation images folder"),
    ("image_root", "WRONG", "config key 'image_root': the training images folder"),
    ("store", "WRONG", "config key 'store': "),
])
def test_a_wrong_path_stops_the_run_before_any_work(tiny_store, tmp_path, capsys, key, value, says):
    assert train_main(settings(tiny_store, tmp_path / "run", **{key: value})) == 2
    error = capsys.readouterr().err
    assert says in error and error.rstrip().endswith("(set in --set)")
    assert not (tmp_path / "run").exists()  # nothing trained, nothing written


def test_the_image_root_must_hold_the_stores_images(tiny_store, tmp_path, capsys):
    other = tmp_path / "other_images"
    other.mkdir()
    assert train_main(settings(tiny_store, tmp_path / "run", image_root=other)) == 2
    assert "the store's images are not under" in capsys.readouterr().err


def test_the_preset_placeholder_is_named_with_its_file(tiny_store, tmp_path, capsys):
    """configs/ov_coco/hdovd.yaml's evaluation path is a placeholder: the error names the key and that file."""
    argv = ["--config", str(Path(__file__).resolve().parents[2] / "configs/ov_coco/hdovd.yaml"),
            *settings(tiny_store, tmp_path / "run", drop=("eval.",), **{"hdovd.detector.backbone_weights": "null"})]
    assert train_main(argv) == 2
    error = capsys.readouterr().err
    assert "config key 'eval.annotations'" in error and error.rstrip().endswith("configs/ov_coco/hdovd.yaml)")


def test_a_missing_backbone_file_is_named_for_training_only(tiny_store, tmp_path, capsys):
    argv = settings(tiny_store, tmp_path / "run", **{"hdovd.detector.backbone": "resnet50",
                                                     "hdovd.detector.backbone_weights": tmp_path / "resnet50.pth"})
    assert train_main(argv) == 2
    error = capsys.readouterr().err
    assert "config key 'hdovd.detector.backbone_weights': the backbone's ImageNet weights file" in error


def test_hdovd_refuses_a_store_without_pseudo_labels_unless_asked(tiny_store, tmp_path, capsys):
    world = tmp_path / "world"
    shutil.copytree(tiny_store, world)
    shutil.rmtree(world / "store")
    write_store(world / "store", shards=2, with_pseudo_labels=False)
    assert train_main(settings(world, tmp_path / "refused")) == 2
    error = capsys.readouterr().err
    assert "config key 'store': " in error and "has no pseudo labels" in error
    assert "set hdovd.allow_no_pseudo_labels=true" in error and error.rstrip().endswith("(set in --set)")
    assert not (tmp_path / "refused").exists()
    # Asked for: it trains, and says first what it trains on.
    allowed = settings(world, tmp_path / "allowed", **{"hdovd.allow_no_pseudo_labels": True})
    assert train_main(["--no-eval", *allowed]) == 0
    lines = [line for line in capsys.readouterr().out.splitlines() if not line.startswith("config:")]
    assert lines[0].startswith("hdovd: 12 pseudo boxes distilled (CKD, RKD); no pseudo classes: store")
    assert "this trains Table V's row without Cls., not HD-OVD" in lines[0]
    # The base-only row needs none, and says so.
    assert train_main(["--no-eval", *settings(world, tmp_path / "base", **{"hdovd.loss.pseudo_classes": False})]) == 0
    first = [line for line in capsys.readouterr().out.splitlines() if not line.startswith("config:")][0]
    assert first == "hdovd: 12 pseudo boxes distilled (CKD, RKD); no pseudo classes (hdovd.loss.pseudo_classes=false)"


def test_the_first_line_counts_the_pseudo_boxes_and_classes(tiny_store, tmp_path, capsys):
    assert train_main(["--no-eval", *settings(tiny_store, tmp_path / "run")]) == 0
    first = [line for line in capsys.readouterr().out.splitlines() if not line.startswith("config:")][0]
    # store_factory: 2 shards x 3 images x 2 proposals, every one labelled "star"
    assert first == "hdovd: 12 pseudo boxes distilled (CKD, RKD); 12 of them labelled, 1 distinct pseudo classes"


def test_opendet_pseudo_names_need_pseudo_labels(tiny_store, tmp_path, capsys):
    world = tmp_path / "world"
    shutil.copytree(tiny_store, world)
    shutil.rmtree(world / "store")
    write_store(world / "store", shards=2, with_pseudo_labels=False)
    argv = settings(world, tmp_path / "run", drop=("hdovd.",), method="opendet", **{"opendet.loss.pseudo_names": True})
    assert train_main(argv) == 2
    assert "config key 'opendet.loss.pseudo_names'" in capsys.readouterr().err
