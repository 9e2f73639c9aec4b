import logging

import numpy as np
from open_clip.transform import PreprocessCfg, image_transform_v2
import pytest
import torch
from PIL import Image

from vlm.clip_preprocess import CropPreprocess, normalise_batch, resize_crop, stack_crops
from vlm.clip import ModelLoadError, load_clip, resolve_clip
from tests.float32 import ABS, REL
from tests.tiny_clip import MODEL_CONFIGS, TINY, save_checkpoint, save_local_dir


def test_local_dir_and_name_plus_checkpoint_load_the_same_weights(tmp_path):
    folder = save_local_dir(tmp_path / "clip", seed=3)
    checkpoint = save_checkpoint(tmp_path / "tiny.pt", seed=3)
    from_dir = load_clip(resolve_clip(f"local-dir:{folder}", None, None))
    from_name = load_clip(resolve_clip(TINY, str(checkpoint), str(MODEL_CONFIGS)))
    assert from_dir.embed_dim == 16 and from_dir.preprocess_cfg["size"] in (32, (32, 32))
    pixels = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(from_dir.model.encode_image(pixels), from_name.model.encode_image(pixels))


def test_every_weight_is_the_files_and_a_file_missing_one_is_refused(tmp_path):
    """load_clip builds the model without its random draw (vlm.no_random_init): each parameter and buffer must then
    be exactly the file's, and a file that lacks one is an error, never a model with memory for weights. Models
    built outside load_clip are initialised as ever."""
    from safetensors.torch import load_file, save_file

    folder = save_local_dir(tmp_path / "clip", seed=5)
    weights = load_file(str(folder / "open_clip_model.safetensors"))
    loaded = load_clip(resolve_clip(f"local-dir:{folder}", None, None)).model.state_dict()
    assert set(loaded) == set(weights)
    for name, tensor in weights.items():
        assert torch.equal(loaded[name], tensor), name
    assert torch.nn.Linear(64, 64).weight.abs().max() > 0  # the initialisers are back
    del weights["visual.proj"]
    save_file(weights, str(folder / "open_clip_model.safetensors"))
    with pytest.raises(ModelLoadError, match=r"(?s)open_clip_model.safetensors \(config key model.clip.*visual.proj"):
        load_clip(resolve_clip(f"local-dir:{folder}", None, None))


def test_fp16_on_a_cpu_runs_in_fp32_and_says_why(tmp_path, caplog):
    folder = save_local_dir(tmp_path / "clip")
    with caplog.at_level(logging.WARNING, logger="vlm.clip"):
        clip = load_clip(resolve_clip(f"local-dir:{folder}", None, None), device="cpu", dtype="fp16")
    assert clip.dtype == torch.float32 and next(clip.model.parameters()).dtype == torch.float32
    assert "model.dtype=fp16 on a CPU runs several times slower than fp32" in caplog.text
    assert load_clip(resolve_clip(f"local-dir:{folder}", None, None), dtype="bf16").dtype == torch.bfloat16


def test_refusals_name_the_config_key(tmp_path):
    # Hub names and pretrained tags: tests/vlm/test_hub.py.
    with pytest.raises(ModelLoadError, match="model.checkpoint"):
        resolve_clip("ViT-B-32", None, None)
    with pytest.raises(ModelLoadError, match="model.model_config_dir"):
        resolve_clip("no-such-arch", "x.pt", None)
    with pytest.raises(ModelLoadError, match="model.clip"):
        resolve_clip(f"local-dir:{tmp_path / 'absent'}", None, None)
    folder = save_local_dir(tmp_path / "noweights")
    (folder / "open_clip_model.safetensors").unlink()
    with pytest.raises(ModelLoadError, match="no weights file .*model.clip"):
        resolve_clip(f"local-dir:{folder}", None, None)
    # A preset's pretrained tag under a folder of one's own: the tag would be ignored, so it is refused.
    with pytest.raises(ModelLoadError, match="holds its own weights; leave model.checkpoint empty .*'openai'"):
        resolve_clip(f"local-dir:{folder}", "openai", None)


class _Payload:
    def __reduce__(self):
        return (print, ("code ran",))


def test_checkpoint_that_runs_code_is_refused(tmp_path):
    path = tmp_path / "evil.pt"
    torch.save({"state_dict": {}, "extra": _Payload()}, path)
    refused = r"evil.pt \(config key model.clip or model.checkpoint\) holds code"
    with pytest.raises(ModelLoadError, match=refused) as error:
        load_clip(resolve_clip(TINY, str(path), str(MODEL_CONFIGS)))
    assert "print" in str(error.value) and "weights_only" not in str(error.value)


@pytest.mark.parametrize("resize_mode", ["shortest", "squash", "longest"])
def test_tensor_preprocess_matches_open_clip_transform(resize_mode):
    rng = np.random.default_rng(0)
    # A smooth image with some edges: what crops of photos look like (pure noise is the worst case for resizing).
    yy, xx = np.mgrid[0:120, 0:160]
    image = np.stack([(xx * 1.5) % 256, (yy * 2.0) % 256, ((xx + yy) * 0.8) % 256], -1).astype(np.uint8)
    image[40:80, 50:90] = rng.integers(0, 255, 3)
    cfg = PreprocessCfg(size=48, resize_mode=resize_mode)
    reference = image_transform_v2(cfg, is_train=False)
    ours = CropPreprocess.from_open_clip(vars(cfg))
    for window in [(0, 0, 160, 120), (10, 5, 41, 100), (30, 30, 130, 50), (3, 3, 20, 20)]:
        left, top, right, bottom = window
        crop = image[top:bottom, left:right]
        expected = reference(Image.fromarray(crop))
        got = normalise_batch(resize_crop(crop, ours)[None], ours, torch.float32)[0]
        assert got.shape == expected.shape
        # One grey level of resampling rounding is 1/255/std ≈ 0.015 after normalisation.
        difference = (got - expected).abs()
        assert difference.mean() < 0.01 and difference.max() < 0.1, (window, difference.max())


def test_a_batch_stacked_row_by_row_is_the_channel_first_stack_of_its_crops():
    """stack_crops copies each crop as (H, W, 3) rows and normalise_batch makes the channel-first float copy: the
    batch the model gets equals torch.stack of the crops, normalised as open_clip does."""
    pre = CropPreprocess((32, 32), (0.48, 0.46, 0.41), (0.27, 0.26, 0.28))
    pixels = np.random.default_rng(0).integers(0, 256, (90, 120, 3), dtype=np.uint8)
    crops = [resize_crop(pixels[y:y + h, x:x + w], pre) for x, y, w, h in [(0, 0, 50, 20), (10, 5, 30, 80),
                                                                          (40, 30, 80, 60), (0, 0, 120, 90)]]
    assert not crops[0].is_contiguous()  # windows of a channels-last resize
    stacked = stack_crops(crops)
    assert torch.equal(stacked, torch.stack(crops))
    mean, std = torch.tensor(pre.mean).view(1, 3, 1, 1), torch.tensor(pre.std).view(1, 3, 1, 1)
    got = normalise_batch(stacked, pre, torch.float32)
    assert got.is_contiguous()
    torch.testing.assert_close(got, (torch.stack(crops).float() / 255.0 - mean) / std, rtol=REL, atol=ABS)
