"""The proposals stage of a store read back: each image's proposals best first, the input shard that held it, and
the images the stage could not read. What extract-features (`dataset.proposals: store`), `export-proposals` and the
stage's own recall read."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import pyarrow as pa

from featurestore.manifest import ModelRecord
from featurestore.reader import StoreReader
from featurestore.stages import PROPOSALS

PROPOSER_ROLE = "proposer"  # the role of the proposal network among the stage's model records
MAX_LISTED = 5  # image ids named in an error


class ProposalStageError(ValueError):
    """A proposals stage that cannot be used as asked (missing, unfinished, cut into other shards)."""


@dataclass
class StageProposals:
    """image_id → (N, 5) float32 rows x0, y0, x1, y1, score in rank order; image_id → its input shard, for every
    image the stage ran over (with or without proposals); image_id → the failure kind of an image it could not read."""

    by_image: dict[int, np.ndarray] = field(default_factory=dict)
    shard_of: dict[int, int] = field(default_factory=dict)
    failed: dict[int, str] = field(default_factory=dict)
    proposer: ModelRecord | None = None
    store: str = ""

    def for_image(self, image_id: int) -> np.ndarray:
        return self.by_image.get(image_id, np.zeros((0, 5), dtype=np.float32))

    def check_shards(self, shards: Iterable[tuple[int, Sequence[int]]], key: str) -> None:
        """Raise ProposalStageError unless each (shard, image ids) of another stage's input shards holds images this
        stage ran over in that same shard: shard k of every table holds the images of input shard k."""
        unseen, moved = [], []
        for shard, image_ids in shards:
            for image_id in image_ids:
                found = self.shard_of.get(image_id)
                if found is None:
                    unseen.append(image_id)
                elif found != shard:
                    moved.append((image_id, shard, found))
        if unseen:
            raise ProposalStageError(
                f"{len(unseen)} images are not in the proposals stage of {self.store} (image ids "
                f"{unseen[:MAX_LISTED]}); it ran over other images: run make proposals over the same annotation file "
                f"(config key {key})")
        if moved:
            image_id, shard, found = moved[0]
            raise ProposalStageError(
                f"the proposals stage of {self.store} cut its images into other shards (image {image_id} is in input "
                f"shard {shard} here, in proposals shard {found}; {len(moved)} such images): run make proposals with "
                f"the same shard_size and dataset (config key {key})")


def _rows_by_image(table: pa.Table) -> dict[int, np.ndarray]:
    if table.num_rows == 0:
        return {}
    ids = table.column("image_id").to_numpy()
    ranks = table.column("rank").to_numpy()
    boxes = table.column("box").combine_chunks().flatten().to_numpy(zero_copy_only=False).reshape(-1, 4)
    scores = table.column("score").to_numpy()
    order = np.lexsort((ranks, ids))
    rows = np.concatenate([boxes[order], scores[order, None]], axis=1).astype(np.float32)
    starts = np.flatnonzero(np.r_[True, ids[order][1:] != ids[order][:-1]])
    return {int(ids[order][start]): rows[start:end] for start, end in zip(starts, np.r_[starts[1:], len(order)])}


def committed_proposals(reader: StoreReader) -> dict[int, np.ndarray]:
    """image_id → (N, 5) float32 proposals in rank order, of every committed shard of the proposals stage, finished
    or not (the stage's own recall reads them before it finishes)."""
    found: dict[int, np.ndarray] = {}
    for commit in reader.table_commits("proposals"):
        found.update(_rows_by_image(reader.read_file(commit.files["proposals"].path)))
    return found


def read_stage_proposals(store: str | Path, key: str) -> StageProposals:
    """The finished proposals stage of `store`; `key` names the setting that asked for it in errors. Raises
    ProposalStageError when there is no such store or it has no finished proposals stage."""
    try:
        reader = StoreReader(store)
    except FileNotFoundError as error:
        raise ProposalStageError(f"{store} is no store yet ({error}): run make proposals STORE={store} first "
                                 f"(config key {key})") from error
    record = reader.manifest.stages.get(PROPOSALS)
    commits = [c for c in reader.commits if c.stage == PROPOSALS]
    if record is None or not commits:
        raise ProposalStageError(f"{reader.root} has no proposals stage: run make proposals STORE={reader.root} "
                                 f"first (config key {key})")
    if record.finished_at is None or (record.started_at or 0.0) > record.finished_at:
        raise ProposalStageError(f"the proposals stage of {reader.root} did not finish (its last run was stopped or "
                                 f"is running): rerun make proposals STORE={reader.root} (config key {key})")
    found = StageProposals(committed_proposals(reader), proposer=record.models.get(PROPOSER_ROLE),
                           store=str(reader.root))
    for commit in commits:
        stats = reader.shard_stats(PROPOSALS, commit.shard)
        found.shard_of.update({int(image_id): commit.shard for image_id in stats["image_ids"]})
        if "failures" in commit.files:
            failures = reader.read_file(commit.files["failures"].path, ["image_id", "kind"])
            found.failed.update({int(i): kind for i, kind in zip(failures.column("image_id").to_pylist(),
                                                                 failures.column("kind").to_pylist())
                                 if i is not None})
    return found
