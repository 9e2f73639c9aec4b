"""The prepared device benchmark runs (its smoke sizes, on the CPU), writes every figure it measured, and keeps
them when `timeout` stops it."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

pytestmark = pytest.mark.slow  # processes or a server: `make test` runs it, `make test-fast` does not

REPO = Path(__file__).resolve().parents[2]
PHASES = ["data", "model", "model_only", "naive", "job", "clipcap", "blip2", "vlm"]


def bench_gpu(out: Path, *flags: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "bench.gpu", "--smoke", "--out", str(out), *flags], cwd=REPO,
                            env={**os.environ, "PYTHONPATH": str(REPO)}, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)


def test_the_smoke_run_measures_every_phase(tmp_path):
    run = bench_gpu(tmp_path, "--deadline", "150")
    output, _ = run.communicate(timeout=300)
    assert run.returncode == 0, output[-3000:]
    results = json.loads((tmp_path / "results-gpu.json").read_text())
    assert {name: phase["status"] for name, phase in results["phases"].items()} == {p: "ok" for p in PHASES}
    metrics = results["metrics"]
    for key in ("model_only_crops_per_s", "naive_crops_per_s", "job_steady_crops_per_s", "job_wall_crops_per_s",
                "clipcap_beam_captions_per_s", "clipcap_greedy_captions_per_s", "blip2_captions_per_s",
                "vlm_crop_boxes_per_s", "vlm_box_boxes_per_s"):
        assert metrics[key] > 0, key
    assert metrics["job_crops"] == 80 and metrics["job_failures"] == 0  # 8 images x 10 regions, nothing lost
    assert results["smoke"] and not results["cut_short"] and results["goals"] == []
    assert results["environment"]["versions"]["torch"] and results["environment"]["device_name"]
    section = (tmp_path / "PERFORMANCE-gpu.md").read_text()
    assert "Smoke run" in section and "(a) model only" in section and "vlm labeler" in section
    assert "job: ok" in (tmp_path / "progress.log").read_text()


def test_sigterm_stops_the_job_and_keeps_what_was_measured(tmp_path):
    run = bench_gpu(tmp_path, "--deadline", "150")
    progress = tmp_path / "progress.log"
    deadline = time.monotonic() + 240
    while not (progress.is_file() and "job: start" in progress.read_text()):
        assert time.monotonic() < deadline and run.poll() is None, "the benchmark never reached its job phase"
        time.sleep(0.2)
    time.sleep(2)  # the child job is starting
    children = psutil.Process(run.pid).children(recursive=True)
    run.send_signal(signal.SIGTERM)
    output, _ = run.communicate(timeout=120)
    assert run.returncode == 124, output[-3000:]
    results = json.loads((tmp_path / "results-gpu.json").read_text())
    assert results["cut_short"] and results["phases"]["job"]["status"] == "cut short"
    assert results["metrics"]["model_only_crops_per_s"] > 0  # measured before the signal, kept
    assert "clipcap" not in results["phases"]
    assert not [child for child in children if child.is_running() and child.status() != psutil.STATUS_ZOMBIE]


def test_a_tight_deadline_skips_phases_and_says_why(tmp_path):
    run = bench_gpu(tmp_path, "--deadline", "1")
    output, _ = run.communicate(timeout=120)
    assert run.returncode == 0, output[-3000:]
    results = json.loads((tmp_path / "results-gpu.json").read_text())
    assert {phase["status"] for phase in results["phases"].values()} == {"skipped"}
    assert "left of the deadline" in results["phases"]["data"]["reason"]
