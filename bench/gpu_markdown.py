"""bench/results-gpu.json (written by `make bench-gpu`) → the GPU section of bench/PERFORMANCE.md."""
from __future__ import annotations

from bench.common import Goal

TITLE = "### On a GPU: extract-features and the captioners (`make bench-gpu`)"


def _rate(metrics: dict, key: str, digits: int = 0) -> str:
    value = metrics.get(key)
    return "" if value is None else f"{value:,.{digits}f}"


def _ratio(metrics: dict, key: str) -> str:
    value = metrics.get(key)
    return "" if value is None else f"{value:.2f}"


def gpu_section(results: dict | None) -> list[str]:
    """Markdown lines; a placeholder that says how to produce the figures when there are none yet."""
    if not results:
        return [TITLE, "", "No GPU run yet. On a CUDA machine, `make bench-gpu` (about 5 minutes, model builds "
                "included) writes `bench/results-gpu.json` and this section; `make bench-gpu SMOKE=1` checks the "
                "benchmark on the CPU with tiny sizes.", ""]
    env, sizes, m = results["environment"], results["sizes"], results["metrics"]
    lines = [TITLE, ""]
    if results.get("smoke"):
        lines += ["> **Smoke run** (tiny sizes on the CPU, to check the benchmark runs). Not GPU figures.", ""]
    if results.get("cut_short"):
        lines += ["> **Cut short** by its time limit: the figures below are those measured before.", ""]
    versions = ", ".join(f"{name} {version}" for name, version in env["versions"].items() if version)
    lines += [f"`{results['command']}` (started {results['started']}) on {env['device_name']}"
              + (f" ({env['device_memory_gib']} GiB)" if "device_memory_gib" in env else "") + f"; {versions}.", "",
              f"{sizes['model']} (random weights) in {sizes['dtype']}, 640x480 synthetic JPEGs with 10 regions each, "
              f"square crops, {sizes['batch']} crops per forward; the job on {sizes['images']} images in shards of "
              f"{sizes['shard_size']}, DirectRunner with {sizes['workers']} worker threads, runtime.crop_on=device.", "",
              "| figure | crops/s | job (steady) / figure | job (wall) / figure |", "| --- | --- | --- | --- |",
              f"| (a) model only, pre-cut crops on the device | {_rate(m, 'model_only_crops_per_s')} | "
              f"{_ratio(m, 'job_steady_over_model_only')} | {_ratio(m, 'job_wall_over_model_only')} |",
              f"| (b) our Beam job, image tower ready to last shard commit (steady) | {_rate(m, 'job_steady_crops_per_s')} | | |",
              f"| (b) our Beam job, over the pipeline's wall time | {_rate(m, 'job_wall_crops_per_s')} | | |",
              f"| (c) naive loop: PIL crop + open_clip preprocess, one forward per image | "
              f"{_rate(m, 'naive_crops_per_s')} | {_ratio(m, 'job_steady_over_naive')} | "
              f"{_ratio(m, 'job_wall_over_naive')} |", "",
              "| captioner | captions/s |", "| --- | --- |",
              f"| ClipCap {'GPT-2-small-sized' if sizes['clipcap_full'] else 'tiny teacher'}, beam 5, "
              f"{sizes['max_tokens']} tokens, {sizes['dtype']} | {_rate(m, 'clipcap_beam_captions_per_s', 1)} |",
              f"| ClipCap, greedy | {_rate(m, 'clipcap_greedy_captions_per_s', 1)} |",
              f"| BLIP-2 {'OPT-2.7b-sized' if sizes['blip2_full'] else 'tiny'}, greedy, {sizes['max_tokens']} tokens, "
              f"{m.get('blip2_dtype', '')} | {_rate(m, 'blip2_captions_per_s', 1)} |", "",
              "| vlm labeler (pipelines/captioners/vlm.py) | pseudo boxes/s |", "| --- | --- |",
              f"| {'Qwen2-VL-2B-sized' if sizes.get('vlm_full') else 'tiny Qwen2-VL'} "
              f"({m.get('vlm_parameters', 0) / 1e9:.2f} B parameters), crop prompt, greedy, {sizes['max_tokens']} "
              f"tokens, {sizes['dtype']} | {_rate(m, 'vlm_crop_boxes_per_s', 1)} |",
              f"| the same, box prompt (the whole 640x480 image, box drawn) | {_rate(m, 'vlm_box_boxes_per_s', 1)} |",
              "",
              "| phase | status | seconds | device memory peak MiB |", "| --- | --- | --- | --- |"]
    for name, phase in results["phases"].items():
        status = phase.get("status", "")
        if phase.get("reason") or phase.get("error"):
            status += f": {phase.get('reason') or phase.get('error')[:120]}"
        lines.append(f"| {name} | {status} | {phase.get('seconds', '')} | {phase.get('device_memory_peak_mib', '')} |")
    lines.append("")
    for goal in (Goal(**g) for g in results.get("goals", [])):
        verdict = "met" if goal.met else f"**missed by {goal.shortfall_text()}**"
        lines.append(f"- goal {goal.goal}: {goal.measured:.3g} (target {goal.target}): {verdict}")
    lines += [f"- {note}" for note in results.get("notes", [])]
    return lines + [""]
