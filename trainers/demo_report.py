"""The demo's closing table: HD-OVD's Table V rows and Open-Det on the same store and validation set.

`python -m trainers.demo_report --table5 runs/demo/table5.json --opendet runs/demo/opendet/metrics.json`

HD-OVD is given the class names (a vocabulary); Open-Det names each box by itself, and its AP comes from mapping the
generated names to the category names (`trainers.opendet.evaluate`). "names right" is Open-Det's share of found
ground-truth boxes whose generated name maps to their class.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

HEADERS = ("method", "vocabulary at test time", "AP50", "AP50_base", "AP50_novel", "names right base",
           "names right novel")


def percent(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.1f}"


def read_json(path: Path, what: str) -> dict:
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no {what}; run the step that writes it first (make demo)")
    return json.loads(path.read_text())


def demo_rows(table5: dict, opendet: dict | None) -> list[list[str]]:
    """table5: {row: {"metrics": {...}}} as trainers.hdovd.ablation writes it; opendet: a metrics.json of an Open-Det run."""
    rows = []
    for name, result in table5.items():
        metrics = result["metrics"]
        rows.append([f"HD-OVD {name}", "class names", *(percent(metrics.get(k)) for k in
                                                        ("AP50_all", "AP50_base", "AP50_novel")), "", ""])
    if opendet is not None:
        metrics = opendet["metrics"]
        rows.append(["Open-Det", "none (names generated)", *(percent(metrics.get(k)) for k in
                     ("AP50_all", "AP50_base", "AP50_novel", "name_right_base", "name_right_novel"))])
    return rows


def format_rows(rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(HEADERS) + " |", "|" + "---|" * len(HEADERS)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m trainers.demo_report", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--table5", required=True, help="table5.json written by python -m trainers.hdovd.ablation")
    parser.add_argument("--opendet", default=None, help="metrics.json of an Open-Det run")
    parser.add_argument("--out", default=None, help="also write the table here (Markdown)")
    args = parser.parse_args(argv)
    try:
        table5 = read_json(Path(args.table5), "HD-OVD ablation results")
        opendet = read_json(Path(args.opendet), "Open-Det metrics") if args.opendet else None
    except FileNotFoundError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    table = format_rows(demo_rows(table5, opendet))
    if args.out:
        Path(args.out).write_text(table + "\n")
    print("\nHD-OVD and Open-Det on ShapesOV (AP50 on the validation set, %)\n" + table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
