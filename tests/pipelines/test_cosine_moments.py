"""Exact, order-free cosine moments: the dataset μ and σ of score.from_dataset do not depend on the combine order."""
import math
import random

import numpy as np
import pytest

from pipelines.cosine_moments import (FLOAT32_QUANTUM_EXPONENT, cosine_moment, cosine_moments, mean_and_std,
                                      merge_moments)


def cosines(count: int = 5000, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.normal(0.6, 0.05, count).astype(np.float32)


def naive_moments(values) -> tuple[float, float, float]:
    """What the combine did before: float sums in the order given."""
    count = total = squares = 0.0
    for value in values:
        count, total, squares = count + 1.0, total + float(value), squares + float(value) ** 2
    return count, total, squares


def test_float32_values_are_integers_at_the_quantum():
    smallest = float(np.nextafter(np.float32(0), np.float32(1)))  # 2^-149, the smallest float32 subnormal
    assert smallest == 2.0 ** -FLOAT32_QUANTUM_EXPONENT
    assert cosine_moments([-0.5, smallest]) == (2, -(2 ** 148) + 1, 2 ** 296 + 1)


def test_every_order_and_split_gives_the_same_mean_and_std():
    values = cosines()
    orders = []
    for seed in range(5):
        shuffled = values.tolist()
        random.Random(seed).shuffle(shuffled)
        orders.append(shuffled)
    # The old float sums do depend on the order for these values (so this test can tell the two apart) ...
    assert len({naive_moments(order)[1:] for order in orders}) > 1
    # ... the exact moments do not, whether added one by one or merged from uneven parts in any order.
    results = {mean_and_std(merge_moments(cosine_moment(v) for v in order)) for order in orders}
    parts = [cosine_moments(values[start:stop]) for start, stop in ((0, 7), (7, 2100), (2100, 2101), (2101, 5000))]
    results.add(mean_and_std(merge_moments(parts)))
    results.add(mean_and_std(merge_moments(reversed(parts))))
    assert len(results) == 1


def test_mean_and_std_are_the_population_moments():
    values = cosines(seed=1)
    mean, std = mean_and_std(cosine_moments(values))
    as_float64 = values.astype(np.float64)
    assert mean == pytest.approx(as_float64.mean(), rel=1e-12)
    assert std == pytest.approx(as_float64.std(), rel=1e-9)
    assert mean_and_std(cosine_moments([0.25, 0.25])) == (0.25, 0.0)


def test_cosines_are_rounded_to_float32_as_stored():
    assert cosine_moments([0.1]) == cosine_moments(np.array([0.1], dtype=np.float32))
    assert mean_and_std(cosine_moments([0.1]))[0] == float(np.float32(0.1)) != 0.1


@pytest.mark.parametrize("bad", [math.nan, math.inf])
def test_non_finite_cosines_are_refused(bad):
    with pytest.raises(ValueError, match="not finite"):
        cosine_moments([0.5, bad])
    with pytest.raises(ValueError, match="not finite"):
        cosine_moment(bad)


def test_merge_of_nothing_is_zero():
    assert merge_moments([]) == (0, 0, 0) and cosine_moments([]) == (0, 0, 0)
