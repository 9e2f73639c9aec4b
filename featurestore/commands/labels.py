"""`labels STORE`: the pseudo-label vocabulary — counts, merged near-duplicates, base-class synonyms, the boxes whose
caption named no object — and, where held-out ground truth exists (evaluation only), pseudo-box precision, label
accuracy, how well the score separates boxes on objects from boxes on nothing, and what the boxes on nothing were
called."""
from __future__ import annotations

from featurestore.commands.crop_census import census_lines, crop_census
from featurestore.commands.label_quality import (add_ground_truth_arguments, ground_truth_files, novel_class_ids,
                                                 pseudo_box_quality, read_ground_truth)
from featurestore.commands.label_report import vocabulary_report
from featurestore.commands.render import add_store_argument, emit, text_table
from featurestore.reader import StoreReader


def add_arguments(parser) -> None:
    add_store_argument(parser)
    add_ground_truth_arguments(parser)
    parser.add_argument("--top", type=int, default=20, help="labels listed (default 20)")
    parser.add_argument("--merge-threshold", type=float, default=0.9,
                        help="text-embedding cosine at which two labels are near-duplicates (default 0.9)")
    parser.add_argument("--synonym-threshold", type=float, default=0.9,
                        help="cosine to a base class at which a label counts as its synonym (default 0.9)")
    parser.add_argument("--min-proposal-score", type=float, default=0.0,
                        help="judge only the pseudo boxes whose proposal scored at least this, the ones Open-Det "
                             "learns names from at that opendet.loss.pseudo_min_proposal_score (default 0: all)")


def quality_report(reader: StoreReader, base_gt: str | None, heldout_gt: str | None, top: int,
                   min_proposal_score: float = 0.0) -> dict | None:
    """label_quality.pseudo_box_quality against the GT files of the flags (or found beside the store's
    annotations); None when there is no held-out GT."""
    files = ground_truth_files(reader, base_gt, heldout_gt)
    if not files:
        return None
    return pseudo_box_quality(reader, read_ground_truth(files, novel_class_ids(reader)), top=top,
                              min_proposal_score=min_proposal_score)


def novel_accuracy(quality: dict) -> dict:
    """The accuracy on novel classes alone, in the form this report has always printed."""
    novel = {n: c for n, c in quality["per_class"].items() if c["split"] == "novel"}
    matched, correct = sum(c["covering"] for c in novel.values()), sum(c["correct"] for c in novel.values())
    return {"ground_truth": [g["path"] for g in quality["ground_truth"]], "iou_threshold": quality["iou_threshold"],
            "matched_boxes": matched, "correct": correct, "accuracy": correct / matched if matched else None,
            "per_class": {n: {"matched": c["covering"], "correct": c["correct"], "accuracy": c["accuracy"]}
                          for n, c in novel.items()}}


def build_report(reader: StoreReader, args) -> dict:
    report = vocabulary_report(reader, args.top, args.merge_threshold, args.synonym_threshold)
    report["crops"] = crop_census(reader)
    quality = quality_report(reader, args.base_gt, args.heldout_gt, args.top, args.min_proposal_score)
    if quality is not None:
        report["quality"] = quality
        report["novel_accuracy"] = novel_accuracy(quality)
    return report


def percent(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1%}"


def score(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def print_quality(quality: dict) -> None:
    files = ", ".join(f"{g['path']} ({g['role']})" for g in quality["ground_truth"])
    iou = quality["iou_threshold"]
    kept = (f" (pseudo boxes whose proposal scored >= {quality['min_proposal_score']:g})"
            if quality.get("min_proposal_score") else "")
    print(f"\npseudo-box quality against {files}{kept}")
    if not quality["judged_boxes"]:
        print("  precision: n/a (no labelled pseudo box to judge)")
    elif quality["precision"] is None:
        print("  precision: n/a (no base GT: give the training annotations with --base-gt)")
    else:
        print(f"  precision: {percent(quality['precision'])} ({quality['covering_boxes']} of "
              f"{quality['judged_boxes']} pseudo boxes cover an object at IoU >= {iou})")
    print(f"  accuracy: {percent(quality['accuracy'])} ({quality['correct']} of {quality['covering_boxes']} covering "
          f"boxes are labelled with that object's class)")
    if quality["mean_score_on_nothing"] is not None:
        print(f"  mean score: {score(quality['mean_score_covering'])} on covering boxes, "
              f"{score(quality['mean_score_on_nothing'])} on boxes that cover nothing")
    if quality["score_auc"] is not None or quality["weight_auc"] is not None:
        print(f"  score ROC AUC: {score(quality['score_auc'])} (covering vs on-nothing labelled boxes); training weight "
              f"ROC AUC: {score(quality['weight_auc'])} (every judged box, no object = 0)")
    print(f"  no object: {quality['no_object_judged']} judged boxes whose caption names no object (weight 0), "
          f"{quality['no_object_covering']} of them cover an object")
    print(text_table(["class", "split", "covering", "correct", "accuracy", "no object"],
                     [[n, c["split"], c["covering"], c["correct"], percent(c["accuracy"]), c["no_object"]]
                      for n, c in quality["per_class"].items()]))
    if quality["labels_on_nothing"] is not None:
        print(f"\n{quality['boxes_on_nothing']} pseudo boxes cover nothing; their labels:")
        print(text_table(["label", "on nothing", "of label", "share"],
                         [[r["label"], r["boxes"], r["of_label"], percent(r["share_of_label"])]
                          for r in quality["labels_on_nothing"]]))


def print_report(report: dict) -> None:
    print(f"{report['pseudo_boxes']} labelled pseudo boxes, {report['unique_labels']} unique labels; no object: "
          f"{report['no_object']} (captions that name no object: rows with no label, weight 0)")
    print(text_table(["label", "boxes"], [[r["label"], r["boxes"]] for r in report["top_labels"]]))
    groups = report["near_duplicate_groups"]
    print(f"\n{len(groups)} near-duplicate groups" + (":" if groups else ""))
    for group in groups:
        print(f"  {group['label']} ({group['boxes']} boxes): {', '.join(group['members'])}")
    print(f"\n{report['base_synonym_labels']} labels ({report['base_synonym_boxes']} boxes) name or are synonyms of "
          f"base classes")
    accuracy = report.get("novel_accuracy")
    if accuracy:
        print(f"\npseudo-label accuracy on novel classes: {percent(accuracy['accuracy'])} ({accuracy['correct']} of "
              f"{accuracy['matched_boxes']} pseudo boxes with IoU >= {accuracy['iou_threshold']} to a novel GT box)")
    if "quality" in report:
        print_quality(report["quality"])
    lines = census_lines(report.get("crops"))
    if lines:
        print("\n" + "\n".join(lines))


def run(args) -> int:
    reader = StoreReader(args.store)
    if not reader.shards("pseudo_labels"):
        raise KeyError(f"{args.store} has no committed pseudo_labels shard; run make pseudo-labels first")
    report = build_report(reader, args)
    if args.json:
        emit(report)
    else:
        print_report(report)
    return 0
