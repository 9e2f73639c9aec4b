"""A store with a proposals stage the real job wrote: a few synthetic images (with a missing, a truncated and a
non-image file on request) and a tiny proposal network with random weights (tests/tiny_proposer.py)."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from beam_jobs.proposals import run
from tests.beam_jobs.sample import Sample, make_sample
from tests.tiny_proposer import save_tiny_proposer

TOP_K = 8  # proposals kept per image: fewer than the random network finds, so every good image has exactly 8
SHARD_SIZE = 3


@dataclass
class ProposalWorld:
    root: Path
    sample: Sample
    checkpoint: Path

    def argv(self, store: Path, *extra: str) -> list[str]:
        """The proposals job's arguments for `store`; recall on base and (the whole file's) novel boxes."""
        sample = self.sample
        return [f"--set=dataset.annotations={sample.annotations}", f"--set=dataset.image_root={sample.image_root}",
                f"--set=proposer.checkpoint={self.checkpoint}", f"--set=output.top_k={TOP_K}",
                f"--set=shard_size={SHARD_SIZE}", "--set=runtime.device=cpu", "--set=runtime.min_batch_size=2",
                "--set=runtime.max_batch_size=4", f"--set=recall.split={sample.split}",
                f"--set=recall.novel_annotations={sample.annotations}", "--store", str(store), *extra]


def proposal_world(root: Path, bad_inputs: bool = True) -> ProposalWorld:
    return ProposalWorld(root, make_sample(root / "sample", images=6, bad_inputs=bad_inputs),
                         save_tiny_proposer(root / "proposer" / "checkpoint.pt"))


def write_proposal_stage(world: ProposalWorld, store: Path, *extra: str) -> dict:
    """Run the job into `store` (failure rows never fail it here); returns its summary."""
    return run(world.argv(store, "--set=runtime.max_failure_rate=2.0", *extra))
