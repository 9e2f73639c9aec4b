"""The labels report on a real store: counts, faiss near-duplicate merging, base synonyms, novel accuracy."""
import json
import subprocess
import sys

import numpy as np
import pytest

from featurestore.cli import main
from featurestore.writer import ShardWriter
from tests.featurestore.store_factory import DIM, IMAGES_PER_SHARD, write_store

# store_factory's class vocab: "star" (base, embedding e0) and "circle" (novel, id 4, e1).
LABEL_EMBEDDINGS = {"circle": [(1, 1.0)], "red circle": [(1, 1.0), (3, 0.1)], "ball": [(5, 1.0)],
                    "star": [(0, 1.0)], "asterisk": [(0, 0.95), (6, 0.31)]}
# Region 1 of each image (box [1, 1, 11, 13]) gets these labels; region 2 ([2, 2, 12, 14]) is always "circle".
REGION_ONE = {1000: "red circle", 1001: "red circle", 1002: "star", 2000: "red circle", 2001: "ball",
              2002: "asterisk"}


def unit(parts) -> np.ndarray:
    vector = np.zeros(DIM, dtype=np.float32)
    for index, value in parts:
        vector[index] = value
    return vector / np.linalg.norm(vector)


def write_labelled(root, score_of) -> object:
    """store_factory's store with pseudo labels on regions 1 (REGION_ONE) and 2 ("circle") of every image, scored
    score_of(image_id, region_id); a score of None is a box whose caption named no object (no label, score 0)."""
    root = write_store(root, with_pseudo_labels=False)
    writer = ShardWriter(root, "pseudo_labels", DIM)
    writer.open_stage({"captioner": {"name": "given"}}, "hash-labels")
    for shard in range(2):
        ids = [1000 * (shard + 1) + i for i in range(IMAGES_PER_SHARD)]
        keys = [(i, r) for i in ids for r in (1, 2)]
        scores = [score_of(i, r) for i, r in keys]
        labels = [None if s is None else REGION_ONE[i] if r == 1 else "circle" for (i, r), s in zip(keys, scores)]
        writer.commit(shard, {"pseudo_labels": {
            "image_id": [i for i, _ in keys], "region_id": [r for _, r in keys],
            "caption": ["a patch of striped background" if x is None else x for x in labels],
            "candidates": [[] if x is None else [x] for x in labels], "label": labels,
            "cos": [None if s is None else 0.3 for s in scores], "score": [s or 0.0 for s in scores],
            "text_embedding": np.stack([unit(LABEL_EMBEDDINGS[x]) if x else np.zeros(DIM) for x in labels])}},
            fingerprint=f"pl-{shard}")
    names = sorted(LABEL_EMBEDDINGS)
    writer.commit_table("vocab", {"name": names, "kind": ["label"] * len(names), "prompts": ["single"] * len(names),
                                  "embedding": np.stack([unit(LABEL_EMBEDDINGS[n]) for n in names])})
    writer.finish_stage()
    return root


@pytest.fixture()
def store(tmp_path):
    return write_labelled(tmp_path / "store", lambda image_id, region_id: 0.6)


@pytest.fixture()
def novel_gt(tmp_path):
    """COCO file with one novel circle per image, exactly on region 1's box (xywh)."""
    images = [1000, 1001, 1002, 2000, 2001, 2002]
    path = tmp_path / "novel.json"
    path.write_text(json.dumps({
        "images": [{"id": i, "file_name": f"img_{i}.jpg", "width": 64, "height": 48} for i in images],
        "annotations": [{"id": n, "image_id": i, "category_id": 4, "bbox": [1, 1, 10, 12], "area": 120,
                         "iscrowd": 0} for n, i in enumerate(images)],
        "categories": [{"id": 4, "name": "circle"}]}))
    return path


def test_report_json(store, novel_gt, capsys):
    assert main(["labels", str(store), "--eval-gt", str(novel_gt), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["pseudo_boxes"] == 12 and report["unique_labels"] == 5
    assert report["top_labels"][:2] == [{"label": "circle", "boxes": 6}, {"label": "red circle", "boxes": 3}]
    assert report["near_duplicate_groups"] == [{"label": "circle", "members": ["circle", "red circle"], "boxes": 9},
                                               {"label": "asterisk", "members": ["asterisk", "star"], "boxes": 2}]
    assert report["base_synonyms"] == {"asterisk": "star", "star": "star"} and report["base_synonym_boxes"] == 2
    accuracy = report["novel_accuracy"]
    # Both regions overlap the circle (IoU 1.0 and 0.70): 12 matched; region 2 always right, region 1 in 3 of 6.
    assert accuracy["matched_boxes"] == 12 and accuracy["correct"] == 9 and accuracy["accuracy"] == 0.75


@pytest.mark.slow
def test_the_command_in_a_fresh_interpreter(store, novel_gt, capsys):
    """As a user runs it: a module this command needs, imported by nothing else the command imports, shows only here
    (the rest of the suite has imported it already)."""
    assert main(["labels", str(store), "--eval-gt", str(novel_gt), "--json"]) == 0
    expected = json.loads(capsys.readouterr().out)
    done = subprocess.run([sys.executable, "-m", "featurestore", "labels", str(store), "--eval-gt", str(novel_gt),
                           "--json"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == expected


def test_report_text_and_thresholds(store, novel_gt, capsys):
    assert main(["labels", str(store), "--eval-gt", str(novel_gt), "--merge-threshold", "0.999"]) == 0
    out = capsys.readouterr().out
    assert "pseudo-label accuracy on novel classes: 75.0%" in out and "0 near-duplicate groups" in out


def test_missing_ground_truth_file_names_the_flag(store, tmp_path, capsys):
    assert main(["labels", str(store), "--eval-gt", str(tmp_path / "none.json")]) == 2
    assert "--heldout-gt" in capsys.readouterr().out


def test_store_without_pseudo_labels_is_a_clear_error(tmp_path, capsys):
    root = write_store(tmp_path / "bare", with_pseudo_labels=False)
    assert main(["labels", str(root)]) == 2
    assert "make pseudo-labels" in capsys.readouterr().out


@pytest.fixture()
def full_gt(tmp_path):
    """Training annotations (a base star far from every pseudo box, in each image) and a held-out file with a novel
    circle on region 1's box in the images of shard 0 only: shard 1's pseudo boxes cover nothing."""
    images = [{"id": i, "file_name": f"img_{i}.jpg", "width": 64, "height": 48}
              for i in (1000, 1001, 1002, 2000, 2001, 2002)]
    categories = [{"id": 3, "name": "star"}, {"id": 4, "name": "circle"}]
    base, held_out = tmp_path / "train_base.json", tmp_path / "heldout.json"
    base.write_text(json.dumps({"images": images, "categories": categories, "annotations": [
        {"id": n, "image_id": image["id"], "category_id": 3, "bbox": [40, 30, 20, 16], "iscrowd": 0}
        for n, image in enumerate(images)]}))
    held_out.write_text(json.dumps({"images": images, "categories": categories, "annotations": [
        {"id": n, "image_id": i, "category_id": 4, "bbox": [1, 1, 10, 12], "iscrowd": 0}
        for n, i in enumerate((1000, 1001, 1002))]}))
    return base, held_out


def test_precision_accuracy_and_labels_on_nothing(store, full_gt, capsys):
    base, held_out = full_gt
    assert main(["labels", str(store), "--base-gt", str(base), "--heldout-gt", str(held_out), "--json"]) == 0
    quality = json.loads(capsys.readouterr().out)["quality"]
    assert quality["ground_truth"] == [{"role": "base", "path": str(base)}, {"role": "held-out", "path": str(held_out)}]
    # Shard 0: all 6 boxes cover the circle (IoU 1.0 and 0.70), 5 labelled circle or red circle; shard 1: nothing.
    assert (quality["judged_boxes"], quality["covering_boxes"], quality["precision"]) == (12, 6, 0.5)
    assert quality["correct"] == 5 and quality["per_class"] == {
        "circle": {"split": "novel", "covering": 6, "correct": 5, "accuracy": 5 / 6, "no_object": 0}}
    assert quality["boxes_on_nothing"] == 6 and quality["mean_score_covering"] == quality["mean_score_on_nothing"] \
        == pytest.approx(0.6)  # every score of this store is 0.6
    assert {r["label"]: (r["boxes"], r["of_label"]) for r in quality["labels_on_nothing"]} == {
        "circle": (3, 6), "red circle": (1, 3), "ball": (1, 1), "asterisk": (1, 1)}


def test_held_out_gt_alone_gives_accuracy_but_no_precision(store, full_gt, capsys):
    _, held_out = full_gt
    assert main(["labels", str(store), "--eval-gt", str(held_out)]) == 0  # the old flag name still works
    out = capsys.readouterr().out
    assert "precision: n/a (no base GT: give the training annotations with --base-gt)" in out
    assert "accuracy: 83.3% (5 of 6 covering boxes" in out and "cover nothing" not in out


def test_text_report_prints_the_precision(store, full_gt, capsys):
    base, held_out = full_gt
    assert main(["labels", str(store), "--base-gt", str(base), "--heldout-gt", str(held_out)]) == 0
    out = capsys.readouterr().out
    assert "precision: 50.0% (6 of 12 pseudo boxes cover an object at IoU >= 0.5)" in out
    assert "6 pseudo boxes cover nothing; their labels:" in out


# Scores of a store with boxes whose caption named no object (None), by image, for regions 1 and 2. Under full_gt,
# shard 0's boxes cover the circle and shard 1's cover nothing.
SCORED = {1000: (0.9, 0.7), 1001: (0.8, None), 1002: (0.3, 0.6),
          2000: (0.5, 0.65), 2001: (None, 0.1), 2002: (0.2, 0.85)}


@pytest.fixture()
def scored_store(tmp_path):
    return write_labelled(tmp_path / "scored", lambda image_id, region_id: SCORED[image_id][region_id - 1])


def test_precision_accuracy_and_score_auc_with_boxes_that_name_no_object(scored_store, full_gt, capsys):
    """By hand: 5 labelled covering boxes score 0.9, 0.8, 0.3, 0.7, 0.6 and 5 labelled boxes on nothing 0.5, 0.2,
    0.65, 0.1, 0.85; a covering box outscores one on nothing in 5 + 4 + 2 + 4 + 3 = 18 of 25 pairs. As training
    weights, the two boxes with no object (1001 region 2 covers the circle, 2001 region 1 nothing) weigh 0: 6 x 6
    pairs, 18 + 5 (covering labelled over the 0 on nothing) + 0.5 (the tie of the two zeros) = 23.5 of 36."""
    base, held_out = full_gt
    assert main(["labels", str(scored_store), "--base-gt", str(base), "--heldout-gt", str(held_out), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert (report["pseudo_boxes"], report["no_object"]) == (10, 2)
    quality = report["quality"]
    assert (quality["pseudo_boxes"], quality["judged_boxes"], quality["covering_boxes"]) == (12, 10, 5)
    assert quality["precision"] == 0.5  # of the labelled boxes; the no-object ones are counted apart
    # Covering and labelled: 1000, 1001 "red circle", 1002 "star" (wrong) on region 1; 1000, 1002 "circle" on 2.
    assert (quality["correct"], quality["accuracy"]) == (4, 0.8)
    assert quality["per_class"] == {"circle": {"split": "novel", "covering": 5, "correct": 4, "accuracy": 0.8,
                                               "no_object": 1}}
    assert (quality["no_object"], quality["no_object_judged"], quality["no_object_covering"]) == (2, 2, 1)
    assert quality["score_auc"] == pytest.approx(18 / 25) and quality["weight_auc"] == pytest.approx(23.5 / 36)
    assert quality["mean_score_covering"] == pytest.approx(3.3 / 5)
    assert quality["mean_score_on_nothing"] == pytest.approx(2.3 / 5)
    assert main(["labels", str(scored_store), "--base-gt", str(base), "--heldout-gt", str(held_out)]) == 0
    out = capsys.readouterr().out
    assert "10 labelled pseudo boxes, 4 unique labels; no object: 2" in out
    assert "precision: 50.0% (5 of 10 pseudo boxes cover an object at IoU >= 0.5)" in out
    assert "score ROC AUC: 0.720" in out and "training weight ROC AUC: 0.653" in out
    assert "no object: 2 judged boxes whose caption names no object (weight 0), 1 of them cover an object" in out


def test_only_the_boxes_whose_proposal_scored_high_enough_are_judged(store, full_gt, capsys):
    """store_factory's proposals all score 0.75: the bound keeps them at 0.75 and none above."""
    base, held_out = full_gt
    flags = ["labels", str(store), "--base-gt", str(base), "--heldout-gt", str(held_out)]
    assert main(flags + ["--min-proposal-score", "0.75", "--json"]) == 0
    quality = json.loads(capsys.readouterr().out)["quality"]
    assert (quality["min_proposal_score"], quality["judged_boxes"], quality["precision"]) == (0.75, 12, 0.5)
    assert main(flags + ["--min-proposal-score", "0.76", "--json"]) == 0
    quality = json.loads(capsys.readouterr().out)["quality"]
    assert (quality["pseudo_boxes"], quality["judged_boxes"], quality["precision"]) == (0, 0, None)
    assert main(flags + ["--min-proposal-score", "0.76"]) == 0
    out = capsys.readouterr().out
    assert "(pseudo boxes whose proposal scored >= 0.76)" in out and "precision: n/a (no labelled pseudo box" in out
