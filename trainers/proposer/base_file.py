"""`python -m trainers.proposer.base_file INSTANCES SPLIT OUT`: the base-class annotation file the proposal network
trains on, cut from a full instances file: every image and category kept, only the annotations of base categories.

    python -m trainers.proposer.base_file /datasets/coco/annotations/instances_train2017.json ov-coco \
        /datasets/coco/annotations/instances_train2017_base.json

SPLIT is `ov-coco`, `lvis-frequency` or a split file (pipelines/ov_split.py). The file is written whole or not at all.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

from pipelines.coco import AnnotationError, parse_coco, read_json
from pipelines.ov_split import load_split


def base_only(instances: str, split_spec: str) -> tuple[dict, int, int]:
    """(the file with only base annotations, annotations kept, annotations left out)."""
    data = read_json(instances)  # parsed once: a full LVIS / COCO file is hundreds of MB
    split = load_split(split_spec, parse_coco(data, instances))
    kept = [a for a in data["annotations"] if int(a["category_id"]) in split.base_ids]
    return {**data, "annotations": kept}, len(kept), len(data["annotations"]) - len(kept)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m trainers.proposer.base_file", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("instances", help="a COCO / LVIS instances file with base and novel boxes")
    parser.add_argument("split", help="ov-coco, lvis-frequency or a split file")
    parser.add_argument("out", type=Path, help="where the base-class file goes")
    args = parser.parse_args(argv)
    try:
        data, kept, left_out = base_only(args.instances, args.split)
    except (AnnotationError, FileNotFoundError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile("w", dir=args.out.parent, suffix=".part", delete=False) as handle:
        json.dump(data, handle)
    os.replace(handle.name, args.out)
    print(f"{args.out}: {kept} base annotations of {len(data['images'])} images ({left_out} of other categories "
          f"left out)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
