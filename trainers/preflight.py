"""What a store-streaming training run checks before any work: the store, the image folder, the files its evaluation
reads, the backbone file, and what the store holds for pseudo boxes. `trainers.train` calls its method's `check`
with what the run will do (train, evaluate, or both) before anything is built; each failure is a ConfigError naming
the config key (trainers.train adds the file or --set that set it)."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from featurestore.reader import StoreReader
from schemas.config import ConfigError
from schemas.tables import SchemaVersionError
from trainers.config import StoreTrainConfig
from vlm.images import PathEscapeError, resolve_image_path


def _local(path: str) -> bool:
    return "://" not in path  # object-store URLs are read through fsspec; only local paths are checked here


def check_file(key: str, path: str | None, what: str) -> None:
    if path and _local(path) and not Path(path).is_file():
        raise ConfigError(f"config key '{key}': {what} {path} does not exist")


def check_folder(key: str, path: str, what: str) -> None:
    if _local(path) and not Path(path).is_dir():
        raise ConfigError(f"config key '{key}': {what} {path} is not a folder")


def open_store(config: StoreTrainConfig) -> StoreReader:
    """The run's store, with committed extract-features regions."""
    try:
        reader = StoreReader(config.store)
    except (FileNotFoundError, SchemaVersionError) as error:
        raise ConfigError(f"config key 'store': {error}") from error
    if not reader.shards("regions"):
        raise ConfigError(f"config key 'store': {config.store} has no committed extract-features regions; run "
                          f"make extract-features first")
    return reader


def check_image_root(reader: StoreReader, image_root: str) -> None:
    """The store's first image must be found under `image_root` (where images.file_name resolve)."""
    check_folder("image_root", image_root, "the training images folder")
    first = reader.read_shard("images", reader.shards("images")[0], ["file_name"]).column("file_name")
    if not len(first) or not _local(image_root):
        return
    try:
        path = resolve_image_path(image_root, first[0].as_py())
    except PathEscapeError as error:
        raise ConfigError(f"config key 'image_root': {error}") from error
    if not Path(path).is_file():
        raise ConfigError(f"config key 'image_root': the store's images are not under {image_root} (no "
                          f"{first[0].as_py()} there); give the folder extract-features read (its dataset.image_root)")


def check_store_run(config: StoreTrainConfig, training: bool, evaluating: bool, backbone_key: str,
                    backbone_weights: str | None) -> StoreReader:
    """The checks every store-streaming method shares; returns the store's reader."""
    reader = open_store(config)
    if training:
        check_image_root(reader, config.image_root)
        check_file(backbone_key, backbone_weights, "the backbone's ImageNet weights file")
    if evaluating:
        check_file("eval.annotations", config.eval.annotations, "the evaluation annotation file")
        check_folder("eval.image_root", config.eval.image_root, "the evaluation images folder")
    return reader


@dataclass(frozen=True)
class PseudoBoxCounts:
    """What the store holds for the pseudo boxes a run trains on."""

    boxes: int  # regions of source proposal
    labelled: int  # of those, with a pseudo label (0 without a pseudo_labels stage)
    labels: int  # distinct labels among the kept labelled boxes
    left_out: int  # labelled boxes whose label `excluded` leaves out (drop_pseudo_labels_naming_base)
    has_stage: bool  # whether the store has committed pseudo_labels shards


def pseudo_box_counts(reader: StoreReader, excluded: Callable[[str], bool] | None) -> PseudoBoxCounts:
    boxes = sum(source == "proposal" for batch in reader.stream("regions", ["source"])
                for source in batch.column("source").to_pylist())
    if not reader.shards("pseudo_labels"):
        return PseudoBoxCounts(boxes, 0, 0, 0, False)
    labels = [label for batch in reader.stream("pseudo_labels", ["label"]) for label in
              batch.column("label").to_pylist() if label is not None]
    kept = [label for label in labels if excluded is None or not excluded(label)]
    return PseudoBoxCounts(boxes, len(labels), len(set(kept)), len(labels) - len(kept), True)
