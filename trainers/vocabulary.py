"""Text embeddings from the store's `vocab` table: the classifier of base classes and the novel classes that only
evaluation may see (kind "class"), the object names that name Open-Det's GT boxes (kind "name") and the pseudo
labels (kind "label")."""
from __future__ import annotations

from dataclasses import dataclass

import pyarrow as pa
import pyarrow.compute as pc
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


@dataclass(frozen=True)
class NameVocabulary:
    """Object names (vocab kind "name") in the store's order. embeddings: (N, D) float32, L2-normalised."""

    names: tuple[str, ...]
    embeddings: torch.Tensor


def _vocab_rows(store, kind: str) -> pa.Table:
    table = StoreReader(store).read_table("vocab")
    return table.filter(pc.equal(table.column("kind"), kind))


def _unit_embeddings(table: pa.Table) -> torch.Tensor:
    embeddings = torch.from_numpy(embeddings_to_numpy(table.column("embedding")).astype("float32"))
    return F.normalize(embeddings, dim=-1)


def load_class_vocabulary(store) -> ClassVocabulary:
    """All classes of the store's vocab (kind = class), base and novel, ordered by category id."""
    table = _vocab_rows(store, "class")
    if not table.num_rows:
        raise ValueError(f"store {store} has no class rows in its vocab table; run extract-features first")
    table = table.sort_by("category_id")
    return ClassVocabulary(
        category_ids=tuple(table.column("category_id").to_pylist()),
        names=tuple(table.column("name").to_pylist()),
        is_novel=torch.tensor([split == "novel" for split in table.column("split").to_pylist()]),
        embeddings=_unit_embeddings(table),
    )


def load_name_vocabulary(store, kind: str = "name") -> NameVocabulary:
    """The object names of the store's vocab (kind = name), or with kind = label the pseudo-labels stage's labels;
    none for a store written without them."""
    table = _vocab_rows(store, kind)
    return NameVocabulary(tuple(table.column("name").to_pylist()), _unit_embeddings(table))
