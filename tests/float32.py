"""The tolerance for comparing float32 results, one for the whole suite so it passes on any x86-64 CPU.

A float32 operation rounds at 2**-24 (6e-8 relative), and the same expression can round differently on another
CPU: torch and numpy choose their kernels at run time (AVX2 or AVX-512, with or without fused multiply-add, MKL or
OpenBLAS blocking), which changes the order of the additions in a reduction and whether a multiply-add rounds once
or twice. A loss of a few dozen float32 operations came out 0.0023688047 on one machine and 0.0023688008 on an AMD
EPYC (1.6e-6 relative): beyond pytest.approx's default rel=1e-6. REL leaves about 170 float32 ulps; ABS covers
results that are 0 by hand but come out of a cancellation of terms near 1 (a few ulps of 1.0 = 1.2e-7 each).

Exact comparisons stay where exactness is the point: copies, round trips (Parquet, float16 storage, pickles,
checkpoints), resume bit-identity and same-machine determinism.
"""
from __future__ import annotations

import pytest

REL = 1e-5
ABS = 1e-6


def approx32(expected):
    """pytest.approx with the float32 tolerance: `assert loss.item() == approx32(by_hand)`."""
    return pytest.approx(expected, rel=REL, abs=ABS)
