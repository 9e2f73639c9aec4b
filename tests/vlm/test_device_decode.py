"""The device path's decoding, run on the CPU device: every file decodes to PIL's pixels or fails with PIL's kind."""
import numpy as np
import torch

from tests.vlm.jpeg_files import files
from vlm.device_decode import EncodedImage, decode_on_device, prepare_on_host
from vlm.images import ImageReadError, decode_image


def test_every_kind_of_file_gives_the_pixels_or_the_dead_letter_of_the_host_path():
    images = [EncodedImage(data, name) for name, data in files().items()]
    prepared = [prepare_on_host(image) for image in images]
    assert [p.jpeg is not None for p in prepared] == [True, True, True, False, False, False, False, False]
    decoded = decode_on_device(images, prepared, torch.device("cpu"))
    for image, got in zip(images, decoded):
        try:
            expected = decode_image(image.data, image.path).pixels
        except ImageReadError as error:
            assert isinstance(got, ImageReadError) and (got.kind, str(got)) == (error.kind, str(error)), image.path
            continue
        assert got.dtype == torch.uint8 and got.shape == (3, *expected.shape[:2]), image.path
        # torchvision's CPU decoder is libjpeg-turbo like PIL's, with the same settings: the same pixels, exactly.
        np.testing.assert_array_equal(got.permute(1, 2, 0).numpy(), expected, err_msg=image.path)


def test_a_batch_with_a_file_the_device_decoder_refuses_still_decodes_the_others():
    good = files()["baseline"]
    # A complete baseline file whose scan names a component the frame does not have: the header scan sends it to
    # the device decoder, which raises, so the batch is retried one by one and this file goes to PIL.
    broken = bytearray(good)
    broken[good.index(b"\xff\xda") + 5] = 0x09
    images = [EncodedImage(good, "a.jpg"), EncodedImage(bytes(broken), "b.jpg"), EncodedImage(good, "c.jpg")]
    prepared = [prepare_on_host(i) for i in images]
    assert all(p.jpeg is not None for p in prepared)
    decoded = decode_on_device(images, prepared, torch.device("cpu"))
    assert isinstance(decoded[0], torch.Tensor) and torch.equal(decoded[0], decoded[2])
    assert isinstance(decoded[1], ImageReadError) and decoded[1].kind == "truncated"  # PIL's kind for corrupt data
    assert "b.jpg is truncated or corrupt" in str(decoded[1])
