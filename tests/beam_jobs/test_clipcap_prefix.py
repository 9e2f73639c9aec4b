"""Each ClipCap gets the prefix its checkpoint was trained on: extract-features stores unit-length embeddings and their
raw norms, pseudo-labels restores the raw `encode_image` output for an official-layout MLP checkpoint (CLIP_prefix_caption
feeds it unscaled) and keeps unit length for a transformer mapper or a checkpoint trained with `--normalize_prefix`.

The inputs the mapper really receives are recorded with a global forward pre-hook of torch on the real job
(TestPipeline runs the DoFns in this process) and compared with `encode_image` run directly on the same crops."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from apache_beam.testing.test_pipeline import TestPipeline
from PIL import Image

from beam_jobs import extract_features, pseudo_labels
from featurestore.arrow import embeddings_to_numpy
from featurestore.reader import StoreReader
from pipelines.crops import cut
from tests.beam_jobs.sample import make_sample
from tests.tiny_clip import save_local_dir
from tests.tiny_teachers import write_tiny_clipcap
from vlm.clip import load_clip, resolve_clip
from vlm.clip_preprocess import CropPreprocess, normalise_batch, resize_crop
from vlm.clipcap import MlpMapper, TransformerMapper

TINY_DIM = 16  # embed_dim of tests/assets/model_configs/tiny-vit-test.json


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    root = tmp_path_factory.mktemp("prefix")
    model_dir = save_local_dir(root / "clip", seed=2)
    sample = make_sample(root / "sample", images=3)
    argv = [f"--set={o}" for o in sample.overrides(model_dir)] + ["--store", str(root / "store")]
    extract_features.run(argv, test_pipeline=TestPipeline())
    return root, model_dir, sample


def raw_encode_image(model_dir, image_root, store_root) -> dict[tuple[int, int], np.ndarray]:
    """(image_id, region_id) → float32 `encode_image` output (no normalisation) of every proposal crop, computed
    without Beam: the stored crop window cut from the decoded file, open_clip's preprocessing on tensors."""
    clip = load_clip(resolve_clip(f"local-dir:{model_dir}", None, None))
    pre = CropPreprocess.from_open_clip(clip.preprocess_cfg)
    reader = StoreReader(store_root)
    names = dict(zip(*(reader.read_table("images").column(c).to_pylist() for c in ("image_id", "file_name"))))
    rows = [r for r in reader.read_table("regions", ["image_id", "region_id", "source", "crop_box"]).to_pylist()
            if r["source"] == "proposal"]
    crops = []
    for row in rows:
        with Image.open(image_root / names[row["image_id"]]) as image:
            pixels = np.array(image.convert("RGB"))
        crops.append(resize_crop(cut(pixels, tuple(int(v) for v in row["crop_box"])), pre))
    with torch.inference_mode():
        raw = clip.model.encode_image(normalise_batch(torch.stack(crops), pre, torch.float32)).numpy()
    return {(row["image_id"], row["region_id"]): vector for row, vector in zip(rows, raw)}


def mapper_inputs(store_root, checkpoint, gpt_dir, *settings) -> np.ndarray:
    """Every row the ClipCap mapper received while pseudo-labels ran, stacked."""
    seen: list[np.ndarray] = []

    def record(module, args):
        if isinstance(module, (MlpMapper, TransformerMapper)):
            seen.append(args[0].detach().float().numpy().copy())

    argv = ["--store", str(store_root), "--overwrite", "--set", "captioner.name=clipcap",
            "--set", f"captioner.clipcap.checkpoint={checkpoint}", "--set", f"captioner.clipcap.gpt_dir={gpt_dir}",
            "--set", "captioner.clipcap.method=greedy", "--set", "captioner.clipcap.max_tokens=3",
            "--set", "runtime.device=cpu", "--set", "runtime.max_failure_rate=1.0"]
    for setting in settings:
        argv += ["--set", setting]
    handle = torch.nn.modules.module.register_module_forward_pre_hook(record)
    try:
        pseudo_labels.run(argv, test_pipeline=TestPipeline())
    finally:
        handle.remove()
    return np.concatenate(seen)


def _match(received: np.ndarray, expected: dict) -> dict:
    """expected key → the received row closest in direction (every crop of the sample is distinct)."""
    unit = received / np.linalg.norm(received, axis=1, keepdims=True)
    out = {}
    for key, vector in expected.items():
        out[key] = received[int(np.argmax(unit @ (vector / np.linalg.norm(vector))))]
    return out


def test_official_mlp_checkpoint_receives_the_raw_encode_image_output(store, tmp_path):
    root, model_dir, sample = store
    checkpoint, gpt_dir = write_tiny_clipcap(tmp_path / "mlp", prefix_size=TINY_DIM, mapping_type="mlp")
    received = mapper_inputs(root / "store", checkpoint, gpt_dir)  # normalize_prefix unset: the official convention
    expected = raw_encode_image(model_dir, sample.image_root, root / "store")
    assert len(received) == len(expected)  # each pseudo box captioned once
    for key, row in _match(received, expected).items():
        # Tolerance 1e-3 of the norm: the stored unit vector is float16 (relative rounding 2^-11 ≈ 4.9e-4 per
        # component); the norm is float32 and the crop pixels are the same uint8 tensors.
        error = np.linalg.norm(row - expected[key]) / np.linalg.norm(expected[key])
        assert error < 1e-3, (key, error)
    norms = np.array([np.linalg.norm(v) for v in expected.values()])
    assert not np.allclose(norms, 1.0, atol=0.05)  # raw output is not unit length, so the test can tell them apart


def test_transformer_mapper_and_normalize_prefix_get_the_stored_unit_vectors(store, tmp_path):
    root, _, _ = store
    reader = StoreReader(root / "store")
    regions = reader.read_table("regions")
    proposal = np.array([s == "proposal" for s in regions.column("source").to_pylist()])
    stored = embeddings_to_numpy(regions.column("embedding")).astype(np.float32)[proposal]
    checkpoint, gpt_dir = write_tiny_clipcap(tmp_path / "transformer", prefix_size=TINY_DIM,
                                             mapping_type="transformer")
    mlp_checkpoint, mlp_gpt_dir = write_tiny_clipcap(tmp_path / "mlp", prefix_size=TINY_DIM, mapping_type="mlp")
    for received in (mapper_inputs(root / "store", checkpoint, gpt_dir),
                     mapper_inputs(root / "store", mlp_checkpoint, mlp_gpt_dir, "captioner.clipcap.normalize_prefix=true")):
        # Exactly the stored float16 vectors, in float32: nothing rescales them.
        assert sorted(map(tuple, received)) == sorted(map(tuple, stored))
