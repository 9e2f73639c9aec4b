"""Run every benchmark, one after the other, and write bench/results.json and bench/PERFORMANCE.md.

    .venv/bin/python -m bench.run_all             # full sizes (what `make bench` runs; about 15 minutes on 2 cores)
    .venv/bin/python -m bench.run_all --quick     # small sizes, a few minutes; for checking the benchmarks work
    .venv/bin/python -m bench.run_all --only store trainer   # rerun some; the others' results are kept

Each benchmark runs as its own process (`python -m bench.<name> … --json`), so one's memory and threads cannot colour
another's, and the command recorded next to each figure is exactly the one that produced it. They run in sequence:
the machine is small and shared, and two benchmarks at once would measure each other.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.common import REPO, machine, module_command
from bench.performance_markdown import performance_markdown, with_kept_notes

# Arguments per benchmark: full sizes, then --quick sizes (same code paths, fewer items).
BENCHMARKS: dict[str, tuple[list[str], list[str]]] = {
    "extract": (["--model", "ViT-B-32", "--dtype", "fp32", "bf16", "--images", "128", "--naive-images", "32",
                 "--compile"],
                ["--model", "ViT-B-32", "--dtype", "fp32", "bf16", "--images", "6"]),
    "pseudo_labels": ([], ["--captions", "32", "--small-captions", "8", "--single", "4", "--small-single", "2",
                       "--docs", "300"]),
    "label_pick": ([], ["--before-names", "2"]),
    "store": ([], ["--shards", "2", "--lookups", "20"]),
    "verified_reads": ([], ["--shards", "2", "--repeats", "3"]),
    "trainer": ([], ["--images", "48", "--steps", "20", "--log-every", "5", "--receive-batches", "10"]),
    "scale": ([], ["--images", "40", "--shard-size", "10"]),
}


def run_one(name: str, args: list[str]) -> dict:
    """Run `python -m bench.<name>` with its output shown live; returns its JSON result (or the failure)."""
    with tempfile.TemporaryDirectory(prefix="bench-result-") as tmp:
        json_path = Path(tmp) / "result.json"
        argv = [sys.executable, "-m", f"bench.{name}", *args, "--json", str(json_path)]
        print(f"\n=== {name}: {' '.join(argv[1:-2])}", flush=True)
        started_at = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
        started = time.perf_counter()
        done = subprocess.run(argv, cwd=REPO)
        seconds = time.perf_counter() - started
        if done.returncode != 0 or not json_path.is_file():
            return {"bench": name, "failed": f"exit code {done.returncode}", "seconds": seconds,
                    "started": started_at}
        outcome = json.loads(json_path.read_text())
    # The command as a reader would type it, without the temporary --json path.
    outcome["command"] = module_command(name, args)
    outcome["seconds"] = seconds
    outcome["started"] = started_at
    return outcome


def write_markdown(path: Path, results: dict) -> None:
    """PERFORMANCE.md from `results` and, beside it, results-gpu.json (`make bench-gpu`), keeping the hand-written
    notes at its end."""
    previous = path.read_text() if path.is_file() else None
    gpu_path = path.parent / "results-gpu.json"
    gpu = json.loads(gpu_path.read_text()) if gpu_path.is_file() else None
    path.write_text(with_kept_notes(performance_markdown(results, gpu), previous))


def merged(previous: dict | None, outcomes: list[dict]) -> list[dict]:
    """The previous run's outcomes with the re-run benchmarks replaced, in BENCHMARKS order."""
    by_name = {o["bench"]: o for o in (previous or {}).get("benchmarks", [])}
    by_name.update({o["bench"]: o for o in outcomes})
    return [by_name[name] for name in BENCHMARKS if name in by_name]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small sizes, to check that everything runs")
    parser.add_argument("--only", nargs="+", choices=sorted(BENCHMARKS), help="run only these benchmarks")
    parser.add_argument("--results", default=str(REPO / "bench" / "results.json"))
    parser.add_argument("--markdown", default=str(REPO / "bench" / "PERFORMANCE.md"))
    parser.add_argument("--render-only", action="store_true", help="rewrite --markdown from --results, run nothing")
    args = parser.parse_args(argv)

    if args.render_only:
        write_markdown(Path(args.markdown), json.loads(Path(args.results).read_text()))
        return 0
    names = args.only or list(BENCHMARKS)
    started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    outcomes = [run_one(name, BENCHMARKS[name][1 if args.quick else 0]) for name in names]
    run_all_command = module_command("run_all", ["--quick"] if args.quick else [])
    previous = None
    if args.only and Path(args.results).is_file():
        previous = json.loads(Path(args.results).read_text())
        if previous.get("quick") != args.quick:
            previous = None  # never mix quick and full figures
    results = {"started": previous["started"] if previous else started, "quick": args.quick,
               "command": run_all_command, "machine": machine(), "benchmarks": merged(previous, outcomes)}
    Path(args.results).write_text(json.dumps(results, indent=2) + "\n")
    write_markdown(Path(args.markdown), results)
    failed = [o["bench"] for o in outcomes if "failed" in o]
    print(f"\nwrote {args.results} and {args.markdown}" + (f"; FAILED: {', '.join(failed)}" if failed else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
