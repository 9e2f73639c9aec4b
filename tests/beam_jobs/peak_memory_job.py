"""Run extract-features in this process and print its peak resident memory (`ru_maxrss`, KiB on Linux) as the last
line: what the bomb test compares between the same job with and without a decompression bomb among its images.

    python -m tests.beam_jobs.peak_memory_job [job arguments ...]
"""
import resource
import sys

from beam_jobs import extract_features

if __name__ == "__main__":
    extract_features.run(sys.argv[1:])
    print(f"PEAK_RSS_KIB {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}")
