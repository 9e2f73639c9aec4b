"""Exact, order-free moments of the picked cosines: the dataset μ and σ of `score.from_dataset`.

A Beam combine adds its inputs in whatever order bundles reach it, and a float sum depends on that order, so two
runs over one store could write μ and σ, and every score after them, that differ in their last bits (two runs of
`make extract-features pseudo-labels` wrote 18 of 8,794 scores differently). Every float32 is an integer multiple
of 2^-149, the smallest binary32 subnormal (IEEE 754), so its square is one of 2^-298; summed as Python integers at
those scales the moments are exact, and every order of adding them gives the same μ and σ.
"""
from __future__ import annotations

import math
from fractions import Fraction
from typing import Iterable

import numpy as np

FLOAT32_QUANTUM_EXPONENT = 149  # 2^-149: the smallest float32 subnormal (IEEE 754 binary32)

Moments = tuple[int, int, int]  # (count, Σcos · 2^149, Σcos² · 2^298), exact integers


def cosine_moment(cosine: float) -> Moments:
    """One cosine, rounded to float32 as the store keeps it → its exact (1, scaled value, scaled square)."""
    value = float(np.float32(cosine))  # a float32 and its square are exact in float64
    if not math.isfinite(value):
        raise ValueError(f"a picked cosine is not finite ({value}); the score statistics need finite cosines")
    return 1, int(math.ldexp(value, FLOAT32_QUANTUM_EXPONENT)), int(math.ldexp(value * value,
                                                                              2 * FLOAT32_QUANTUM_EXPONENT))


def cosine_moments(cosines: Iterable[float] | np.ndarray) -> Moments:
    """Many cosines (e.g. a stored `cos` column) → their exact moments."""
    return merge_moments(map(cosine_moment, np.asarray(cosines, dtype=np.float32).ravel().tolist()))


def merge_moments(moments: Iterable[Moments]) -> Moments:
    """Exact sums of moment triples: the same result in any order."""
    count = total = squares = 0
    for part_count, part_total, part_squares in moments:
        count, total, squares = count + part_count, total + part_total, squares + part_squares
    return count, total, squares


def mean_and_std(moments: Moments) -> tuple[float, float]:
    """(μ, σ) of the cosines behind `moments`, the population std (divided by the count), computed exactly and
    rounded once. Needs a count of at least 1."""
    count, total, squares = moments
    mean = Fraction(total, count << FLOAT32_QUANTUM_EXPONENT)
    variance = Fraction(squares, count << (2 * FLOAT32_QUANTUM_EXPONENT)) - mean * mean
    return float(mean), math.sqrt(float(max(variance, Fraction(0))))
