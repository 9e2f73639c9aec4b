"""Benchmarks of every stage against its ceiling (issue 8); `bench/run_all.py` runs them all."""
