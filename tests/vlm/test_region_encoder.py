"""RegionEncoder on the CPU device: per-image results in request order, dead letters where the host path has them,
the same embeddings whatever the chunking, the host thread or the resize kernel."""
import numpy as np
import pytest
import torch

from tests.tiny_clip import tiny_model
from tests.vlm.jpeg_files import encoded, files, photo
from vlm.clip_preprocess import CropPreprocess
from vlm.device_decode import EncodedImage
from vlm.region_encoder import RegionEncoder, RegionRequest


@pytest.fixture(scope="module")
def model():
    import open_clip

    clip = tiny_model(seed=3).eval()
    return clip, CropPreprocess.from_open_clip(dict(open_clip.get_model_preprocess_cfg(clip)))


def request(name: str, data: bytes, size=(64, 48), windows=((0, 0, 64, 48), (5, 5, 30, 40))) -> RegionRequest:
    return RegionRequest(EncodedImage(data, f"/images/{name}"), name, size, np.array(windows))


def requests() -> list[RegionRequest]:
    data = files()
    many = [(x, y, x + 20, y + 16) for x in range(0, 40, 8) for y in range(0, 30, 10)]  # 15 windows, > max_crops
    return [request("a.jpg", data["baseline"]), request("b.jpg", data["truncated"]),
            request("c.png", data["png"], windows=many), request("d.txt", data["text"]),
            request("e.jpg", data["baseline"], size=(60, 48)), request("f.jpg", data["progressive"]),
            request("g.jpg", encoded(photo(48, 64, seed=9), quality=80))]


def test_results_follow_requests_with_the_host_paths_dead_letters(model):
    clip, pre = model
    encoder = RegionEncoder(clip, pre, torch.device("cpu"), torch.float32, max_crops=8, resize="per_crop")
    results = encoder.encode(requests())
    kinds = [r.error.kind if r.error else None for r in results]
    assert kinds == [None, "truncated", None, "not_an_image", "size_mismatch", None, None]
    assert str(results[4].error) == ("e.jpg is 64x48 but the annotations say 60x48; its boxes would not fit "
                                     "the pixels")
    assert "/images/b.jpg is truncated or corrupt" in str(results[1].error)
    assert [None if r.embeddings is None else r.embeddings.shape for r in results] == [
        (2, 16), None, (15, 16), None, None, (2, 16), (2, 16)]
    for result in (r for r in results if r.error is None):
        assert result.embeddings.dtype == np.float16 and result.norms.dtype == np.float32
        np.testing.assert_allclose(np.linalg.norm(result.embeddings.astype(np.float32), axis=1), 1, atol=2e-3)
        assert result.model_seconds > 0 and result.decode_seconds > 0


@pytest.mark.parametrize("max_crops, prefetch, resize", [(64, True, "per_crop"), (3, False, "per_crop"),
                                                         (5, True, "batched")])
def test_embeddings_do_not_depend_on_chunking_threads_or_kernel(model, max_crops, prefetch, resize):
    clip, pre = model
    reference = RegionEncoder(clip, pre, torch.device("cpu"), torch.float32, max_crops=8, resize="per_crop")
    other = RegionEncoder(clip, pre, torch.device("cpu"), torch.float32, max_crops=max_crops, resize=resize,
                          prefetch=prefetch)
    for expected, got in zip(reference.encode(requests()), other.encode(requests())):
        assert (expected.error is None) == (got.error is None)
        if expected.error is None:
            # float16 storage (2^-11 relative) and, for the batched kernel, one grey level of resampling rounding.
            atol = 1e-3 if resize == "per_crop" else 0.03
            np.testing.assert_allclose(got.embeddings.astype(np.float32), expected.embeddings.astype(np.float32),
                                       atol=atol)
