import os
import pickle

import numpy as np
import pytest

from pipelines.safe_pickle import UnsafePickleError, load_data_pickle


class _RunsCode:
    def __reduce__(self):
        return (os.system, ("echo pwned > /dev/null",))


def test_plain_data_and_numpy_arrays_load():
    data = [np.arange(10, dtype=np.float32).reshape(2, 5), (1, 2.5, {"a": [np.int64(3)]}), np.zeros((0, 5))]
    for protocol in (2, 4, 5):
        loaded = load_data_pickle(pickle.dumps(data, protocol=protocol), "p.pkl")
        np.testing.assert_array_equal(loaded[0], data[0])
        assert loaded[1][2]["a"][0] == 3 and loaded[2].shape == (0, 5)


def test_code_is_refused_with_the_file_named():
    with pytest.raises(UnsafePickleError, match=r"evil\.pkl: refusing to load posix\.system"):
        load_data_pickle(pickle.dumps(_RunsCode()), "evil.pkl")
    with pytest.raises(UnsafePickleError, match="refusing to load collections.Counter"):
        from collections import Counter
        load_data_pickle(pickle.dumps(Counter("ab")), "odd.pkl")


def test_garbage_is_a_clear_error():
    with pytest.raises(UnsafePickleError, match="junk.pkl is not a readable data pickle"):
        load_data_pickle(b"not a pickle at all", "junk.pkl")
