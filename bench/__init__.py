"""Benchmarks of every stage against its ceiling (issue 8); `python -m bench.run_all` runs them all.

Run each as a module from the repository root (`python -m bench.<name>`), so this file is imported before any
benchmark code: the one place the benchmarks switch the Hugging Face libraries offline (they build every model in
a temporary folder, and their child jobs inherit the setting).
"""
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
