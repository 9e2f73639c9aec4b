"""One hostile image among good ones costs one failure row on both paths (host: PIL; device: the device path forced
on the CPU), never the job: a NUL byte in a file name, decompression bombs as JPEG (the device decoder's kind) and
PNG, a header unlike the annotation. And a bomb costs no memory: the same job's peak RSS with and without one."""
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from apache_beam.testing.test_pipeline import TestPipeline

from beam_jobs.extract_features import run
from featurestore.arrow import embeddings_to_numpy
from featurestore.reader import StoreReader
from tests.beam_jobs.sample import make_sample
from tests.tiny_clip import save_local_dir
from tests.vlm.poison_images import jpeg_claiming, png_claiming

REPO = Path(__file__).resolve().parents[2]
MODEL_OUTPUTS = ["embedding", "embedding_norm"]
# image id → (file name, bytes, annotated width, height, the kind of its failure row)
POISON = {
    201: ("nul\x00.png", None, 50, 50, "bad_path"),
    202: ("bomb.jpg", jpeg_claiming(40000, 40000), 40000, 40000, "too_large"),
    203: ("bomb.png", png_claiming(60000, 60000), 64, 64, "too_large"),
    204: ("big.jpg", jpeg_claiming(13370, 13370), 13370, 13370, "too_large"),
    205: ("liar.jpg", jpeg_claiming(5000, 4000), 16, 16, "size_mismatch"),
}
# A bomb PIL alone would decode (under twice its limit), annotated at its claimed size: 432 MB of pixels if decoded.
MEMORY_BOMB = ("quiet-bomb.jpg", jpeg_claiming(12000, 12000), 12000, 12000)
PEAK_RSS_TOLERANCE_KIB = 10 * 1024  # two runs of the same job differed by up to 2.6 MB here


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("poison")
    sample = make_sample(root / "sample", images=6)
    clean = json.loads(sample.annotations.read_text())
    poisoned = json.loads(sample.annotations.read_text())
    for image_id, (name, data, width, height, _) in POISON.items():
        if data is not None:
            (sample.image_root / name).write_bytes(data)
        poisoned["images"].append({"id": image_id, "file_name": name, "width": width, "height": height})
    (root / "poisoned.json").write_text(json.dumps(poisoned))
    name, data, width, height = MEMORY_BOMB
    (sample.image_root / name).write_bytes(data)
    clean["images"].append({"id": 301, "file_name": name, "width": width, "height": height})
    (root / "memory_bomb.json").write_text(json.dumps(clean))
    return root, save_local_dir(root / "clip", seed=2), sample


def argv(world, store: str, *settings: str) -> list[str]:
    root, model_dir, sample = world
    return [f"--set={o}" for o in [*sample.overrides(model_dir), "runtime.max_failure_rate=2.0", *settings]] + [
        "--store", str(root / store)]


@pytest.fixture(scope="module")
def clean(world):
    run(argv(world, "clean", "runtime.crop_on=host"), test_pipeline=TestPipeline())
    return StoreReader(world[0] / "clean")


@pytest.mark.parametrize("crop_on", ["host", "device"])
def test_each_poison_image_is_one_failure_row_and_the_rest_is_committed(world, clean, crop_on):
    annotations = world[0] / "poisoned.json"
    summary = run(argv(world, f"poisoned-{crop_on}", f"runtime.crop_on={crop_on}",
                       f"dataset.annotations={annotations}"), test_pipeline=TestPipeline())
    assert summary["failures_by_kind"] == {"bad_path": 1, "size_mismatch": 1, "too_large": 3}
    reader = StoreReader(world[0] / f"poisoned-{crop_on}")
    failures = {row["image_id"]: row for row in reader.read_table("failures").to_pylist()}
    assert {image_id: failures[image_id]["kind"] for image_id in POISON} == {
        image_id: kind for image_id, (*_, kind) in POISON.items()}
    assert "runtime.max_image_pixels" in failures[204]["message"] and "not decoded" in failures[204]["message"]
    assert "NUL byte" in failures[201]["message"]
    for table in ("images", "regions"):  # the good images' rows, as a run without the poison wrote them
        keys = [("image_id", "ascending")] + ([("region_id", "ascending")] if table == "regions" else [])
        got, expected = reader.read_table(table).sort_by(keys), clean.read_table(table).sort_by(keys)
        assert got.drop_columns(MODEL_OUTPUTS).equals(expected.drop_columns(MODEL_OUTPUTS)), table
        a, b = (embeddings_to_numpy(t.column("embedding")).astype(np.float32) for t in (got, expected))
        assert ((a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)).min() >= 0.99


def peak_rss_kib(world, store: str, *settings: str) -> int:
    done = subprocess.run([sys.executable, "-m", "tests.beam_jobs.peak_memory_job", *argv(world, store, *settings)],
                          cwd=REPO, capture_output=True, text=True, timeout=600,
                          env={**os.environ, "PYTHONPATH": str(REPO)})
    assert done.returncode == 0, done.stderr[-3000:]
    return int(re.search(r"PEAK_RSS_KIB (\d+)", done.stdout).group(1))


@pytest.mark.slow
@pytest.mark.parametrize("crop_on", ["host", "device"])
def test_a_bomb_costs_no_memory(world, crop_on):
    """The same job with and without a 12000x12000 JPEG bomb (788 bytes; its pixels would take 432 MB, PIL's
    decoder allocates them and the device decoder has no limit at all): peak RSS within a few MB."""
    without = peak_rss_kib(world, f"memory-{crop_on}", f"runtime.crop_on={crop_on}")
    bombed = peak_rss_kib(world, f"memory-bomb-{crop_on}", f"runtime.crop_on={crop_on}",
                          f"dataset.annotations={world[0] / 'memory_bomb.json'}")
    assert bombed - without < PEAK_RSS_TOLERANCE_KIB, (without, bombed)
    kinds = StoreReader(world[0] / f"memory-bomb-{crop_on}").read_table("failures").column("kind").to_pylist()
    assert kinds == ["too_large"]
