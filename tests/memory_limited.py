"""Run Python code in a child process that lowers its own address-space limit (RLIMIT_AS), so that an allocation
fails with the real out-of-memory error of the allocator rather than one a test raises itself."""
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

linux_only = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="RLIMIT_AS and /proc/self/status are "
                                "Linux's")


def run_child(code: str) -> subprocess.CompletedProcess:
    """`python -c code` in the repository with it on the path; asserts exit 0 (its stderr's end in the message)."""
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "PYTHONPATH": str(REPO)})
    assert done.returncode == 0, done.stderr[-3000:]
    return done
