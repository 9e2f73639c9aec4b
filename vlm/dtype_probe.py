"""`dtype: auto` on a CPU: time the loaded image tower in fp32 and in bf16 where it runs, keep the faster.

Which of the two is faster is a property of the CPU, not of the model: with AMX or AVX512-BF16 oneDNN runs bf16
matmuls at up to twice the fp32 rate (ViT-B-32 on a 2-core AMD EPYC whose bf16 matmul ran 2.4x fp32's: bf16 2.1x
fp32), without them it converts around every product and bf16 is the slower one (0.68x on a 2-core Intel Xeon without
AMX; these are `bench.extract`'s model-only rates, issue 29; 0.14x in this probe on a 2-core AMD EPYC without
AVX-512). So the choice is measured on the machine, right after the model is loaded, on a small batch of the model's
input size; on a GPU auto is bf16 without a probe (vlm.clip). The extract-features job probes once, in its driver
(beam_jobs.extract_dtype), so that a store has one dtype.
"""
from __future__ import annotations

import copy
import logging
import time
from dataclasses import dataclass

import torch

LOG = logging.getLogger(__name__)
AUTO = "auto"
PROBED = {"fp32": torch.float32, "bf16": torch.bfloat16}
# A forward of 8 crops is long enough for oneDNN to run its batched kernels (a single crop runs other, matrix-vector
# shaped ones) and short enough that the probe costs a few seconds of a ViT-B-32 job's start on 2 cores (5.9 s on
# the CPU without AVX-512 below, bf16's one forward the most of it).
PROBE_CROPS = 8
# Timed forwards per dtype after one warm-up (whose first bf16 call builds oneDNN's kernels): the best of them.
PROBE_REPEATS = 2
# A candidate whose warm-up forward (kernel build included) already took this many times the best forward of a dtype
# timed before it has lost, and is not timed again. Without AVX512-BF16 or AMX, bf16 is the slow side by far: ViT-B-32
# on a 2-core AMD EPYC without AVX-512 ran fp32 14.5 crops/s, bf16 2.0, and bf16's three forwards took 12 s of a
# 14.8 s probe (now 5.9 s). A warm-up is one forward plus oneDNN's kernel build: a bf16 at least as fast as fp32 is
# given up only if building its kernels takes two fp32 forwards (about a second for ViT-B-32 on 2 cores).
CLEARLY_SLOWER = 3.0


@dataclass(frozen=True)
class DtypeChoice:
    """The dtype a worker runs its model in and why: probed (crops/s of each dtype tried) or given."""

    dtype: str  # "fp32" | "bf16" | "fp16"
    how: str  # "probe" (auto on a CPU), "auto on a GPU" or "given"
    crops_per_second: tuple[tuple[str, float], ...] = ()  # (dtype, crops/s) per dtype probed
    probe_crops: int = 0

    def as_record(self) -> dict:
        """What the stage's stats and manifest summary record."""
        record = {"dtype": self.dtype, "how": self.how}
        if self.crops_per_second:
            record["probe_crops_per_second"] = {name: round(rate, 3) for name, rate in self.crops_per_second}
            record["probe_crops"] = self.probe_crops
        return record


def crops_per_second(model: torch.nn.Module, pixels: torch.Tensor, repeats: int = PROBE_REPEATS,
                     give_up_after: float = float("inf")) -> float:
    """Best rate of `repeats` forwards of `pixels` through `model.encode_image`, after one warm-up; the warm-up's own
    rate when the warm-up took longer than `give_up_after` seconds (a lower bound, enough to lose by)."""
    with torch.inference_mode():
        started = time.perf_counter()
        model.encode_image(pixels)
        best = time.perf_counter() - started
        if best > give_up_after:
            return len(pixels) / best
        best = float("inf")
        for _ in range(repeats):
            started = time.perf_counter()
            model.encode_image(pixels)
            best = min(best, time.perf_counter() - started)
    return len(pixels) / best


def probe_dtype(model: torch.nn.Module, size: tuple[int, int], crops: int = PROBE_CROPS,
                repeats: int = PROBE_REPEATS) -> tuple[torch.nn.Module, DtypeChoice]:
    """An fp32 CLIP `model` (on the CPU) → (the model in the faster of fp32 and bf16, the choice with both rates).

    The bf16 candidate is a converted copy, so the fp32 weights stay exact whichever wins; the loser is dropped.
    The pixels are random: a forward's speed does not depend on its values. A candidate whose warm-up is already
    CLEARLY_SLOWER than the best forward before it is recorded at its warm-up rate and not timed again.
    """
    pixels = torch.rand(crops, 3, *size, generator=torch.Generator().manual_seed(0))
    candidates = {"fp32": model, "bf16": copy.deepcopy(model).to(torch.bfloat16)}
    rates: dict[str, float] = {}
    for name, candidate in candidates.items():
        fastest_forward = crops / max(rates.values()) if rates else float("inf")
        rates[name] = crops_per_second(candidate, pixels.to(PROBED[name]), repeats, CLEARLY_SLOWER * fastest_forward)
    chosen = max(rates, key=rates.get)
    LOG.info("dtype auto: %s (image tower on %d crops of %dx%d: fp32 %.2f crops/s, bf16 %.2f crops/s)", chosen,
             crops, size[0], size[1], rates["fp32"], rates["bf16"])
    return candidates[chosen], DtypeChoice(chosen, "probe", tuple(rates.items()), crops)
