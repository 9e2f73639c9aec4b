"""Settings of the proposals stage (configs/shapes/proposals.yaml): the trained proposal network run over every image
of a dataset into the store's `proposals` table. Loaded with schemas.config; every key is documented here."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from pipelines.runtime_section import RuntimeSection
from schemas.config import config_hash


@dataclass(frozen=True)
class ProposalImagesSection:
    """The images to run over: every image the annotation file lists (its boxes are not read)."""

    annotations: str = "data/shapes/annotations/train_base.json"  # COCO / LVIS instances JSON
    image_root: str = "data/shapes/images/train"  # local folder or any Beam FileSystems path
    max_images: int = 0  # first N images by id (0 = all), as extract-features' dataset.max_images cuts them

    def __post_init__(self) -> None:
        if self.max_images < 0:
            raise ValueError(f"dataset.max_images must be >= 0 (0 = all), got {self.max_images}")


@dataclass(frozen=True)
class ProposerSection:
    # A checkpoint of the proposal network (python -m trainers.train with a proposer preset writes
    # <out_dir>/checkpoint.pt). Its sha256 is part of every shard's fingerprint and of the manifest's model record.
    checkpoint: str = "runs/proposer/checkpoint.pt"


@dataclass(frozen=True)
class ProposalOutputSection:
    """What the stage keeps per image (trainers/proposer/network.py: class-agnostic NMS, then the top k by score)."""

    top_k: int = 100  # proposals stored per image, best first (AR@100 needs 100; HD-OVD keeps the top 5 later)
    nms_thresh: float = 0.7  # OLN test_cfg.rcnn nms iou_threshold 0.7 (Kim et al. 2022, configs/oln_box/oln_box.py)
    score_thresh: float = 0.0  # OLN test_cfg.rcnn score_thr 0.0

    def __post_init__(self) -> None:
        if self.top_k < 1:
            raise ValueError(f"output.top_k must be >= 1, got {self.top_k}")
        if not 0.0 < self.nms_thresh <= 1.0:
            raise ValueError(f"output.nms_thresh must be in (0, 1] (1 = no NMS), got {self.nms_thresh}")
        if not 0.0 <= self.score_thresh <= 1.0:
            raise ValueError(f"output.score_thresh must be in [0, 1], got {self.score_thresh}")


@dataclass(frozen=True)
class RecallSection:
    """Average recall of the stage's proposals (pipelines/proposal_recall.py), measured after the run over the
    images it ran over and stored in the stage's summary. Base recall counts the base boxes of dataset.annotations;
    novel recall the novel boxes of `novel_annotations`, a held-out file that only this evaluation reads."""

    split: str | None = None  # `ov-coco`, `lvis-frequency` or a split file; None: no recall is measured
    novel_annotations: str | None = None  # held-out COCO file with the novel boxes; None: base recall only
    max_dets: tuple[int, ...] = (5, 10, 100)  # AR@k for each k

    def __post_init__(self) -> None:
        if not self.max_dets or min(self.max_dets) < 1:
            raise ValueError(f"recall.max_dets must list proposal budgets >= 1, got {list(self.max_dets)}")
        if self.novel_annotations and not self.split:
            raise ValueError("recall.novel_annotations needs recall.split (which categories are novel)")


@dataclass(frozen=True)
class ProposalsConfig:
    dataset: ProposalImagesSection = field(default_factory=ProposalImagesSection)
    proposer: ProposerSection = field(default_factory=ProposerSection)
    output: ProposalOutputSection = field(default_factory=ProposalOutputSection)
    recall: RecallSection = field(default_factory=RecallSection)
    # runtime.min_batch_size / max_batch_size count images per forward of the network.
    runtime: RuntimeSection = field(default_factory=RuntimeSection)
    # Images per input shard: the same value as extract-features' shard_size, so that shard k of every table holds
    # the images of input shard k (extract-features refuses a proposals stage cut otherwise).
    shard_size: int = 256

    def __post_init__(self) -> None:
        if self.shard_size < 1:
            raise ValueError(f"shard_size must be >= 1, got {self.shard_size}")

    def content_hash(self) -> str:
        """Hash of the settings that change the rows: everything but `runtime` and `recall` (an evaluation of the
        rows, recomputed on every run), both left out altogether so a key added to them changes no fingerprint."""
        return config_hash(dataclasses.replace(self, runtime=None, recall=None))
