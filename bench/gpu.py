"""The device benchmark: extract-features and the captioners on one accelerator, every figure from one run.

    make bench-gpu                  # a CUDA machine; hard limit BENCH_GPU_SECONDS (default 280 s, model builds in)
    make bench-gpu SMOKE=1          # any machine: tiny sizes on the CPU, under a minute (CI may run it)
    .venv/bin/python -m bench.gpu --out DIR [--smoke] [--deadline SECONDS]

On the same synthetic photo-sized JPEGs (640x480, 10 regions each: bench/gpu_workload.py), the same model and dtype:
  (a) model only   — the image tower on pre-cut crop tensors already on the device, normalised per batch
  (b) our Beam job — `beam_jobs.extract_features` with runtime.crop_on=device on Beam's in-process runner with
                     worker threads, in a child process (bench/gpu_job.py); crops/s from the moment the worker's
                     image tower is ready to the last shard commit (steady: process start-up, planning and model
                     load excluded) and over the pipeline's wall time (Beam start-up and model load included)
  (c) naive loop   — per image: PIL crop + open_clip's preprocess per crop, one forward per image
then ClipCap (GPT-2-small-sized, beam search and greedy) and BLIP-2 (OPT-2.7b-sized, fp16 greedy) captions/s, the
`vlm` labeler (Qwen2-VL-2B-sized, bf16, both region prompts: bench/gpu_vlm.py) pseudo boxes/s, and the device memory
peak of each part. Models are real architectures with random weights (no download).

Everything is written to OUT as it is measured: results-gpu.json after every phase, progress.log, job.log. A phase
that would not fit in what is left of --deadline is skipped and says so; SIGTERM (from `timeout`) stops the child job
and writes what was measured. With --out bench (the default of `make bench-gpu`) the GPU section of
bench/PERFORMANCE.md is rewritten too; elsewhere it goes to OUT/PERFORMANCE-gpu.md.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass, replace
from datetime import datetime
from pathlib import Path

import torch

from bench.common import REPO, at_least, machine, module_command
from bench.gpu_markdown import gpu_section

GOAL_VS_MODEL_ONLY = 0.85  # issue "Full speed on a GPU"
GOAL_VS_NAIVE = 3.0
GOAL_CROPS_PER_S = 20_000  # ViT-B-32, bf16, one H100/H200-class GPU
FULL_SIZE_GPUS = ("H100", "H200", "H800", "GH200", "B200")


@dataclass(frozen=True)
class Sizes:
    device: str
    dtype: str
    model: str  # an open_clip architecture name (random weights)
    images: int  # the job's images (10 crops each)
    model_only_images: int  # images whose crops are pre-cut for (a)
    model_only_seconds: float
    naive_images: int
    naive_seconds: float
    batch: int  # crops per forward (runtime.max_batch_size)
    shard_size: int
    workers: int  # DirectRunner worker threads
    clipcap_full: bool  # GPT-2-small-sized, else our tiny teacher
    clipcap_captions: int
    blip2_full: bool  # OPT-2.7b-sized, else tiny
    blip2_images: int
    max_tokens: int
    vlm_full: bool  # Qwen2-VL-2B-sized, else tiny
    vlm_images: int  # 6 pseudo boxes each
    vlm_regions_per_batch: int


FULL = Sizes(device="cuda", dtype="bf16", model="ViT-B-32", images=6000, model_only_images=1000,
             model_only_seconds=4.0, naive_images=400, naive_seconds=12.0, batch=1024, shard_size=500, workers=4,
             clipcap_full=True, clipcap_captions=512, blip2_full=True, blip2_images=64, max_tokens=20, vlm_full=True,
             vlm_images=16, vlm_regions_per_batch=64)
SMOKE = Sizes(device="cpu", dtype="fp32", model="smoke-vit", images=8, model_only_images=4, model_only_seconds=1.0,
              naive_images=4, naive_seconds=2.0, batch=16, shard_size=4, workers=2, clipcap_full=False,
              clipcap_captions=8, blip2_full=False, blip2_images=4, max_tokens=5, vlm_full=False, vlm_images=1,
              vlm_regions_per_batch=8)
# A tiny ViT CLIP for smoke runs, as open_clip's own ViT configs are written (64 px, patch 16, 2 layers).
SMOKE_MODEL = {"embed_dim": 64, "vision_cfg": {"image_size": 64, "layers": 2, "width": 64, "patch_size": 16},
               "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 64, "heads": 2, "layers": 1}}
# Seconds each phase needs at full size (measured budget, a phase is skipped when less is left), smoke size.
ESTIMATES = {"data": (25, 5), "model": (15, 3), "model_only": (20, 4), "naive": (20, 5), "job": (80, 25),
             "clipcap": (25, 6), "blip2": (45, 6), "vlm": (45, 6)}


class CutShort(Exception):
    """SIGTERM arrived (the `timeout` around `make bench-gpu`): stop, keep what was measured."""


class Recorder:
    """results-gpu.json and progress.log in OUT, rewritten after every phase."""

    def __init__(self, out: Path, deadline: float, smoke: bool, argv: list[str]):
        self.out = out
        self.started = time.monotonic()
        self.deadline = deadline
        self.smoke = smoke
        self.results = {"bench": "gpu", "command": module_command("gpu", argv), "smoke": smoke, "cut_short": False,
                        "started": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "phases": {}, "metrics": {},
                        "goals": [], "notes": []}
        out.mkdir(parents=True, exist_ok=True)
        self.log_path = out / "progress.log"
        self.log_path.write_text("")

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def left(self) -> float:
        return self.deadline - self.elapsed()

    def log(self, message: str) -> None:
        line = f"[{self.elapsed():6.1f}s] {message}"
        print(line, flush=True)
        with self.log_path.open("a") as handle:
            handle.write(line + "\n")

    def save(self) -> None:
        temporary = self.out / "results-gpu.json.tmp"
        temporary.write_text(json.dumps(self.results, indent=2) + "\n")
        os.replace(temporary, self.out / "results-gpu.json")

    @contextmanager
    def phase(self, name: str):
        """Run one phase unless it would not fit; record its time and status; a failure does not stop the others."""
        estimate = ESTIMATES[name][1 if self.smoke else 0]
        record = self.results["phases"].setdefault(name, {})
        if self.left() < estimate:
            record.update(status="skipped", reason=f"{self.left():.0f} s left of the deadline, it needs ~{estimate} s")
            self.log(f"{name}: skipped ({record['reason']})")
            self.save()
            yield None
            return
        self.log(f"{name}: start")
        started = time.monotonic()
        if torch.cuda.is_available():
            torch.cuda.reset_peak_memory_stats()
        try:
            yield record
            record["status"] = "ok"
        except CutShort:
            record["status"] = "cut short"
            raise
        except Exception as error:  # noqa: BLE001 - a failed phase is a finding; the others still run
            record.update(status="failed", error=f"{type(error).__name__}: {str(error)[:1500]}")
            self.log(f"{name}: FAILED {record['error'][:300]}")
        finally:
            record["seconds"] = round(time.monotonic() - started, 2)
            if torch.cuda.is_available():
                record["device_memory_peak_mib"] = round(torch.cuda.max_memory_allocated() / 2 ** 20, 1)
            self.log(f"{name}: {record.get('status', 'cut short')} in {record['seconds']} s")
            self.save()


def environment(sizes: Sizes) -> dict:
    import apache_beam
    import open_clip
    import torchvision
    import transformers

    info = {**machine(), "python": platform.python_version(), "device": sizes.device,
            "versions": {"torch": torch.__version__, "torchvision": torchvision.__version__,
                         "open_clip": open_clip.__version__, "transformers": transformers.__version__,
                         "apache_beam": apache_beam.__version__, "cuda": torch.version.cuda,
                         "cudnn": torch.backends.cudnn.version() if torch.cuda.is_available() else None}}
    if sizes.device == "cuda":
        properties = torch.cuda.get_device_properties(0)
        info.update(device_name=properties.name, device_memory_gib=round(properties.total_memory / 2 ** 30, 1),
                    device_count=torch.cuda.device_count())
    else:
        info["device_name"] = f"CPU ({info['cpu_model']}, {torch.get_num_threads()} threads)"
    return info


def _sync() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def model_only(clip, pre, crops: torch.Tensor, batch: int, seconds: float) -> tuple[int, float]:
    """Crops and seconds of the image tower over pre-cut uint8 crops already on the device, repeated for `seconds`."""
    from vlm.clip_preprocess import normalise_batch

    crops = crops.to(clip.device)

    def one_pass() -> int:
        for first in range(0, len(crops), batch):
            clip.model.encode_image(normalise_batch(crops[first:first + batch], pre, clip.dtype))
        return len(crops)

    with torch.inference_mode():
        one_pass()  # warm-up over every batch shape: kernel choice, allocator
        _sync()
        done, started = 0, time.perf_counter()
        while done == 0 or time.perf_counter() - started < seconds:
            done += one_pass()
        _sync()
    return done, time.perf_counter() - started


def naive_loop(clip, work: list, seconds: float) -> tuple[int, float]:
    """Per image: PIL crops, open_clip's transform per crop, one forward per image; until `seconds` have passed."""
    from open_clip.transform import PreprocessCfg, image_transform_v2
    from PIL import Image

    transform = image_transform_v2(PreprocessCfg(**clip.preprocess_cfg), is_train=False)

    def forward(path: Path, windows: list) -> None:
        with Image.open(path) as image:
            image = image.convert("RGB")
            batch = torch.stack([transform(image.crop(window)) for window in windows])
        clip.model.encode_image(batch.to(clip.device, clip.dtype))

    with torch.inference_mode():
        forward(*work[0])  # warm-up, as for (a)
        _sync()
        done, started = 0, time.perf_counter()
        for path, windows in work:
            forward(path, windows)
            done += len(windows)
            if time.perf_counter() - started > seconds:
                break
        _sync()
    return done, time.perf_counter() - started


def steady_rate(store: Path, job_log: Path) -> tuple[float | None, float | None]:
    """Crops/s from the moment the worker's image tower was ready (the handler logs it) to the last shard commit:
    the job running, without process start-up, planning and model load. Returns (rate, those seconds)."""
    from beam_jobs.device_clip_handler import MODEL_READY
    from featurestore.manifest import read_commits
    from featurestore.reader import StoreReader

    ready = [line for line in job_log.read_text().splitlines() if MODEL_READY in line]
    commits = read_commits(store, "extract_features")
    if not ready or not commits:
        return None, None
    # The job's log lines start with logging's asctime (local time, milliseconds), as bench/gpu_job.py sets it.
    started = datetime.strptime(ready[0][:23], "%Y-%m-%d %H:%M:%S,%f").timestamp()
    seconds = max(c.committed_at for c in commits) - started
    reader = StoreReader(store)
    crops = sum(reader.shard_stats("extract_features", c.shard)["crops"] for c in commits)
    return crops / seconds, seconds


def run_job(recorder: Recorder, record: dict, sizes: Sizes, overrides: list[str], store: Path, reserve: float) -> dict:
    """The Beam job in a child process with its own time limit; returns its result (summary, device peak)."""
    result_path = store.parent / "job-result.json"
    argv = [sys.executable, "-m", "bench.gpu_job", str(result_path), "--store", str(store)]
    argv += [f"--set={o}" for o in overrides]
    # FnApiRunner, the in-process runner Beam's DirectRunner runs pipelines on: the DirectRunner of Beam 2.77 first
    # tries Prism, which it downloads (urlopen, no timeout): on a machine that reaches nothing that can hang.
    argv += ["--runner=FnApiRunner", "--direct_running_mode=multi_threading", f"--direct_num_workers={sizes.workers}"]
    record["command"] = " ".join(argv[1:2] + ["bench.gpu_job", "RESULT"] + argv[4:])
    limit = max(recorder.left() - reserve, 10.0)
    with (recorder.out / "job.log").open("w") as log:
        child = subprocess.Popen(argv, cwd=REPO, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                                 env={**os.environ, "PYTHONPATH": str(REPO)})
        try:
            code = child.wait(timeout=limit)
        except (subprocess.TimeoutExpired, CutShort):
            os.killpg(child.pid, signal.SIGKILL)
            child.wait()
            raise
    if code != 0:
        raise RuntimeError(f"the job exited with {code}; see job.log")
    return json.loads(result_path.read_text())


def measure_extract(recorder: Recorder, sizes: Sizes, work_dir: Path) -> None:
    from bench.gpu_workload import crop_windows, host_cut_crops, write_dataset, write_model
    from vlm.clip import load_clip, resolve_clip
    from vlm.clip_preprocess import CropPreprocess

    metrics = recorder.results["metrics"]
    overrides = None
    with recorder.phase("data") as record:
        if record is not None:
            overrides = write_dataset(work_dir / "data", sizes.images)
            record["images"] = sizes.images
    model_name = None
    with recorder.phase("model") as record:
        if record is not None:
            import open_clip

            cfg = SMOKE_MODEL if sizes.model == "smoke-vit" else open_clip.get_model_config(sizes.model)
            model_name = write_model(work_dir / "model", cfg)
    if overrides is None or model_name is None:
        return
    clip = load_clip(resolve_clip(model_name, None, None), device=sizes.device, dtype=sizes.dtype)
    pre = CropPreprocess.from_open_clip(clip.preprocess_cfg)
    work = crop_windows(work_dir / "data", "square", max(sizes.model_only_images, sizes.naive_images))
    with recorder.phase("model_only") as record:
        if record is not None:
            crops, seconds = model_only(clip, pre, host_cut_crops(work[:sizes.model_only_images], pre), sizes.batch,
                                        sizes.model_only_seconds)
            metrics["model_only_crops_per_s"] = crops / seconds
            recorder.log(f"  (a) model only: {crops} crops in {seconds:.2f} s = {crops / seconds:,.0f} crops/s")
    with recorder.phase("naive") as record:
        if record is not None:
            crops, seconds = naive_loop(clip, work[:sizes.naive_images], sizes.naive_seconds)
            metrics["naive_crops_per_s"] = crops / seconds
            recorder.log(f"  (c) naive loop: {crops} crops in {seconds:.2f} s = {crops / seconds:,.0f} crops/s")
    del clip
    if torch.cuda.is_available():
        torch.cuda.empty_cache()  # the child job gets the device to itself
    with recorder.phase("job") as record:
        if record is not None:
            job_overrides = overrides + [
                f"model.clip={model_name}", f"model.dtype={sizes.dtype}", f"runtime.device={sizes.device}",
                "runtime.crop_on=device", f"runtime.max_batch_size={sizes.batch}", "runtime.shards_per_run=0",
                "crop.mode=square", f"shard_size={sizes.shard_size}"]
            reserve = sum(ESTIMATES[p][1 if recorder.smoke else 0] for p in ("clipcap", "blip2", "vlm")) * 0.5
            result = run_job(recorder, record, sizes, job_overrides, work_dir / "store", reserve)
            summary = result["summary"]
            steady, steady_seconds = steady_rate(work_dir / "store", recorder.out / "job.log")
            metrics.update(job_crops=summary["crops"], job_shards=summary["shards"],
                           job_wall_seconds=summary["wall_seconds"],
                           job_wall_crops_per_s=summary["crops"] / summary["wall_seconds"],
                           job_run_seconds=result["run_seconds"], job_steady_crops_per_s=steady,
                           job_steady_seconds=steady_seconds, job_failures=summary["failures"],
                           job_step_seconds=summary["seconds"])
            if result["device_memory_peak_bytes"] is not None:
                record["device_memory_peak_mib"] = round(result["device_memory_peak_bytes"] / 2 ** 20, 1)
            recorder.log(f"  (b) job: {summary['crops']} crops, {summary['shards']} shards; steady "
                         f"{steady or float('nan'):,.0f} crops/s, wall {metrics['job_wall_crops_per_s']:,.0f} "
                         f"crops/s ({summary['wall_seconds']:.1f} s)")


def measure_captioners(recorder: Recorder, sizes: Sizes, work_dir: Path) -> None:
    from bench.gpu_captioners import blip2, blip2_captions_per_second, clipcap, clipcap_captions_per_second

    metrics = recorder.results["metrics"]
    with recorder.phase("clipcap") as record:
        if record is not None:
            captioner = clipcap(work_dir / "clipcap", sizes.clipcap_full, sizes.device, sizes.dtype)
            for method in ("beam", "greedy"):
                rate = clipcap_captions_per_second(captioner, sizes.clipcap_captions, method, sizes.clipcap_captions,
                                                   sizes.max_tokens)
                metrics[f"clipcap_{method}_captions_per_s"] = rate
                recorder.log(f"  ClipCap {method}: {rate:,.1f} captions/s")
            del captioner
    with recorder.phase("blip2") as record:
        if record is not None:
            dtype = "fp16" if sizes.device == "cuda" else "fp32"
            captioner = blip2(sizes.blip2_full, sizes.device, dtype)
            metrics["blip2_dtype"] = dtype
            metrics["blip2_captions_per_s"] = blip2_captions_per_second(captioner, sizes.blip2_images,
                                                                        sizes.max_tokens)
            recorder.log(f"  BLIP-2: {metrics['blip2_captions_per_s']:,.1f} captions/s")
            del captioner
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    with recorder.phase("vlm") as record:
        if record is not None:
            measure_vlm(recorder, sizes, work_dir)


def measure_vlm(recorder: Recorder, sizes: Sizes, work_dir: Path) -> None:
    """The vlm labeler's pseudo boxes/s with each region prompt (bench/gpu_vlm.py)."""
    from bench.gpu_vlm import boxes_per_second, qwen2_vl, write_images

    metrics = recorder.results["metrics"]
    batch = write_images(work_dir / "vlm-images", sizes.vlm_images)
    model = qwen2_vl(sizes.vlm_full, sizes.device, sizes.dtype)
    metrics["vlm_parameters"] = sum(p.numel() for p in model.model.parameters())
    for region_prompt in ("crop", "box"):
        rate = boxes_per_second(model, work_dir / "vlm-images", batch, region_prompt, sizes.max_tokens,
                                sizes.vlm_regions_per_batch)
        metrics[f"vlm_{region_prompt}_boxes_per_s"] = rate
        recorder.log(f"  vlm, {region_prompt} prompt: {rate:,.1f} pseudo boxes/s")
    del model
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def judge(recorder: Recorder, sizes: Sizes) -> None:
    """Goals from this run's figures (none for a smoke run: its sizes say nothing about a GPU)."""
    m, results = recorder.results["metrics"], recorder.results
    for key, over in (("model_only", "model_only_crops_per_s"), ("naive", "naive_crops_per_s")):
        for rate in ("steady", "wall"):
            if m.get(f"job_{rate}_crops_per_s") and m.get(over):
                m[f"job_{rate}_over_{key}"] = m[f"job_{rate}_crops_per_s"] / m[over]
    if recorder.smoke:
        results["notes"].append("smoke run: tiny sizes on the CPU, to check the benchmark runs; no goal is judged")
        return
    goals = []
    if "job_steady_over_model_only" in m:
        goals.append(at_least("job (steady) / model-only", m["job_steady_over_model_only"], GOAL_VS_MODEL_ONLY))
    if "job_steady_over_naive" in m:
        goals.append(at_least("job (steady) / naive loop", m["job_steady_over_naive"], GOAL_VS_NAIVE))
    name = results["environment"].get("device_name", "")
    if m.get("job_steady_crops_per_s") and sizes.model == "ViT-B-32" and sizes.dtype == "bf16" and any(
            gpu in name for gpu in FULL_SIZE_GPUS):
        goals.append(at_least("job crops/s, ViT-B-32 bf16, H100/H200-class", m["job_steady_crops_per_s"],
                              GOAL_CROPS_PER_S))
    results["goals"] = [asdict(goal) for goal in goals]
    if "job_wall_over_model_only" in m:
        results["notes"].append(
            f"over the pipeline's wall time (Beam start-up and the worker's model load included) the job ran at "
            f"{m['job_wall_over_model_only']:.2f}x model-only; the dataset is sized to fit the 4-minute device budget")


def write_markdown(recorder: Recorder) -> None:
    from bench.run_all import write_markdown as write_performance

    if recorder.out.resolve() == (REPO / "bench").resolve():
        results_path = REPO / "bench" / "results.json"
        results = json.loads(results_path.read_text()) if results_path.is_file() else None
        if results is not None:
            write_performance(REPO / "bench" / "PERFORMANCE.md", results)  # reads results-gpu.json itself
            return
    (recorder.out / "PERFORMANCE-gpu.md").write_text("\n".join(gpu_section(recorder.results)) + "\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default=str(REPO / "bench"), help="folder for results-gpu.json and the logs")
    parser.add_argument("--smoke", action="store_true", help="tiny sizes on the CPU, to check that everything runs")
    parser.add_argument("--deadline", type=float, default=225.0, help="seconds for the whole run (phases that "
                        "would not fit are skipped); keep it under the `timeout` around it")
    parser.add_argument("--images", type=int, help="the job's images (10 crops each)")
    parser.add_argument("--device", help="override the device (cuda, cpu)")
    args = parser.parse_args(argv)
    sizes = SMOKE if args.smoke else FULL
    sizes = replace(sizes, **{k: v for k, v in (("images", args.images), ("device", args.device)) if v})
    if sizes.device == "cuda" and not torch.cuda.is_available():
        print("no CUDA device is visible: run `make bench-gpu SMOKE=1` (or --smoke) to check the benchmark on the CPU")
        return 2
    recorder = Recorder(Path(args.out), args.deadline, args.smoke, sys.argv[1:] if argv is None else argv)

    def stop(signum, frame):
        raise CutShort(f"signal {signum}")

    signal.signal(signal.SIGTERM, stop)
    work_dir = Path(tempfile.mkdtemp(prefix="bench-gpu-"))
    recorder.results["environment"] = environment(sizes)
    recorder.results["sizes"] = asdict(sizes)
    recorder.log(f"device {recorder.results['environment']['device_name']}, model {sizes.model} {sizes.dtype}, "
                 f"{sizes.images} images; deadline {args.deadline:.0f} s; writing {recorder.out}")
    recorder.save()
    code = 0
    try:
        measure_extract(recorder, sizes, work_dir)
        measure_captioners(recorder, sizes, work_dir)
    except CutShort:
        recorder.results["cut_short"] = True
        recorder.log("cut short by SIGTERM: what was measured is kept")
        code = 124
    finally:
        judge(recorder, sizes)
        recorder.save()
        write_markdown(recorder)
        shutil.rmtree(work_dir, ignore_errors=True)
    recorder.log(f"done: {recorder.out / 'results-gpu.json'}")
    return code


if __name__ == "__main__":
    raise SystemExit(main())
