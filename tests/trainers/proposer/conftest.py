"""Fixtures shared by the proposal network's tests."""
import pytest

from shapesov.__main__ import main as shapes_main


@pytest.fixture(scope="session")
def sample(tmp_path_factory):
    """A small ShapesOV sample (12 training images, one validation image), written once per session."""
    out = tmp_path_factory.mktemp("shapes")
    assert shapes_main(["--out", str(out), "--train", "12", "--val", "1"]) == 0
    return out
