"""`python -m trainers.proposer.recall`: average recall of proposal files and trained proposal networks, side by side.

    python -m trainers.proposer.recall --annotations data/shapes/annotations/train_base.json \
        --novel-annotations data/shapes/annotations/train_novel_heldout.json --split data/shapes/ov_split.json \
        --proposals data/shapes/proposals/train.json --store data/store --checkpoint runs/proposer/checkpoint.pt

Proposal files are COCO-results JSON or the mmdet-style pickle (pipelines/proposals.py); a store's finished proposals
stage is read as written; a checkpoint is run over the images of --annotations (under --image-root). Base recall counts the base boxes of --annotations, novel recall
the novel boxes of --novel-annotations, which only this evaluation reads.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from featurestore.proposals import ProposalStageError, read_stage_proposals
from pipelines.coco import AnnotationError, read_coco
from pipelines.proposal_recall import MAX_DETS, RecallGroundTruth, format_recall_table
from pipelines.proposals import read_proposals
from trainers.proposer.evaluate import propose_for_images
from trainers.proposer.inference import ProposalGenerator, ProposerCheckpointError


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m trainers.proposer.recall", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--annotations", required=True, help="COCO file of the images and their base boxes")
    parser.add_argument("--novel-annotations", default=None, help="held-out COCO file with the novel boxes")
    parser.add_argument("--split", required=True, help="ov-coco, lvis-frequency or a split file")
    parser.add_argument("--proposals", action="append", default=[], help="a proposals file (.json or .pkl)")
    parser.add_argument("--store", action="append", default=[], help="a store with a finished proposals stage")
    parser.add_argument("--checkpoint", action="append", default=[], help="a proposal network checkpoint")
    parser.add_argument("--image-root", default=None, help="images of --annotations (needed with --checkpoint)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--max-dets", default=",".join(map(str, MAX_DETS)), help="proposals per image, e.g. 5,10,100")
    parser.add_argument("--json-out", default=None, help="also write the metrics here as JSON")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    max_dets = tuple(int(k) for k in args.max_dets.split(","))
    if args.checkpoint and not args.image_root:
        print("error: --checkpoint needs --image-root (where the images of --annotations are)", file=sys.stderr)
        return 2
    try:
        truth = RecallGroundTruth.load(args.annotations, args.novel_annotations, args.split)
        sources = {}
        if args.proposals:
            dataset = read_coco(args.annotations)  # a pickle lists its images in this file's order
            sources = {path: read_proposals(path, dataset).by_image for path in args.proposals}
        for store in args.store:
            sources[f"{store} (proposals stage)"] = read_stage_proposals(store, "--store").by_image
        for path in args.checkpoint:
            generator = ProposalGenerator.from_checkpoint(path, device=args.device, config_key="--checkpoint")
            found = propose_for_images(generator, args.image_root, truth.images, generator.output.batch_size)
            if found.unreadable:
                print(f"{path}: {len(found.unreadable)} images could not be read and count as finding nothing "
                      f"(first: {found.unreadable[0].reason})", file=sys.stderr)
            sources[path] = found.by_image
    except (AnnotationError, FileNotFoundError, ProposerCheckpointError, ProposalStageError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    rows = {name: truth.score(proposals, max_dets) for name, proposals in sources.items()}
    print(format_recall_table(rows, max_dets))
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(rows, indent=2, sort_keys=True) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
