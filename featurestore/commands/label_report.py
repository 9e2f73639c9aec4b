"""What the pseudo-labels stage produced: label counts, near-duplicate labels and base-class synonyms (the
precision and accuracy of pseudo boxes against held-out ground truth are in label_quality.py).

HD-OVD (Sec. IV, OV-LVIS discussion) observes that many pseudo boxes are really base objects given synonym labels;
`base_synonyms` counts those.
"""
from __future__ import annotations

from collections import Counter

import numpy as np
import pyarrow.compute as pc

from featurestore.arrow import embeddings_to_numpy
from featurestore.label_names import names_class
from featurestore.reader import StoreReader


def normalised(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def label_counts(reader: StoreReader) -> tuple[Counter, int]:
    """(label → labelled pseudo boxes, boxes whose caption named no object: null labels)."""
    counts: Counter = Counter()
    for batch in reader.stream("pseudo_labels", ["label"]):
        counts.update(batch.column("label").to_pylist())
    return counts, counts.pop(None, 0)


def vocab_rows(reader: StoreReader, kind: str) -> tuple[list[dict], np.ndarray]:
    """Rows of `vocab` of one kind ("class" or "label") and their (N, D) float32 unit embeddings."""
    table = reader.read_table("vocab")
    table = table.filter(pc.equal(table.column("kind"), kind))
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


def vocabulary_report(reader: StoreReader, top: int | None, merge_threshold: float, synonym_threshold: float
                      ) -> dict:
    """Label counts (the `top` most frequent, all with None), near-duplicate groups and base-class synonyms of the
    store's pseudo labels."""
    counts, no_object = label_counts(reader)
    label_rows, label_embeddings = vocab_rows(reader, "label")
    names = [row["name"] for row in label_rows]
    class_rows, class_embeddings = vocab_rows(reader, "class")
    base = [i for i, row in enumerate(class_rows) if row["split"] == "base"]
    synonyms = base_synonyms(names, label_embeddings, [class_rows[i]["name"] for i in base], class_embeddings[base],
                             synonym_threshold)
    return {"pseudo_boxes": sum(counts.values()), "unique_labels": len(counts), "no_object": no_object,
            "top_labels": [{"label": n, "boxes": c} for n, c in counts.most_common(top)],
            "near_duplicate_groups": merge_near_duplicates(names, label_embeddings, counts, merge_threshold),
            "base_synonym_labels": len(synonyms), "base_synonym_boxes": sum(counts[n] for n in synonyms),
            "base_synonyms": dict(sorted(synonyms.items()))}
