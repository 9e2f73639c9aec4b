"""The demo's HD-OVD and Open-Det rows over several seeds: each seed trains what `make demo` trains (HD-OVD's Table V
rows, then the two Open-Det runs side by side, one thread each) with `seed` and `stream.seed` set to it, on one store;
the table gives each row's mean and range (min–max) over the seeds.

`python -m trainers.demo_seeds --seeds 0,1,2 --store data/store --out runs/seeds` (`make demo-seeds SEEDS=0,1,2`)

Each run's files stay under OUT/seed_N/ (as runs/demo/ holds the demo's); a seed whose metrics are there already is
read, not trained again (--retrain trains it anew). --set applies to every run, --hdovd-set / --opendet-set to one
method's runs (a run refuses another method's keys).
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

from trainers.demo_report import OPENDET_KEYS, demo_values, format_rows, percent, read_json

HDOVD_CONFIG, OPENDET_CONFIG = "configs/shapes/hdovd.yaml", "configs/shapes/opendet.yaml"
# The demo's two Open-Det runs (Makefile, OPENDET_RUN): box names only, and with HD-OVD's pseudo names.
OPENDET_RUNS = {"opendet": [], "opendet_pseudo": ["opendet.loss.pseudo_names=true"]}
OPENDET_DEMO_SETS = ["threads=1", "opendet.inference.other_mappings=[softmax]"]


def set_flags(pairs: list[str]) -> list[str]:
    return [flag for pair in pairs for flag in ("--set", pair)]


def seed_sets(seed: int, store: str) -> list[str]:
    return [f"seed={seed}", f"stream.seed={seed}", f"store={store}"]


def train_seed(seed: int, args: argparse.Namespace) -> Path:
    """Train one seed's runs into OUT/seed_N (HD-OVD's rows, then the Open-Det runs side by side); returns it."""
    out = Path(args.out) / f"seed_{seed}"
    out.mkdir(parents=True, exist_ok=True)
    common = seed_sets(seed, args.store) + args.set
    python = [sys.executable, "-m"]
    if args.retrain or not (out / "table5.json").is_file():
        print(f"== seed {seed}: HD-OVD rows {args.rows}", flush=True)
        subprocess.run(python + ["trainers.hdovd.ablation", "--config", args.hdovd_config, "--rows", args.rows,
                                 "--out", str(out)] + set_flags(common + args.hdovd_set), check=True)
    runs = {}
    for name, extra in OPENDET_RUNS.items():
        if args.retrain or not (out / name / "metrics.json").is_file():
            command = python + ["trainers.train", "--config", args.opendet_config] + set_flags(
                common + OPENDET_DEMO_SETS + [f"out_dir={out / name}"] + extra + args.opendet_set)
            log = open(out / f"{name}.log", "w")
            runs[name] = (subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT), log)
    if runs:
        print(f"== seed {seed}: Open-Det runs {', '.join(runs)} side by side (logs in {out})", flush=True)
    for name, (process, log) in runs.items():
        status = process.wait()
        log.close()
        if status:
            raise RuntimeError(f"seed {seed}: Open-Det run {name} failed (exit {status}); see {out / name}.log")
    return out


def seed_values(out: Path) -> dict[str, dict[str, float | None]]:
    """One seed's demo rows: row label → {metric key: rate}."""
    table5 = read_json(out / "table5.json", "HD-OVD ablation results")
    opendet = [read_json(out / name / "metrics.json", "Open-Det metrics") for name in OPENDET_RUNS]
    return {f"{method} ({vocabulary})": values for method, vocabulary, values in demo_values(table5, opendet)}


def summarize(per_seed: dict[int, dict[str, dict[str, float | None]]]) -> dict[str, dict[str, dict]]:
    """row → metric → {"mean", "min", "max", "values" (one per seed, in seed order)} over the seeds that have it."""
    summary: dict[str, dict[str, dict]] = {}
    for seed, rows in sorted(per_seed.items()):
        for row, values in rows.items():
            for key, value in values.items():
                entry = summary.setdefault(row, {}).setdefault(key, {"values": []})
                entry["values"].append(value)
    for row in summary.values():
        for entry in row.values():
            present = [value for value in entry["values"] if value is not None]
            entry.update(mean=sum(present) / len(present) if present else None, min=min(present, default=None),
                         max=max(present, default=None))
    return summary


def summary_table(summary: dict[str, dict[str, dict]], seeds: list[int]) -> str:
    """Markdown: each row's metrics as "mean (min–max)" in %, over the seeds."""
    headers = ("row",) + tuple(OPENDET_KEYS)
    rows = []
    for row, metrics in summary.items():
        cells = []
        for key in OPENDET_KEYS:
            entry = metrics.get(key)
            cells.append("" if entry is None or entry["mean"] is None else
                         f"{percent(entry['mean'])} ({percent(entry['min'])}–{percent(entry['max'])})")
        rows.append([row, *cells])
    return (f"The demo's rows over seeds {', '.join(map(str, seeds))}: mean (min–max), %\n\n"
            + format_rows(rows, headers))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m trainers.demo_seeds", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", default="0,1,2", help="comma-separated seeds (default 0,1,2)")
    parser.add_argument("--store", default="data/store")
    parser.add_argument("--out", default="runs/seeds")
    parser.add_argument("--rows", default="base_only,image,hdovd", help="HD-OVD Table V rows, as make demo trains")
    parser.add_argument("--hdovd-config", default=HDOVD_CONFIG)
    parser.add_argument("--opendet-config", default=OPENDET_CONFIG)
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="every run")
    parser.add_argument("--hdovd-set", action="append", default=[], metavar="KEY=VALUE", help="HD-OVD's runs")
    parser.add_argument("--opendet-set", action="append", default=[], metavar="KEY=VALUE", help="Open-Det's runs")
    parser.add_argument("--retrain", action="store_true", help="train every seed anew, even one already trained")
    args = parser.parse_args(argv)
    seeds = [int(seed) for seed in args.seeds.split(",")]
    per_seed = {seed: seed_values(train_seed(seed, args)) for seed in seeds}
    summary = summarize(per_seed)
    table = summary_table(summary, seeds)
    out = Path(args.out)
    (out / "seeds.json").write_text(json.dumps({"seeds": seeds, "rows": summary}, indent=2) + "\n")
    (out / "seeds.md").write_text(table + "\n")
    print("\n" + table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
