"""What the pseudo-labels stage produced: label counts, near-duplicate labels, base-class synonyms, and — where
ground truth of novel classes exists (evaluation only) — pseudo-label accuracy.

HD-OVD (Sec. IV, OV-LVIS discussion) observes that many pseudo boxes are really base objects given synonym labels;
`base_synonyms` counts those. Accuracy follows the issue's definition: among pseudo boxes with IoU ≥ 0.5 to a novel
GT box, the share whose label names that box's class.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from featurestore.arrow import embeddings_to_numpy
from featurestore.label_names import names_class
from featurestore.reader import StoreReader

ACCURACY_IOU = 0.5  # the bar: a pseudo box "is" a novel object when IoU >= 0.5 with its GT box


def normalised(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def label_counts(reader: StoreReader) -> Counter:
    counts: Counter = Counter()
    for batch in reader.stream("pseudo_labels", ["label"]):
        counts.update(batch.column("label").to_pylist())
    return counts


def vocab_rows(reader: StoreReader, kind: str) -> tuple[list[dict], np.ndarray]:
    """Rows of `vocab` of one kind ("class" or "label") and their (N, D) float32 unit embeddings."""
    table = reader.read_table("vocab")
    table = table.filter(pa.compute.equal(table.column("kind"), kind))
    rows = table.drop_columns(["embedding"]).to_pylist()
    return rows, normalised(embeddings_to_numpy(table.column("embedding")))


class _UnionFind:
    def __init__(self, size: int):
        self.parent = list(range(size))

    def find(self, i: int) -> int:
        while self.parent[i] != i:
            self.parent[i] = self.parent[self.parent[i]]
            i = self.parent[i]
        return i

    def union(self, i: int, j: int) -> None:
        self.parent[self.find(i)] = self.find(j)


def merge_near_duplicates(names: list[str], embeddings: np.ndarray, counts: Counter, threshold: float,
                          k: int = 8) -> list[dict]:
    """Groups of labels whose text embeddings are within `threshold` cosine (faiss kNN, transitive closure).

    embeddings: (U, D) unit rows, one per name. Returns groups of 2+ labels, each named by its most frequent member,
    largest first.
    """
    import faiss

    if len(names) < 2:
        return []
    index = faiss.IndexFlatIP(embeddings.shape[1])
    index.add(np.ascontiguousarray(embeddings, dtype=np.float32))
    similarity, neighbours = index.search(np.ascontiguousarray(embeddings, dtype=np.float32), min(k, len(names)))
    groups = _UnionFind(len(names))
    for i, (sims, ids) in enumerate(zip(similarity, neighbours)):
        for sim, j in zip(sims, ids):
            if j >= 0 and j != i and sim >= threshold:
                groups.union(i, int(j))
    members: dict[int, list[str]] = {}
    for i, name in enumerate(names):
        members.setdefault(groups.find(i), []).append(name)
    merged = [sorted(m, key=lambda n: (-counts[n], n)) for m in members.values() if len(m) > 1]
    return sorted(({"label": m[0], "members": m, "boxes": sum(counts[n] for n in m)} for m in merged),
                  key=lambda g: (-g["boxes"], g["label"]))


def base_synonyms(names: list[str], embeddings: np.ndarray, base_names: list[str], base_embeddings: np.ndarray,
                  threshold: float) -> dict[str, str]:
    """label → base class for labels that name a base class or whose nearest base class (faiss) is within
    `threshold` cosine: pseudo boxes that are probably base objects."""
    import faiss

    if not names or not base_names:
        return {}
    index = faiss.IndexFlatIP(base_embeddings.shape[1])
    index.add(np.ascontiguousarray(base_embeddings, dtype=np.float32))
    similarity, nearest = index.search(np.ascontiguousarray(embeddings, dtype=np.float32), 1)
    found = {}
    for name, sim, j in zip(names, similarity[:, 0], nearest[:, 0]):
        named = next((b for b in base_names if names_class(name, b)), None)
        if named or sim >= threshold:
            found[name] = named or base_names[int(j)]
    return found


@dataclass(frozen=True)
class NovelGroundTruth:
    """Novel-class GT boxes per image (xyxy) and class names, from a COCO file used for evaluation only."""

    boxes: dict[int, np.ndarray]  # image_id → (G, 4)
    classes: dict[int, list[str]]  # image_id → class name per box
    source: str


def pseudo_label_accuracy(reader: StoreReader, truth: NovelGroundTruth, iou_threshold: float = ACCURACY_IOU) -> dict:
    """Of pseudo boxes with IoU ≥ threshold to a novel GT box (the best-overlapping one), the share whose label
    names that box's class; per class too."""
    from pipelines.boxes import pairwise_iou

    matched: Counter = Counter()
    correct: Counter = Counter()
    for shard in reader.shards("pseudo_labels"):
        regions = reader.read_shard("regions", shard, ["image_id", "region_id", "box"]).to_pylist()
        box_of = {(r["image_id"], r["region_id"]): r["box"] for r in regions}
        for row in reader.read_shard("pseudo_labels", shard, ["image_id", "region_id", "label"]).to_pylist():
            gt = truth.boxes.get(row["image_id"])
            box = box_of.get((row["image_id"], row["region_id"]))
            if gt is None or box is None:
                continue
            ious = pairwise_iou(np.asarray([box]), gt)[0]
            best = int(np.argmax(ious))
            if ious[best] >= iou_threshold:
                name = truth.classes[row["image_id"]][best]
                matched[name] += 1
                correct[name] += names_class(row["label"], name)
    total = sum(matched.values())
    return {"ground_truth": truth.source, "iou_threshold": iou_threshold, "matched_boxes": total,
            "correct": sum(correct.values()), "accuracy": sum(correct.values()) / total if total else None,
            "per_class": {n: {"matched": matched[n], "correct": correct[n], "accuracy": correct[n] / matched[n]}
                          for n in sorted(matched)}}
