"""The inference API a proposals job calls: a checkpoint loaded once and safely, decoded images in, per-image
(N, 5) float32 arrays out; a missing, unsafe or foreign checkpoint is an error naming the file and config key."""
from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch

from schemas.config import to_dict
from trainers.proposer.config import ProposalOutputConfig, ProposerConfig, ProposerNetworkConfig
from trainers.proposer.inference import ProposalGenerator, ProposerCheckpointError
from trainers.proposer.network import ProposalNetwork


def _save(path, network: ProposalNetwork, config: ProposerConfig, **extra) -> str:
    torch.save({"detector": network.state_dict(), "config": {"proposer": to_dict(config)}, **extra}, path)
    return str(path)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    torch.manual_seed(0)
    config = ProposerConfig(output=ProposalOutputConfig(top_k=12))
    network = ProposalNetwork.from_config(config.network)
    return _save(tmp_path_factory.mktemp("ckpt") / "checkpoint.pt", network, config), network


def test_decoded_images_of_any_size_give_sorted_float32_arrays_in_their_pixels(checkpoint):
    path, network = checkpoint
    generator = ProposalGenerator.from_checkpoint(path)
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, (90, 200, 3), dtype=np.uint8), rng.integers(0, 256, (256, 130, 3), np.uint8)]
    arrays = generator(images)
    for array, image in zip(arrays, images):
        assert array.dtype == np.float32 and array.shape == (12, 5)  # top_k of the saved config
        assert np.all(np.diff(array[:, 4]) <= 0) and np.all((array[:, 4] >= 0) & (array[:, 4] <= 1))
        assert np.all(array[:, 2] <= image.shape[1] + 1e-3) and np.all(array[:, 3] <= image.shape[0] + 1e-3)
        assert np.all(array[:, :2] >= 0) and np.all(array[:, 2:4] > array[:, :2])
    with torch.inference_mode():  # the network's own answer on each image alone (they pad to different sizes)
        expected = [network.eval().propose([torch.from_numpy(i).permute(2, 0, 1).float() / 255],
                                           ProposalOutputConfig(top_k=12))[0] for i in images]
    for array, (boxes, scores) in zip(arrays, expected):
        np.testing.assert_allclose(array, torch.cat([boxes, scores[:, None]], 1).numpy(), rtol=1e-5, atol=1e-4)
    fewer = ProposalGenerator.from_checkpoint(path, output=ProposalOutputConfig(top_k=3))
    assert [a.shape for a in fewer(images)] == [(3, 5), (3, 5)]
    with pytest.raises(ValueError, match=r"image 0 of the batch must be \(H, W, 3\) uint8 RGB"):
        generator([images[0].astype(np.float32)])


def test_a_missing_unsafe_or_foreign_checkpoint_names_the_file_and_the_config_key(tmp_path, checkpoint):
    with pytest.raises(ProposerCheckpointError, match=r"not found: .*nowhere.pt \(config key proposer.checkpoint\)"):
        ProposalGenerator.from_checkpoint(tmp_path / "nowhere.pt")

    class Exploit:
        def __reduce__(self):
            return (print, ("ran",))

    unsafe = tmp_path / "unsafe.pt"
    unsafe.write_bytes(pickle.dumps({"detector": Exploit()}, protocol=2))
    with pytest.raises(ProposerCheckpointError, match=r"unsafe.pt \(config key --checkpoint\) is not a checkpoint "
                                                      "that loads safely"):
        ProposalGenerator.from_checkpoint(unsafe, config_key="--checkpoint")

    foreign = tmp_path / "hdovd.pt"
    torch.save({"detector": {"w": torch.zeros(1)}, "config": {"method": "hdovd", "hdovd": {}}}, foreign)
    with pytest.raises(ProposerCheckpointError, match=r"hdovd.pt \(config key proposer.checkpoint\) is not a "
                                                      "proposal network checkpoint"):
        ProposalGenerator.from_checkpoint(foreign)

    path, network = checkpoint
    mismatched = _save(tmp_path / "other.pt", network,
                       ProposerConfig(network=ProposerNetworkConfig(objectness="classification")))
    with pytest.raises(ProposerCheckpointError, match="its weights do not fit the network its config describes"):
        ProposalGenerator.from_checkpoint(mismatched)
