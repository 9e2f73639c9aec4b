"""Average recall of a trained proposal network: run it over the evaluation images, then score its proposals on
base ground truth and on novel ground truth (pipelines/proposal_recall.py), the same way as any proposals file.

Novel ground truth comes from `eval.novel_annotations`, a held-out file read here only.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from pipelines.coco import ImageRecord
from pipelines.proposal_recall import RecallGroundTruth, format_recall_table
from trainers.proposer.config import ProposerRunConfig
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


def evaluate_network(generator: ProposalGenerator, config: ProposerRunConfig) -> tuple[dict, dict, str]:
    """(recall: {"base": AR and R50 fractions, "novel": the same (with a held-out file)}, counts: {"num_gt" per
    side, "images", "unreadable_images"}, a table)."""
    data, evaluation = config.proposer.data, config.eval
    truth = RecallGroundTruth.load(evaluation.base_annotations or data.annotations, evaluation.novel_annotations,
                                   data.split, evaluation.max_images)
    proposals = propose_for_images(generator, evaluation.image_root or data.image_root, truth.images,
                                   evaluation.batch_size)
    metrics: dict = truth.score(proposals.by_image, evaluation.max_dets)
    table = format_recall_table({f"network ({config.proposer.network.objectness})": metrics}, evaluation.max_dets)
    if proposals.unreadable:
        first = proposals.unreadable[0]
        table += (f"\n{len(proposals.unreadable)} images could not be read and count as finding nothing "
                  f"(first: image {first.image_id}, {first.reason})")
    recall = {side: {key: value for key, value in values.items() if key != "num_gt"} for side, values in metrics.items()}
    counts = {"num_gt": {side: values.get("num_gt", 0) for side, values in metrics.items()},
              "images": len(truth.images), "unreadable_images": len(proposals.unreadable)}
    return recall, counts, table
