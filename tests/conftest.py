"""Loaded by pytest before any test module: the one place the tests switch the Hugging Face libraries offline.

Tests build tiny models in temporary folders and must never reach the hub; huggingface_hub and transformers read
these variables once, when first imported, so they are set here, before any test imports them.
"""
import os

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
