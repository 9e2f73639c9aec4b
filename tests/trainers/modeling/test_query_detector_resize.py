"""The query detector's input square: stretched (`square`) or aspect-kept and padded (`letterbox`), and the box
frame each makes normalised boxes fractions of, so training targets and predicted pixels agree; the padding's
tokens masked as the released Open-Det2 code masks them."""
from typing import ClassVar

import pytest
import torch
import torch.nn.functional as F
from torchvision.ops import box_convert

from trainers.modeling.box_criterion import BoxTargets
from trainers.modeling.query_detector import IMAGE_MEAN, IMAGE_STD, QueryDetector, QueryDetectorConfig, box_frame

MEAN = torch.tensor(IMAGE_MEAN).view(3, 1, 1)
STD = torch.tensor(IMAGE_STD).view(3, 1, 1)


def config(resize: str, **sizes) -> QueryDetectorConfig:
    return QueryDetectorConfig(image_size=32, hidden_dim=16, num_heads=2, ffn_dim=32, encoder_layers=1,
                               decoder_layers=2, one_to_one_layers=1, min_queries=2, max_queries=4, resize=resize,
                               **sizes)


def detector(resize: str, **sizes) -> QueryDetector:
    torch.manual_seed(0)
    return QueryDetector(config(resize, **sizes))


def test_letterbox_keeps_the_aspect_ratio_and_pads_below_and_right_with_zeros():
    image = torch.rand(3, 16, 64)  # 1 : 4, scaled by 32 / 64 to 8 × 32
    square, padding = detector("letterbox").square_input(image)
    assert square.shape == (3, 32, 32) and padding[:8].logical_not().all() and padding[8:].all()
    expected = (torch.nn.functional.interpolate(image[None], size=(8, 32), mode="bilinear",
                                                align_corners=False)[0] - MEAN) / STD
    assert torch.allclose(square[:, :8], expected, atol=1e-6)
    assert torch.count_nonzero(square[:, 8:]) == 0  # zero after normalising: the mean colour, as DETR pads


def test_square_stretches_the_image_to_the_square():
    image = torch.rand(3, 16, 64)
    expected = (torch.nn.functional.interpolate(image[None], size=(32, 32), mode="bilinear",
                                                align_corners=False)[0] - MEAN) / STD
    square, padding = detector("square").square_input(image)
    assert torch.allclose(square, expected, atol=1e-6) and not padding.any()


def test_box_frames_are_the_image_or_a_square_of_its_longer_side():
    assert box_frame(138, 254, "square") == (138, 254)
    assert box_frame(138, 254, "letterbox") == (254, 254)
    assert box_frame(256, 128, "letterbox") == (256, 256)
    images = [torch.rand(3, 20, 40), torch.rand(3, 30, 30)]
    with torch.no_grad():
        output = detector("letterbox")(images)
    assert output.image_sizes == [(20, 40), (30, 30)] and output.box_frames == [(40, 40), (30, 30)]


def test_a_target_normalised_in_its_frame_lands_on_the_same_input_pixels_and_back():
    """A box of the 16 × 64 image, normalised in its letterbox frame, covers the input square's pixels that show it;
    scaled back by the frame (as inference does) it is the same box."""
    pixels = torch.tensor([[8.0, 4.0, 40.0, 12.0]])
    frame = box_frame(16, 64, "letterbox")
    normalised = BoxTargets.from_pixel_boxes([pixels], [frame]).boxes
    on_input = box_convert(normalised, "cxcywh", "xyxy") * 32  # the 32-px square: scale 0.5, image at top-left
    assert on_input.tolist() == [[4.0, 2.0, 20.0, 6.0]]
    back = box_convert(normalised, "cxcywh", "xyxy") * torch.tensor([frame[1], frame[0], frame[1], frame[0]])
    assert torch.allclose(back, pixels)


class OpenDetSection(QueryDetectorConfig):
    SECTION: ClassVar[str] = "opendet.detector"


def test_an_unknown_resize_is_refused_naming_the_key():
    with pytest.raises(ValueError, match=r"opendet.detector.resize='stretch'"):
        QueryDetector(OpenDetSection(resize="stretch"))
    with pytest.raises(ValueError, match=r"opendet.detector.min_queries=5"):
        OpenDetSection(min_queries=5, max_queries=4)


def released_token_padding(pixel_padding: torch.Tensor, level_shapes: list[tuple[int, int]]) -> torch.Tensor:
    """The released masks (Open-Det2 qfree_det backbone Joiner / misc NestedTensor, as DETR's): the pixel mask resized
    to each level by nearest neighbour, flattened level after level (DeformableTransformer.forward's mask_flatten)."""
    return torch.cat([F.interpolate(pixel_padding[None].float(), size=shape).to(torch.bool)[0].flatten(1)
                      for shape in level_shapes], 1)


def test_padded_tokens_are_masked_as_released_and_never_become_queries():
    model = detector("letterbox", sampling_points=2).eval()
    images = [torch.rand(3, 16, 64), torch.rand(3, 30, 30)]  # one letterboxed to 8 × 32, one not padded
    with torch.no_grad():
        output = model(images)
        pixel_padding = torch.stack([model.square_input(image)[1] for image in images])
    expected = released_token_padding(pixel_padding, output.level_shapes)
    assert torch.equal(output.token_padding, expected) and expected[0].any() and not expected[1].any()
    _, padding = output.padding.shape, output.padding
    indices, _ = model.select_queries(torch.zeros_like(output.token_padding, dtype=torch.float).fill_(5.0),
                                      output.token_padding)
    assert not output.token_padding.gather(1, indices)[~padding].any()
    # Every token above the threshold, yet an image's queries are its valid tokens at most (here max_queries).
    valid = (~output.token_padding).sum(dim=1)
    assert ((~padding).sum(dim=1) <= valid).all()


def test_what_padded_tokens_hold_reaches_no_valid_token_nor_query():
    model = detector("letterbox", sampling_points=2).eval()
    images = [torch.rand(3, 16, 64)]
    with torch.no_grad():
        tokens, positions, _, shapes, token_padding = model.tokens(images)
        noisy = tokens.masked_fill(token_padding[..., None], 100.0)
        memory = model.encoder(tokens + positions, src_key_padding_mask=token_padding)
        noisy_memory = model.encoder(noisy + positions, src_key_padding_mask=token_padding)
        assert torch.allclose(memory[~token_padding], noisy_memory[~token_padding], atol=1e-5)
        # Deformable cross-attention reads padded tokens as zero values (MSDeformAttn's input_padding_mask).
        attention = model.decoder[0].cross.attention
        reference = torch.tensor([[[0.5, 0.5, 1.0, 1.0]]])
        query = torch.randn(1, 1, 16)
        read = attention(query, reference, memory, shapes, token_padding)
        assert torch.allclose(read, attention(query, reference, memory.masked_fill(token_padding[..., None], 7.0),
                                              shapes, token_padding), atol=1e-6)
