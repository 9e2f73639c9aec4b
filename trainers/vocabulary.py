"""Class text embeddings from the store's `vocab` table: the classifier of base classes and the novel
classes that only evaluation may see."""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from featurestore.arrow import embeddings_to_numpy
from featurestore.reader import StoreReader


@dataclass(frozen=True)
class ClassVocabulary:
    """Classes ordered by category id. embeddings: (C, D) float32, L2-normalised."""

    category_ids: tuple[int, ...]
    names: tuple[str, ...]
    is_novel: torch.Tensor  # (C,) bool
    embeddings: torch.Tensor

    def subset(self, novel: bool) -> "ClassVocabulary":
        keep = self.is_novel == novel
        index = torch.nonzero(keep).flatten().tolist()
        return ClassVocabulary(tuple(self.category_ids[i] for i in index), tuple(self.names[i] for i in index),
                               self.is_novel[keep], self.embeddings[keep])

    @property
    def index_of(self) -> dict[int, int]:
        """category id → row of `embeddings`."""
        return {category: row for row, category in enumerate(self.category_ids)}


def load_class_vocabulary(store) -> ClassVocabulary:
    """All classes of the store's vocab (kind = class), base and novel, ordered by category id."""
    table = StoreReader(store).read_table("vocab")
    rows = [i for i, kind in enumerate(table.column("kind").to_pylist()) if kind == "class"]
    if not rows:
        raise ValueError(f"store {store} has no class rows in its vocab table; run extract-features first")
    table = table.take(rows).sort_by("category_id")
    embeddings = torch.from_numpy(embeddings_to_numpy(table.column("embedding")).astype("float32"))
    return ClassVocabulary(
        category_ids=tuple(table.column("category_id").to_pylist()),
        names=tuple(table.column("name").to_pylist()),
        is_novel=torch.tensor([split == "novel" for split in table.column("split").to_pylist()]),
        embeddings=F.normalize(embeddings, dim=-1),
    )
