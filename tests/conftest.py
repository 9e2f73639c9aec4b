"""Loaded by pytest before any test module: the one place the tests switch the Hugging Face libraries offline.

Tests build tiny models in temporary folders and must never reach the hub; huggingface_hub and transformers read
these variables once, when first imported, so they are set here, before any test imports them.
"""
import os

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"


import pytest  # noqa: E402  (after the variables above, which must be set before anything imports the hub)

from tests.object_store import start_s3_server  # noqa: E402


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory):
    """moto's S3 server on a free loopback port for the whole session; AWS_ENDPOINT_URL and test credentials are
    set in this process's environment (and so in every process a test starts) while it runs."""
    server = start_s3_server(tmp_path_factory.mktemp("s3") / "moto.log")
    saved = {key: os.environ.get(key) for key in server.env}
    os.environ.update(server.env)
    yield server
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value
    server.stop()


@pytest.fixture()
def s3_bucket(s3_server) -> str:
    """The s3:// URL of a fresh bucket on the session's server."""
    return s3_server.new_bucket()
