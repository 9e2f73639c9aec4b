"""`report STORE --out DIR`: a self-contained static HTML report of the store, to look at before training.

DIR/index.html opens from `file://` with no server and no network (inline CSS and SVG plots, no script); the region
thumbnails of the label grids are PNG files in DIR/crops, and DIR/report.json holds every number of the page.
Sections: stages and provenance; per-stage timings and throughput; failures by kind with examples; the average
recall of the proposals stage (base and held-out novel ground truth, as its last run measured it); the pseudo-label
vocabulary with a grid of region crops per label (crop, caption, candidates, label, cos, score) and the count of boxes
whose caption names no object; the score histogram; near-duplicate labels and base-class synonyms; and, with held-out
ground truth, pseudo-box precision, accuracy per class, the score's ROC AUC and the labels of boxes that cover
nothing.

The folder is built beside DIR and swapped in when complete, so DIR is never a half-written report.
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

from featurestore.commands.crop_census import crop_census
from featurestore.commands.label_quality import (COVER_IOU, QualityTally, add_ground_truth_arguments,
                                                 ground_truth_files, judge_pseudo_boxes, novel_class_ids,
                                                 read_ground_truth)
from featurestore.commands.label_report import vocabulary_report
from featurestore.commands.report_crops import label_examples
from featurestore.commands.report_page import render_page
from featurestore.commands.render import add_out_argument
from featurestore.commands.report_store import failures_by_kind, proposal_recall, stage_provenance, stage_timings
from featurestore.commands.store_images import image_root
from featurestore.commands.svg_plots import histogram_counts
from featurestore.reader import StoreReader

PAGE, DATA = "index.html", "report.json"


def add_arguments(parser) -> None:
    parser.add_argument("store", help="path of the store (the directory holding manifest.json)")
    add_out_argument(parser, "folder to write (index.html, report.json, crops/); replaced if it holds an older report")
    add_ground_truth_arguments(parser)
    parser.add_argument("--labels", type=int, default=24, help="labels with a crop grid (most frequent first; 24)")
    parser.add_argument("--crops-per-label", type=int, default=8, help="sampled boxes shown per label (default 8)")
    parser.add_argument("--image-root", default=None, help="image folder (default: the one extract-features read)")
    parser.add_argument("--merge-threshold", type=float, default=0.9,
                        help="text-embedding cosine at which two labels are near-duplicates (default 0.9)")
    parser.add_argument("--synonym-threshold", type=float, default=0.9,
                        help="cosine to a base class at which a label counts as its synonym (default 0.9)")


def check_out_dir(out: Path) -> None:
    """--out must be new, empty or an earlier report: replacing it must never delete anything else."""
    if out.exists() and (not out.is_dir() or (any(out.iterdir()) and not (out / DATA).is_file())):
        raise FileExistsError(f"{out} exists and is not a report folder (no {DATA} in it); choose another --out")


def label_section(reader: StoreReader, args, out: Path, truth) -> dict:
    """Vocabulary (counts, near-duplicates, base synonyms), the crop grids and, with `truth`, the quality tally and
    the score histogram split by what the boxes cover."""
    vocabulary = vocabulary_report(reader, None, args.merge_threshold, args.synonym_threshold)  # every count
    try:
        root, root_problem = image_root(reader, args.image_root), None
    except FileNotFoundError as error:
        root, root_problem = None, str(error)
    grid_labels = [row["label"] for row in vocabulary["top_labels"][:args.labels]]
    examples = label_examples(reader, grid_labels, args.crops_per_label, root, out, truth)
    scores: dict[str, list[float]] = {}
    quality = None
    if truth is None:  # the scores of labelled boxes: a box with no object has no score, only its weight 0
        scores["pseudo boxes"] = [s for b in reader.stream("pseudo_labels", ["label", "score"])
                                  for label, s in zip(b.column("label").to_pylist(), b.column("score").to_pylist())
                                  if label is not None]
    else:
        tally = QualityTally(truth)
        for judgement in judge_pseudo_boxes(reader, truth):
            tally.add(judgement)
            if judgement.row["label"] is None:
                continue
            series = ("not judged" if not judgement.judged else
                      f"covers an object (IoU ≥ {COVER_IOU})" if judgement.covers else "covers no object")
            scores.setdefault(series, []).append(judgement.row["score"])
        quality = tally.result(top=args.labels)
    return {"vocabulary": vocabulary, "examples": examples, "image_root_problem": root_problem,
            "score_histogram": histogram_counts({k: np.asarray(v) for k, v in sorted(scores.items())}),
            "quality": quality}


def build_report(reader: StoreReader, args, out: Path) -> dict:
    files = ground_truth_files(reader, args.base_gt, args.heldout_gt)
    truth = read_ground_truth(files, novel_class_ids(reader)) if files else None
    report = {"store": str(args.store), "generated": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
              "stages": stage_provenance(reader), "timings": stage_timings(reader),
              "failures": failures_by_kind(reader), "crops": crop_census(reader),
              "proposal_recall": proposal_recall(reader)}
    if reader.shards("pseudo_labels"):
        report["labels"] = label_section(reader, args, out, truth)
    return report


def publish_folder(built: Path, out: Path) -> None:
    """Swap the finished folder in: the old report moves aside first and is deleted only after the rename."""
    old = out.with_name(f".old-{out.name}-{os.getpid()}") if out.exists() else None
    if old is not None:
        os.replace(out, old)
    os.replace(built, out)
    if old is not None:
        shutil.rmtree(old)


def run(args) -> int:
    reader = StoreReader(args.store)
    out = Path(args.out)
    check_out_dir(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    built = Path(tempfile.mkdtemp(prefix=f".tmp-{out.name}-", dir=out.parent))
    try:
        report = build_report(reader, args, built)
        (built / DATA).write_text(json.dumps(report, indent=1, sort_keys=True, default=str) + "\n")
        (built / PAGE).write_text(render_page(report), encoding="utf-8")
        publish_folder(built, out)
    except BaseException:
        shutil.rmtree(built, ignore_errors=True)
        raise
    labels = report.get("labels") or {}
    quality = labels.get("quality")
    crops = sum(1 for rows in labels.get("examples", {}).values() for e in rows if e["thumb"])
    print(f"wrote {out / PAGE}: {len(report['stages'])} stages, {crops} region crops"
          + (f", pseudo-box precision {quality['precision']:.1%}" if quality and quality["precision"] is not None
             else ""))
    return 0
