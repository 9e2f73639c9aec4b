"""The proposals job's model handler: several images per forward, and each image's proposals its own whatever
images Beam batches it with."""
import numpy as np
import pytest
import torch
from torchvision.models.detection.transform import GeneralizedRCNNTransform

from beam_jobs.proposal_handler import ProposalNetworkHandler
from trainers.proposer.padding_groups import padded_input_size, same_padding_groups
from tests.tiny_proposer import save_tiny_proposer
from trainers.proposer.config import ProposalOutputConfig


@pytest.mark.parametrize("min_size, max_size", [(128, 128), (100, 300), (200, 333)])
def test_padded_input_size_is_what_the_transform_gives_an_image_alone(min_size, max_size):
    transform = GeneralizedRCNNTransform(min_size, max_size, [0.5] * 3, [0.2] * 3).eval()
    for height in range(17, 400, 29):
        for width in range(13, 500, 37):
            alone = transform([torch.zeros(3, height, width)])[0].tensors.shape[-2:]
            assert padded_input_size(transform, height, width) == tuple(alone), (height, width)


def test_images_are_grouped_by_their_own_padded_size():
    transform = GeneralizedRCNNTransform(128, 128, [0.5] * 3, [0.2] * 3).eval()
    sizes = [(200, 240), (60, 250), (240, 200), (201, 241), (250, 60)]
    groups = same_padding_groups([np.zeros((h, w, 3), np.uint8) for h, w in sizes], transform)
    # 200x240 → 106x128, 240x200 → 128x106, 201x241 → 106x128: all padded to 128x128; 60x250 → 30x128 → 32x128.
    assert groups == [[0, 2, 3], [1], [4]]
    assert padded_input_size(transform, 60, 250) == (32, 128) and padded_input_size(transform, 250, 60) == (128, 32)


def test_an_images_proposals_do_not_depend_on_the_images_batched_with_it(tmp_path):
    checkpoint = save_tiny_proposer(tmp_path / "checkpoint.pt", seed=3)
    handler = ProposalNetworkHandler(str(checkpoint), ProposalOutputConfig(top_k=10), device="cpu")
    model = handler.load_model()
    rng = np.random.default_rng(0)
    wide = rng.integers(0, 256, (50, 240, 3), dtype=np.uint8)
    others = [rng.integers(0, 256, size, dtype=np.uint8) for size in ((240, 200, 3), (130, 140, 3))]
    (alone,) = [result.inference[0] for result in handler.run_inference([wide], model)]
    mixed = [result.inference[0] for result in handler.run_inference([others[0], wide, others[1]], model)]
    np.testing.assert_array_equal(mixed[1], alone)
    assert [len(a) for a in mixed] == [10, 10, 10]
    # Without the grouping, the wide image padded to the tall one's size finds other boxes.
    tensors = [torch.from_numpy(pixels).permute(2, 0, 1).float() / 255 for pixels in (others[0], wide)]
    boxes, scores = model.propose_tensors(tensors)[1]
    padded_together = torch.cat([boxes, scores[:, None]], 1).numpy()
    assert padded_together.shape != alone.shape or not np.allclose(padded_together, alone, atol=1e-3)
