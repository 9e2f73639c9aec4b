"""Dead letters: one record per image or region a stage could not turn into rows, with the reason. Every stage
files them the same way, into its own file of the `failures` table; nothing is dropped silently."""
from __future__ import annotations

import dataclasses
from collections import Counter
from dataclasses import dataclass
from typing import Sequence


@dataclass(frozen=True)
class Failure:
    stage: str  # the stage that gave up (featurestore.stages)
    kind: str  # short machine-readable reason: missing, truncated, empty_caption, ...
    message: str  # what happened, naming the file, id or config key to change
    image_id: int | None = None  # None when the id itself was unreadable
    region_id: int | None = None  # None when the whole image failed
    file_name: str | None = None


def failure_columns(failures: Sequence[Failure]) -> dict[str, list]:
    """Columns of the `failures` table, one row per failure, in the given order."""
    return {field.name: [getattr(failure, field.name) for failure in failures] for field in dataclasses.fields(Failure)}


def failures_by_kind(failures: Sequence[Failure]) -> dict[str, int]:
    """kind → count, kinds sorted: the breakdown each shard's stats and the stage summary report."""
    return dict(sorted(Counter(failure.kind for failure in failures).items()))
