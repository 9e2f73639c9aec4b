"""model.dtype auto on a CPU: the loaded image tower is timed in fp32 and bf16 and the faster kept, with both rates
logged and recorded; an explicit dtype is kept as given, never probed."""
import logging
import time

import pytest
import torch

from vlm.clip import load_clip, resolve_clip
from vlm.dtype_probe import probe_dtype
from tests.tiny_clip import save_local_dir


@pytest.fixture(scope="module")
def tiny_clip(tmp_path_factory):
    return resolve_clip(f"local-dir:{save_local_dir(tmp_path_factory.mktemp('clip') / 'clip')}", None, None)


def test_auto_on_a_cpu_probes_both_dtypes_and_runs_in_the_one_it_records(tiny_clip, caplog):
    with caplog.at_level(logging.INFO, logger="vlm.dtype_probe"):
        clip = load_clip(tiny_clip, device="cpu", dtype="auto")
    choice = clip.dtype_choice
    assert choice.how == "probe" and choice.dtype in ("fp32", "bf16")
    rates = dict(choice.crops_per_second)
    assert set(rates) == {"fp32", "bf16"} and all(rate > 0 for rate in rates.values())
    assert choice.dtype == max(rates, key=rates.get)
    assert clip.dtype == {"fp32": torch.float32, "bf16": torch.bfloat16}[choice.dtype]
    assert {p.dtype for p in clip.model.parameters()} == {clip.dtype}
    record = choice.as_record()
    assert record["dtype"] == choice.dtype and set(record["probe_crops_per_second"]) == {"fp32", "bf16"}
    assert "dtype auto: " in caplog.text and "fp32" in caplog.text and "bf16" in caplog.text


@pytest.mark.parametrize("dtype", ["fp32", "bf16"])
def test_an_explicit_dtype_is_kept_as_given_without_a_probe(tiny_clip, dtype, caplog):
    with caplog.at_level(logging.INFO, logger="vlm.dtype_probe"):
        clip = load_clip(tiny_clip, device="cpu", dtype=dtype)
    assert clip.dtype_choice.as_record() == {"dtype": dtype, "how": "given"}
    assert {p.dtype for p in clip.model.parameters()} == {clip.dtype}
    assert "dtype auto" not in caplog.text


class _SharedLog(list):
    """A list that a deep copy of its holder shares instead of copying."""

    def __deepcopy__(self, memo):
        return self


class _SlowIn(torch.nn.Module):
    """An image tower whose forward takes `slow_seconds` in one dtype and no time in the other: which one the probe
    keeps is then known in advance."""

    def __init__(self, slow: torch.dtype, slow_seconds: float = 0.02):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.ones(3))
        self.slow, self.slow_seconds = slow, slow_seconds
        self.forwards = _SharedLog()  # the dtype of each forward, in order, the probe's bf16 copy's included

    def encode_image(self, pixels: torch.Tensor) -> torch.Tensor:
        self.forwards.append(self.weight.dtype)
        if self.weight.dtype == self.slow:
            time.sleep(self.slow_seconds)
        return pixels.mean(dim=(2, 3)) * self.weight


@pytest.mark.parametrize("slow, kept", [(torch.bfloat16, "fp32"), (torch.float32, "bf16")])
def test_the_probe_keeps_the_faster_dtype_and_leaves_the_fp32_weights_exact(slow, kept):
    model = _SlowIn(slow)
    chosen, choice = probe_dtype(model, (8, 8), crops=2, repeats=1)
    assert choice.dtype == kept and chosen.weight.dtype == {"fp32": torch.float32, "bf16": torch.bfloat16}[kept]
    assert model.weight.dtype == torch.float32  # the bf16 candidate was a copy


def test_a_dtype_whose_warm_up_is_already_far_slower_is_not_timed_again():
    """bf16 without AVX512-BF16 or AMX (7x slower than fp32 for ViT-B-32 on a CPU without AVX-512): after fp32's
    warm-up and timed forwards, bf16's warm-up alone decides; a faster bf16 is timed in full."""
    far_slower = _SlowIn(torch.bfloat16, slow_seconds=0.2)
    _, choice = probe_dtype(far_slower, (8, 8), crops=2, repeats=2)
    assert choice.dtype == "fp32" and far_slower.forwards == [torch.float32] * 3 + [torch.bfloat16]
    assert dict(choice.crops_per_second)["bf16"] <= 2 / 0.2  # its warm-up's rate
    faster = _SlowIn(torch.float32, slow_seconds=0.02)
    _, choice = probe_dtype(faster, (8, 8), crops=2, repeats=2)
    assert choice.dtype == "bf16" and faster.forwards == [torch.float32] * 3 + [torch.bfloat16] * 3
