"""Average recall of a trained proposal network: run it over the evaluation images, then score its proposals on
base ground truth and on novel ground truth (pipelines/proposal_recall.py), the same way as any proposals file.

Novel ground truth comes from `proposer.eval.novel_annotations`, a held-out file read here only.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from pipelines.coco import ImageRecord
from pipelines.proposal_recall import RecallGroundTruth, format_recall_table
from trainers.proposer.config import ProposerConfig
from trainers.proposer.dataset import UnreadableImage
from trainers.proposer.inference import ProposalGenerator
from vlm.images import ImageReadError, PathEscapeError, load_image, resolve_image_path


@dataclass
class NetworkProposals:
    by_image: dict[int, np.ndarray] = field(default_factory=dict)  # image_id → (K, 5) float32
    unreadable: list[UnreadableImage] = field(default_factory=list)  # their ground truth counts as not found


def propose_for_images(generator: ProposalGenerator, image_root: str, images: Sequence[ImageRecord],
                       batch_size: int) -> NetworkProposals:
    """Decode each image once (inside `image_root`) and run the generator `batch_size` images at a time."""
    result = NetworkProposals()
    for start in range(0, len(images), batch_size):
        batch, pixels = [], []
        for record in images[start:start + batch_size]:
            try:
                pixels.append(load_image(resolve_image_path(image_root, record.file_name)).pixels)
                batch.append(record)
            except (ImageReadError, PathEscapeError) as error:
                result.unreadable.append(UnreadableImage(record.image_id, record.file_name, str(error)))
        for record, array in zip(batch, generator(pixels) if pixels else []):
            result.by_image[record.image_id] = array
    return result


def evaluate_network(generator: ProposalGenerator, config: ProposerConfig) -> tuple[dict, str]:
    """({"base": AR metrics, "novel": AR metrics (with a held-out file), "images", "unreadable_images"}, a table)."""
    truth = RecallGroundTruth.load(config.eval.base_annotations or config.data.annotations,
                                   config.eval.novel_annotations, config.data.split, config.eval.max_images)
    proposals = propose_for_images(generator, config.eval.image_root or config.data.image_root, truth.images,
                                   generator.output.batch_size)
    metrics: dict = truth.score(proposals.by_image, config.eval.max_dets)
    table = format_recall_table({f"network ({config.network.objectness})": metrics}, config.eval.max_dets)
    if proposals.unreadable:
        first = proposals.unreadable[0]
        table += (f"\n{len(proposals.unreadable)} images could not be read and count as finding nothing "
                  f"(first: image {first.image_id}, {first.reason})")
    return {**metrics, "images": len(truth.images), "unreadable_images": len(proposals.unreadable)}, table
