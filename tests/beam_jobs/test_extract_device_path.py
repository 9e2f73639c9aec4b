"""extract-features' device path (runtime.crop_on: device), run end to end on the CPU device with real Beam runs,
against the host path on the same inputs: the same rows, dead letters and crop windows; embeddings to cosine
>= 0.99 (the issue's bar) and raw norms to 1%."""
import json
import logging

import numpy as np
import pytest
from apache_beam.testing.test_pipeline import TestPipeline
from PIL import Image

from beam_jobs.device_clip_handler import MODEL_READY
from beam_jobs.extract_features import run
from featurestore.arrow import embeddings_to_numpy
from featurestore.reader import StoreReader
from tests.beam_jobs.sample import make_sample
from tests.tiny_clip import save_local_dir

MODEL_OUTPUTS = ["embedding", "embedding_norm"]


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """The bad-input sample, its images re-saved as every kind of file the device path routes differently."""
    root = tmp_path_factory.mktemp("device")
    sample = make_sample(root / "sample", images=6, bad_inputs=True)
    coco = json.loads(sample.annotations.read_text())
    saves = {1: ("JPEG", {"quality": 92}), 2: ("JPEG", {"quality": 75}), 3: ("JPEG", {"progressive": True}),
             4: ("CMYK", {"quality": 90}), 5: ("L", {"quality": 90})}  # 6 stays a PNG
    for record in coco["images"]:
        if record["id"] in saves:
            fmt, options = saves[record["id"]]
            with Image.open(sample.image_root / record["file_name"]) as image:
                image = image.convert("RGB") if fmt == "JPEG" else image.convert(fmt)
                record["file_name"] = f"{record['id']:04d}.jpg"
                image.save(sample.image_root / record["file_name"], "JPEG", **options)
    # A JPEG whose pixels are not the size its record gives: a size_mismatch on both paths.
    Image.new("RGB", (50, 40), (200, 30, 30)).save(sample.image_root / "small.jpg", "JPEG")
    coco["images"].append({"id": 104, "file_name": "small.jpg", "width": 60, "height": 40})
    sample.annotations.write_text(json.dumps(coco))
    return root, save_local_dir(root / "clip", seed=4), sample


def extract(world, name: str, *settings: str, beam: bool = False) -> dict:
    root, model_dir, sample = world
    argv = [f"--set={o}" for o in [*sample.overrides(model_dir), "runtime.max_failure_rate=2.0", *settings]]
    argv += ["--store", str(root / name)]
    run(argv) if beam else run(argv, test_pipeline=TestPipeline())
    reader = StoreReader(root / name)
    keys = {"images": ["image_id"], "regions": ["image_id", "region_id"],
            "failures": ["image_id", "region_id", "kind"]}
    return {table: reader.read_table(table).sort_by([(k, "ascending") for k in columns])
            for table, columns in keys.items()}


@pytest.fixture(scope="module")
def host(world):
    return extract(world, "host", "runtime.crop_on=host")


def cosines(a, b) -> np.ndarray:
    a = embeddings_to_numpy(a.column("embedding")).astype(np.float32)
    b = embeddings_to_numpy(b.column("embedding")).astype(np.float32)
    return (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)


@pytest.mark.parametrize("resize, beam", [("per_crop", False), ("batched", True)])
def test_the_device_path_writes_the_host_paths_store(world, host, resize, beam, caplog):
    with caplog.at_level(logging.INFO, logger="beam_jobs.device_clip_handler"):
        device = extract(world, f"device-{resize}", "runtime.crop_on=device", f"runtime.crop_resize={resize}",
                         "runtime.max_batch_size=8", beam=beam)
    if not beam:  # a TestPipeline runs in this process, so the handler's log line is seen
        assert any(MODEL_READY in r.getMessage() and f"resized {resize}" in r.getMessage() for r in caplog.records)
    assert device["failures"].equals(host["failures"])  # the same dead letters, kinds and messages
    kinds = sorted(device["failures"].column("kind").to_pylist())
    assert {"missing", "truncated", "not_an_image", "size_mismatch"} <= set(kinds)
    for table in ("images", "regions"):
        assert device[table].drop_columns(MODEL_OUTPUTS).equals(host[table].drop_columns(MODEL_OUTPUTS)), table
        similarity = cosines(device[table], host[table])
        # per_crop is the host's own resize on the same pixels: batch composition only. batched resamples in
        # float and rounds once: one grey level here and there.
        assert similarity.min() >= (0.9999 if resize == "per_crop" else 0.99), (table, similarity.min())
        np.testing.assert_allclose(device[table].column("embedding_norm").to_numpy(),
                                   host[table].column("embedding_norm").to_numpy(), rtol=0.01)
    assert len(device["images"]) == 6  # the six sample images, none of the bad ones
    # The dtype the encoder ran in reaches the manifest on this path too (model.dtype as given: fp32).
    summary = StoreReader(world[0] / f"device-{resize}").manifest.stages["extract_features"].summary
    assert summary["model_dtype"] == [{"dtype": "fp32", "how": "given"}]


def test_auto_keeps_the_host_path_on_a_cpu(world, host, caplog):
    with caplog.at_level(logging.INFO, logger="beam_jobs.device_clip_handler"):
        auto = extract(world, "auto", "runtime.device=cpu")  # crop_on defaults to auto
    assert not [r for r in caplog.records if MODEL_READY in r.getMessage()]  # the device path's handler never ran
    assert auto["failures"].equals(host["failures"])
    for table in ("images", "regions"):
        assert auto[table].drop_columns(MODEL_OUTPUTS).equals(host[table].drop_columns(MODEL_OUTPUTS)), table
        # The same path twice: only how RunInference happened to batch the crops differs (float32 rounding).
        assert cosines(auto[table], host[table]).min() >= 0.9999
