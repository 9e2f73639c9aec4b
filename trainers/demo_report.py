"""The demo's closing tables: HD-OVD's Table V rows and the Open-Det runs on the same store and validation set, then
Open-Det's per-class name rates, run beside run.

`python -m trainers.demo_report --table5 runs/demo/table5.json --opendet runs/demo/opendet/metrics.json
 --opendet runs/demo/opendet_pseudo/metrics.json`

HD-OVD is given the class names (a vocabulary); Open-Det names each box by itself, and its AP comes from mapping the
generated names to the category names (`trainers.opendet.evaluate`). "names right" is Open-Det's share of found
ground-truth boxes whose generated name (best beam) maps to their class; "joined beams right" the same for the text
the released AP mapping embeds, every beam joined ("a circle, square, heart"). Each Open-Det row is labelled from its
own run config: what names its boxes were trained with, and the name → category mapping of its evaluation.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from pipelines.proposal_recall import format_recall_table

HEADERS = ("method", "vocabulary at test time", "AP50", "AP50_base", "AP50_novel", "names right base",
           "names right novel", "joined beams right base", "joined beams right novel")
OPENDET_KEYS = ("AP50_all", "AP50_base", "AP50_novel", "name_right_base", "name_right_novel", "joined_beams_right_base",
                "joined_beams_right_novel")


def percent(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.1f}"


def percent_cell(rate: float | None) -> str:
    """A rate as a table cell: `percent` with its % sign."""
    return "n/a" if rate is None else percent(rate) + "%"


def read_json(path: Path, what: str) -> dict:
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no {what}; run the step that writes it first (make demo)")
    return json.loads(path.read_text())


def opendet_label(run: dict) -> str:
    """"Open-Det", "+ pseudo names" when its boxes' names included HD-OVD's pseudo labels, and the evaluation's
    mapping when it is not the released one (read from the metrics file's config)."""
    settings = run.get("config", {}).get("opendet", {})
    label = "Open-Det"
    if settings.get("loss", {}).get("pseudo_names"):
        label += " + pseudo names"
    mapping = settings.get("inference", {}).get("mapping", "released")
    if mapping != "released":
        label += f" ({mapping} mapping)"
    return label


AP_KEYS = OPENDET_KEYS[:3]


def demo_values(table5: dict, opendet: list[dict]) -> list[tuple[str, str, dict[str, float | None]]]:
    """The demo table's rows as numbers: (method, vocabulary, {metric key: rate or None}); AP keys for every row,
    the name keys (OPENDET_KEYS) for Open-Det's own rows. table5: {row: {"metrics": {...}}} as
    trainers.hdovd.ablation writes it; opendet: metrics.json files of Open-Det runs (with their config)."""
    rows = []
    for name, result in table5.items():
        rows.append((f"HD-OVD {name}", "class names", {k: result["metrics"].get(k) for k in AP_KEYS}))
    for run in opendet:
        metrics = run["metrics"]
        rows.append((opendet_label(run), "none (names generated)", {k: metrics.get(k) for k in OPENDET_KEYS}))
        # The same generated names mapped to the categories by another rule (inference.other_mappings).
        for mapping, other in metrics.get("other_mappings", {}).items():
            rows.append((f"{opendet_label(run)}, {mapping} mapping", "none (names generated)",
                         {k: other.get(k) for k in AP_KEYS}))
    return rows


def demo_rows(table5: dict, opendet: list[dict]) -> list[list[str]]:
    """demo_values as table cells (in %); the name columns of a row without names stay empty."""
    return [[method, vocabulary, *(percent(values[k]) if k in values else "" for k in OPENDET_KEYS)]
            for method, vocabulary, values in demo_values(table5, opendet)]


def format_rows(rows: list[list[str]], headers: tuple[str, ...] = HEADERS) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def name_rate_rows(opendet: list[dict]) -> tuple[tuple[str, ...], list[list[str]]]:
    """Per category: its split, then per Open-Det run the found boxes, the share named right, the share whose joined
    beams map right and the most common generated names (the runs' `name_table`,
    trainers.opendet.evaluate.NameTally)."""
    headers = ["category", "split"]
    for run in opendet:
        label = opendet_label(run)
        headers += [f"{label}: found", f"{label}: name right", f"{label}: joined beams right",
                    f"{label}: most common names"]
    tables = [{row["category"]: row for row in run.get("name_table", [])} for run in opendet]
    categories = list(tables[0]) if tables else []
    rows = []
    for category in categories:
        row = [category, tables[0][category]["split"]]
        for table in tables:
            entry = table.get(category, {})
            row += [str(entry.get("found", "n/a")), percent_cell(entry.get("right_rate")),
                    percent_cell(entry.get("joined_right_rate")), ", ".join(entry.get("top_names", []))]
        rows.append(row)
    return tuple(headers), rows


def size_rate_rows(opendet: list[dict]) -> tuple[tuple[str, ...], list[list[str]]]:
    """Per COCO size bucket and split: per Open-Det run the found boxes and the share named right (the runs'
    `name_size_table`); a bucket a run found nothing in shows n/a."""
    headers = ["object size (COCO)", "split"]
    tables = []
    for run in opendet:
        label = opendet_label(run)
        headers += [f"{label}: found", f"{label}: name right"]
        tables.append({(row["size"], row["split"]): row for row in run.get("name_size_table", [])})
    keys = list(dict.fromkeys(key for table in tables for key in table))
    rows = []
    for size, split in keys:
        row = [size, split]
        for table in tables:
            entry = table.get((size, split), {})
            row += [str(entry.get("found", "n/a")), percent_cell(entry.get("right_rate"))]
        rows.append(row)
    return tuple(headers), rows


def recall_budgets(recall: dict) -> tuple[int, ...]:
    """The proposal budgets (k of AR@k) the recall JSON holds."""
    keys = {key for sides in recall.values() for metrics in sides.values() for key in metrics}
    return tuple(sorted(int(key[3:]) for key in keys if key.startswith("AR@")))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m trainers.demo_report", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--table5", required=True, help="table5.json written by python -m trainers.hdovd.ablation")
    parser.add_argument("--opendet", action="append", default=[],
                        help="metrics.json of an Open-Det run; repeat for several runs, printed in this order")
    parser.add_argument("--recall", default=None,
                        help="JSON of python -m trainers.proposer.recall --json-out: the proposals' average recall")
    parser.add_argument("--out", default=None, help="also write the tables here (Markdown)")
    args = parser.parse_args(argv)
    try:
        table5 = read_json(Path(args.table5), "HD-OVD ablation results")
        opendet = [read_json(Path(path), "Open-Det metrics") for path in args.opendet]
        recall = read_json(Path(args.recall), "proposal recall") if args.recall else None
    except FileNotFoundError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    table = format_rows(demo_rows(table5, opendet))
    text = "HD-OVD and Open-Det on ShapesOV (AP50 on the validation set, %)\n\n" + table
    if opendet:
        headers, rows = name_rate_rows(opendet)
        text += ("\n\nOpen-Det: ground-truth boxes found by a query (IoU >= 0.5) and the share whose generated name "
                 "maps to their class (best beam; joined beams: what the AP mapping embeds)\n\n"
                 + format_rows(rows, headers))
        headers, rows = size_rate_rows(opendet)
        if rows:
            text += ("\n\nOpen-Det: the same by object size (COCO's buckets of annotation area: small up to 32², "
                     "medium up to 96²)\n\n" + format_rows(rows, headers))
    if recall:
        text += ("\n\nProposals: class-agnostic average recall on the training images (AR: IoU 0.5:0.95, R50: IoU 0.5; "
                 "base GT, and the held-out novel GT that only this evaluation reads), %\n\n"
                 + format_recall_table(recall, recall_budgets(recall)))
    if args.out:
        Path(args.out).write_text(text + "\n")
    print("\n" + text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
