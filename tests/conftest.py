"""Loaded by pytest before any test module: the one place the tests switch the Hugging Face libraries offline and
give them a cache of their own.

Tests build tiny models in temporary folders and must never reach the hub; huggingface_hub and transformers read
these variables once, when first imported, so they are set here, before any test imports them. HF_HOME is a fresh
folder for the session: models named by hub name are put there in the hub's own layout (tests/hub_cache.py), and
the developer's own cache can neither make a test pass nor be written to.
"""
import os
import shutil
import tempfile

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
HF_HOME = tempfile.mkdtemp(prefix="ovd-distill-hf-home-")
os.environ["HF_HOME"] = HF_HOME
for variable in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE"):  # would take precedence over HF_HOME
    os.environ.pop(variable, None)


def pytest_unconfigure(config):
    shutil.rmtree(HF_HOME, ignore_errors=True)
