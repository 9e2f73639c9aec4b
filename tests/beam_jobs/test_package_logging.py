"""A job's command line prints no warning about Google Cloud clients that a local run never uses."""
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # processes or a server: `make test` runs it, `make test-fast` does not

REPO = Path(__file__).resolve().parents[2]


def test_a_job_does_not_print_beams_missing_gcp_clients_warning(tmp_path):
    done = subprocess.run([sys.executable, "-m", "beam_jobs.extract_features", "--store", str(tmp_path / "store"),
                           "--set", "shard_size=0"], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and "shard_size must be >= 1" in done.stderr
    assert "apitools" not in done.stderr + done.stdout


def test_other_warnings_still_reach_the_user():
    script = ("import logging, beam_jobs; logging.warning('apitools is only a word here'); "
              "logging.warning('apitools not found, and bigquery client libraries are not available')")
    done = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert "apitools is only a word here" in done.stderr and "bigquery client libraries" not in done.stderr
