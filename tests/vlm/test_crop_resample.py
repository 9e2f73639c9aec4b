"""The device path's batched cut-and-resize (run here on the CPU device) against open_clip's own transform, against
the host path, and through real image towers: the ShapesOV CLIP teacher and a real-size random-weight ViT-B-32."""
from pathlib import Path

import numpy as np
import pytest
import torch
from open_clip.transform import PreprocessCfg, image_transform_v2
from PIL import Image

from pipelines.crops import crop_window, cut
from shapesov.config import SceneConfig
from shapesov.scenes import sample_scene
from tests.vlm.jpeg_files import encoded, photo
from vlm.clip import load_clip, resolve_clip
from vlm.clip_preprocess import CropPreprocess, normalise_batch, resize_crop
from vlm.crop_resample import CropWindows, resample_batched, resize_per_crop
from vlm.device_decode import EncodedImage
from vlm.embeddings import unit_embeddings
from vlm.region_encoder import RegionEncoder, RegionRequest

TEACHER = Path(__file__).resolve().parents[2] / "assets" / "teachers" / "clip"
# One grey level after open_clip's normalisation (std ≈ 0.26): 1 / 255 / 0.26 ≈ 0.015.
ONE_LEVEL = 0.0151


def _images_and_windows():
    arrays = [photo(120, 160, seed=1), photo(90, 70, seed=2)]
    windows, owners = [], []
    for index, pixels in enumerate(arrays):
        h, w = pixels.shape[:2]
        windows += [(0, 0, w, h), (10, 5, 41, min(h, 100)), (3, 3, 20, 20), (5, 30, min(w, 130), 50), (1, 1, 2, 3)]
        owners += [index] * 5
    return arrays, CropWindows(np.array(owners), np.array(windows))


@pytest.mark.parametrize("resize_mode", ["shortest", "squash", "longest"])
@pytest.mark.parametrize("interpolation", ["bicubic", "bilinear"])
def test_batched_crops_match_open_clips_transform(resize_mode, interpolation):
    cfg = PreprocessCfg(size=48, resize_mode=resize_mode, interpolation=interpolation, fill_color=0)
    reference = image_transform_v2(cfg, is_train=False)
    pre = CropPreprocess.from_open_clip(vars(cfg))
    arrays, crops = _images_and_windows()
    images = [torch.from_numpy(a).permute(2, 0, 1) for a in arrays]
    got = normalise_batch(resample_batched(images, crops, pre, torch.float32), pre, torch.float32)
    expected = torch.stack([reference(Image.fromarray(cut(arrays[b], tuple(w))))
                            for b, w in zip(crops.image_index, crops.windows)])
    difference = (got - expected).abs()
    # PIL rounds and clips to 8 bits after each of its two passes, we once at the end: on average a tenth of a grey
    # level apart; where bicubic overshoots a sharp edge and PIL's first pass clips it, a few levels.
    assert difference.mean() < 0.1 * ONE_LEVEL and difference.max() < 4 * ONE_LEVEL, difference.max()


def test_batched_crops_match_the_host_path_with_padding_and_fill():
    pre = CropPreprocess((40, 56), (0.5,) * 3, (0.25,) * 3, "bicubic", "longest", fill_color=127)
    arrays, crops = _images_and_windows()
    images = [torch.from_numpy(a).permute(2, 0, 1) for a in arrays]
    batched = resample_batched(images, crops, pre, torch.float32)
    host = resize_per_crop(images, crops, pre).float()
    assert batched.shape == host.shape == (len(crops), 3, 40, 56)
    difference = (batched - host).abs()
    # torchvision's uint8 kernel rounds after each pass, like PIL: within a grey level but at clipped overshoots.
    assert difference.mean() < 0.1 and difference.max() <= 4.0, difference.max()
    assert (batched == 127).any()  # the padding really is there, in fill_color


def _cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a, b = a.astype(np.float32), b.astype(np.float32)
    return (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)


def host_path(model, pre, dtype, arrays, requests) -> tuple[np.ndarray, np.ndarray]:
    """What extract-features stores on the host path: PIL pixels, resize_crop per window, one forward."""
    crops = [resize_crop(cut(pixels, tuple(window)), pre) for pixels, r in zip(arrays, requests) for window in r.windows]
    with torch.inference_mode():
        unit, norms = unit_embeddings(model.encode_image(normalise_batch(torch.stack(crops), pre, dtype)))
    return unit.numpy(), norms.numpy()


def device_path(model, pre, dtype, requests, resize="batched", max_crops=16) -> tuple[np.ndarray, np.ndarray]:
    encoder = RegionEncoder(model, pre, torch.device("cpu"), dtype, max_crops=max_crops, resize=resize)
    results = encoder.encode(requests)
    assert all(r.error is None for r in results)
    return np.concatenate([r.embeddings for r in results]), np.concatenate([r.norms for r in results])


def _requests(arrays, boxes_per_image, mode="context"):
    requests = []
    for index, (pixels, boxes) in enumerate(zip(arrays, boxes_per_image)):
        h, w = pixels.shape[:2]
        windows = [crop_window(box, mode, w, h, 1.5) for box in boxes] + [(0, 0, w, h)]
        data = encoded(pixels, quality=95)
        requests.append(RegionRequest(EncodedImage(data, f"{index}.jpg"), f"{index}.jpg", (w, h), np.array(windows)))
    return requests


def _decoded(requests):
    """The pixels PIL decodes from each request's JPEG (the host path's input)."""
    from vlm.images import decode_image
    return [decode_image(r.image.data, r.image.path).pixels for r in requests]


def test_shapesov_teacher_embeds_device_cut_crops_like_host_cut_ones():
    clip = load_clip(resolve_clip(f"local-dir:{TEACHER}", None, None))
    pre = CropPreprocess.from_open_clip(clip.preprocess_cfg)
    rng = np.random.default_rng(0)
    scenes = [sample_scene(rng, SceneConfig()) for _ in range(4)]
    arrays = [np.array(scene.image.convert("RGB")) for scene in scenes]
    boxes = [[(x, y, x + w, y + h) for x, y, w, h in (o.bbox for o in scene.objects)] for scene in scenes]
    requests = _requests(arrays, boxes)
    host_unit, host_norms = host_path(clip.model, pre, torch.float32, _decoded(requests), requests)
    unit, norms = device_path(clip.model, pre, torch.float32, requests)
    cosines = _cosines(unit, host_unit)
    # The bar: cosine >= 0.99 between a crop cut on the device and on the host. The two differ only in the
    # resampling's rounding (one grey level, see above), so the teacher's 64-d embeddings agree far closer.
    assert cosines.min() >= 0.99, cosines.min()
    np.testing.assert_allclose(norms, host_norms, rtol=0.01)


@pytest.fixture(scope="module")
def vit_b_32():
    import open_clip

    torch.manual_seed(0)
    model = open_clip.create_model("ViT-B-32").eval()  # real architecture, random weights: no download
    return model, CropPreprocess.from_open_clip(dict(open_clip.get_model_preprocess_cfg(model)))


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_random_vit_b_32_embeds_device_cut_crops_like_host_cut_ones(vit_b_32, dtype):
    model, pre = vit_b_32
    model = model.to(dtype)
    rng = np.random.default_rng(1)
    arrays = [photo(480, 640, seed=s) for s in range(2)]
    boxes = []
    # 4 boxes and the whole image per photo: 10 crops, two forwards of at most 6 on the device path. Few, because
    # without AVX512-BF16 a bf16 ViT-B-32 runs 2 crops/s on 2 cores (20 crops took 39 s of the quick suite).
    for _ in arrays:
        xy, wh = rng.uniform(0, 320, (4, 2)), rng.uniform(30, 300, (4, 2))
        boxes.append([tuple(b) for b in np.concatenate([xy, xy + wh], 1).tolist()])
    requests = _requests(arrays, boxes, mode="square")
    host_unit, host_norms = host_path(model, pre, dtype, _decoded(requests), requests)
    unit, norms = device_path(model, pre, dtype, requests, max_crops=6)
    cosines = _cosines(unit, host_unit)
    assert cosines.min() >= 0.99, (dtype, cosines.min())  # the bar, same model, same dtype on both sides
    np.testing.assert_allclose(norms, host_norms, rtol=0.02)


def test_the_per_crop_device_path_is_the_host_path_exactly(vit_b_32):
    """On a CPU the device path decodes with torchvision (same pixels as PIL) and resizes per crop with the host's
    own function: only batch composition separates the two, so float32 embeddings agree to rounding."""
    model, pre = vit_b_32
    model = model.float()
    arrays = [photo(240, 320, seed=7)]
    requests = _requests(arrays, [[(10, 10, 100, 90), (50, 60, 300, 230)]], mode="tight")
    host_unit, _ = host_path(model, pre, torch.float32, _decoded(requests), requests)
    unit, _ = device_path(model, pre, torch.float32, requests, resize="per_crop")
    np.testing.assert_allclose(unit.astype(np.float32), host_unit, atol=1e-3)  # float16 storage of the result
