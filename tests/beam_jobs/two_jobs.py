"""Both Beam jobs, one after the other, on the test sample (every kind of bad input included), with a tiny CLIP and
given captions, under any runner options, into any store; and every table of such a store, for comparing runners
and storage row for row."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa

from beam_jobs import extract_features, pseudo_labels
from featurestore.arrow import embeddings_to_numpy
from featurestore.reader import StoreReader
from tests.beam_jobs.sample import Sample, make_sample
from tests.pseudo_label_store import write_given_captions
from tests.tiny_clip import save_local_dir

# The order each table is compared in: its keys, then enough columns to make the order total.
SORT_KEYS = {"images": ("image_id",), "regions": ("image_id", "region_id"),
             "pseudo_labels": ("image_id", "region_id"), "vocab": ("kind", "name"),
             "failures": ("stage", "image_id", "region_id", "kind", "message")}
CAPTIONS = ("a red star on a wall", "two hearts next to a circle", "a photo of the background", "",
            "a square box and a small circle")
FLOAT_TOLERANCE = 2e-3  # float16 storage + another runner's batch sizes in RunInference


@dataclass(frozen=True)
class JobWorld:
    root: Path
    model_dir: Path
    sample: Sample
    captions: Path  # given captions for the pseudo boxes (written from the first extract run)

    def extract_argv(self, store: str) -> list[str]:
        return [f"--set={o}" for o in self.sample.overrides(self.model_dir)] + [
            "--store", store, "--set=runtime.max_failure_rate=2.0"]

    def labels_argv(self, store: str) -> list[str]:
        return ["--store", store, "--set=captioner.name=given", f"--set=captioner.given.path={self.captions}",
                "--set=runtime.device=cpu", "--set=runtime.min_batch_size=1", "--set=runtime.max_failure_rate=2.0"]


def make_world(root: Path) -> JobWorld:
    return JobWorld(root, save_local_dir(root / "clip", seed=1), make_sample(root / "sample", images=6,
                                                                             bad_inputs=True), root / "captions.jsonl")


def write_captions(world: JobWorld, store: str | Path) -> None:
    """One caption per pseudo box of `store`, cycling through CAPTIONS (an empty one and one without a noun
    among them: failure rows of the pseudo-labels stage)."""
    regions = StoreReader(store).read_table("regions", ["image_id", "region_id", "source"]).to_pylist()
    keys = sorted((r["image_id"], r["region_id"]) for r in regions if r["source"] == "proposal")
    write_given_captions(world.captions, {key: CAPTIONS[n % len(CAPTIONS)] for n, key in enumerate(keys)})


def run_both(world: JobWorld, store: str | Path, beam_args: list[str] = ()) -> tuple[dict, dict]:
    """extract-features then pseudo-labels into `store`; their summaries."""
    extracted = extract_features.run(world.extract_argv(str(store)) + list(beam_args))
    if not world.captions.exists():
        write_captions(world, store)
    return extracted, pseudo_labels.run(world.labels_argv(str(store)) + list(beam_args))


def store_tables(store: str | Path) -> dict[str, pa.Table]:
    """Every table of the store, each in a total order."""
    reader = StoreReader(store)
    return {name: reader.read_table(name).sort_by([(key, "ascending") for key in keys])
            for name, keys in SORT_KEYS.items() if reader.table_commits(name)}


def assert_same_tables(actual: dict[str, pa.Table], expected: dict[str, pa.Table]) -> None:
    """The same tables, rows and values, exactly; floats (embeddings, norms, cos, score) within FLOAT_TOLERANCE.

    Floats are never compared bit for bit, not even between two runs on one runner: Beam's BatchElements sizes the
    RunInference batches by measured time, so a crop is encoded beside other crops from run to run, which moves
    float32 results in their last bits (seen in embedding_norm) and can move a stored float16 by one step."""
    assert actual.keys() == expected.keys()
    for name, table in expected.items():
        other = actual[name]
        assert other.schema.equals(table.schema), name
        assert other.num_rows == table.num_rows, name
        for column in table.column_names:
            want, got = table.column(column), other.column(column)
            if pa.types.is_fixed_size_list(want.type):
                np.testing.assert_allclose(embeddings_to_numpy(got).astype(np.float32),
                                           embeddings_to_numpy(want).astype(np.float32), atol=FLOAT_TOLERANCE,
                                           err_msg=f"{name}.{column}")
            elif pa.types.is_floating(want.type):
                np.testing.assert_allclose(got.to_numpy(zero_copy_only=False), want.to_numpy(zero_copy_only=False),
                                           atol=FLOAT_TOLERANCE, err_msg=f"{name}.{column}")
            else:
                assert got.to_pylist() == want.to_pylist(), f"{name}.{column}"
