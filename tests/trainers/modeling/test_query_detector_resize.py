"""The query detector's input square: stretched (`square`) or aspect-kept and padded (`letterbox`), and the box
frame each makes normalised boxes fractions of, so training targets and predicted pixels agree."""
import pytest
import torch
from torchvision.ops import box_convert

from trainers.modeling.box_criterion import BoxTargets
from trainers.modeling.query_detector import IMAGE_MEAN, IMAGE_STD, QueryDetector, box_frame

MEAN = torch.tensor(IMAGE_MEAN).view(3, 1, 1)
STD = torch.tensor(IMAGE_STD).view(3, 1, 1)


def detector(resize: str) -> QueryDetector:
    torch.manual_seed(0)
    return QueryDetector(image_size=32, hidden_dim=16, num_heads=2, ffn_dim=32, encoder_layers=1, decoder_layers=2,
                         one_to_one_layers=1, min_queries=2, max_queries=4, resize=resize)


def test_letterbox_keeps_the_aspect_ratio_and_pads_below_and_right_with_zeros():
    image = torch.rand(3, 16, 64)  # 1 : 4, scaled by 32 / 64 to 8 × 32
    square = detector("letterbox").square_input(image)
    assert square.shape == (3, 32, 32)
    expected = (torch.nn.functional.interpolate(image[None], size=(8, 32), mode="bilinear",
                                                align_corners=False)[0] - MEAN) / STD
    assert torch.allclose(square[:, :8], expected, atol=1e-6)
    assert torch.count_nonzero(square[:, 8:]) == 0  # zero after normalising: the mean colour, as DETR pads


def test_square_stretches_the_image_to_the_square():
    image = torch.rand(3, 16, 64)
    expected = (torch.nn.functional.interpolate(image[None], size=(32, 32), mode="bilinear",
                                                align_corners=False)[0] - MEAN) / STD
    assert torch.allclose(detector("square").square_input(image), expected, atol=1e-6)


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


def test_an_unknown_resize_is_refused_naming_the_key():
    with pytest.raises(ValueError, match=r"opendet.detector.resize='stretch'"):
        QueryDetector(resize="stretch", config_section="opendet.detector")
