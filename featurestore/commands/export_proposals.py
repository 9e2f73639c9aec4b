"""`export-proposals STORE --out OUT [--annotations FILE]`: the store's proposals stage as the two files other tools read.

OUT/proposals.json  COCO results, one entry per proposal: {"image_id", "bbox": [x, y, w, h], "score",
                    "category_id": 1}, images in FILE's order, each image's proposals best first (mmdet's
                    CocoDataset._proposal2json writes proposals so, with category_id 1); `dataset.proposals` of
                    extract-features and pycocotools' loadRes read it
OUT/proposals.pkl   the list HD-OVD's official (mmdet 2.x) trainer reads as data.train.proposal_file: one (N, 5)
                    float32 array x0, y0, x1, y1, score per image of FILE, in FILE's `images` order (CustomDataset
                    indexes it by the position of each image; featurestore/commands/hdovd/official_view.py)

FILE defaults to the annotation file the proposals stage ran over. An image of FILE the stage could not read (a
failure row) gets no proposals (an empty array; mmdet's LoadProposals makes it one [0, 0, 0, 0] box); an image of
FILE the stage never ran over stops the export, since the pickle must list every image. Both files are written under
temporary names and renamed, the pickle last.
"""
from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np

from featurestore.atomic import write_bytes_atomic
from featurestore.commands.hdovd.layout import PICKLE_PROTOCOL
from featurestore.commands.hdovd.official_view import read_official_view
from featurestore.commands.render import add_export_arguments, out_path
from featurestore.proposals import MAX_LISTED, ProposalStageError, StageProposals, read_stage_proposals
from featurestore.reader import StoreReader
from featurestore.stages import PROPOSALS
from pipelines.coco import AnnotationError

RESULTS_JSON = "proposals.json"
PICKLE = "proposals.pkl"
# mmdet 2.x CocoDataset._proposal2json gives every proposal category_id 1: a class-agnostic box has no class.
PROPOSAL_CATEGORY_ID = 1


def add_arguments(parser) -> None:
    add_export_arguments(parser, "output folder (created if missing)")
    parser.add_argument("--annotations", default=None,
                        help="the COCO/LVIS file whose image order the pickle follows (the official trainer's "
                             "data.train.ann_file); default: the file the proposals stage ran over")
    parser.add_argument("--top-k", type=int, default=0, help="the best K proposals per image (default 0: all stored)")


def results_rows(image_ids: list[int], proposals: StageProposals, top_k: int) -> list[dict]:
    """COCO results of `image_ids`' proposals, image by image, best first."""
    rows = []
    for image_id in image_ids:
        array = proposals.for_image(image_id)[:top_k or None].astype(np.float64)
        for x0, y0, x1, y1, score in array.tolist():
            rows.append({"image_id": image_id, "category_id": PROPOSAL_CATEGORY_ID,
                         "bbox": [x0, y0, x1 - x0, y1 - y0], "score": score})
    return rows


def export(args) -> str:
    """Check, then write; → the summary printed. Raises ProposalStageError or AnnotationError."""
    proposals = read_stage_proposals(args.store, "the store argument")
    annotations = args.annotations or StoreReader(args.store).manifest.stages[PROPOSALS].setting("dataset.annotations")
    if not annotations:
        raise ProposalStageError(f"the manifest of {args.store} does not record the annotation file of its proposals "
                                 f"stage: pass it as --annotations")
    view = read_official_view(annotations, frozenset())
    image_ids = [image.image_id for image in view.images]
    unseen = [image_id for image_id in image_ids if image_id not in proposals.shard_of]
    if unseen:
        raise ProposalStageError(f"{len(unseen)} images of {annotations} are not in the proposals stage of "
                                 f"{args.store} (image ids {unseen[:MAX_LISTED]}): it ran over other images; pass "
                                 f"the annotation file it ran over, or run make proposals over this one")
    failed = [image_id for image_id in image_ids if image_id in proposals.failed]
    out = Path(out_path(args))
    out.mkdir(parents=True, exist_ok=True)
    rows = results_rows(image_ids, proposals, args.top_k)
    write_bytes_atomic(out / RESULTS_JSON, json.dumps(rows).encode())
    arrays = [np.ascontiguousarray(proposals.for_image(image_id)[:args.top_k or None], dtype=np.float32)
              for image_id in image_ids]
    write_bytes_atomic(out / PICKLE, pickle.dumps(arrays, protocol=PICKLE_PROTOCOL))
    return (f"exported the proposals of {len(image_ids)} images of {annotations} to {out}: {RESULTS_JSON} "
            f"({len(rows)} boxes), {PICKLE} (data.train.proposal_file of HD-OVD's official trainer); "
            f"{len(failed)} images the stage could not read have none"
            + (f" (image ids {failed[:MAX_LISTED]})" if failed else ""))


def run(args) -> int:
    if args.top_k < 0:
        print("error: --top-k must be >= 0 (0 = all stored)")
        return 2
    try:
        print(export(args))
    except (ProposalStageError, AnnotationError) as error:
        print(f"error: {error}")
        return 2
    return 0
