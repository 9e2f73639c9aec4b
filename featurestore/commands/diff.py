"""`diff A B`: compare two stores table by table — row counts, keys, embeddings by cosine, labels and every other
column — and exit 0 when they match within tolerance, 1 listing the differences (featurestore.store_diff says how
rows are matched). How the stores were made (config hash, model weights) is printed as notes: it explains a
difference but is not one."""
from __future__ import annotations

import dataclasses

from featurestore.commands.render import emit
from featurestore.reader import StoreReader
from featurestore.store_diff import TableDiff, diff_stores, provenance_notes

MATCH_EXIT, DIFFER_EXIT = 0, 1


def add_arguments(parser) -> None:
    parser.add_argument("a", help="path of the first store")
    parser.add_argument("b", help="path of the second store")
    parser.add_argument("--cos-tol", type=float, default=1e-3,
                        help="embeddings match when their cosine is at least 1 - this (default 1e-3)")
    parser.add_argument("--atol", type=float, default=1e-4,
                        help="absolute tolerance of other float columns: boxes, scores, cos (default 1e-4)")
    parser.add_argument("--json", action="store_true", help="machine-readable output")


def describe(diff: TableDiff) -> list[str]:
    """Lines that say how one table differs (empty when it matches)."""
    lines = list(diff.problems)
    if diff.rows_a != diff.rows_b:
        lines.append(f"{diff.rows_a} rows in A, {diff.rows_b} in B")
    for side, count, examples in (("A", diff.only_a, diff.examples_only_a), ("B", diff.only_b, diff.examples_only_b)):
        if count:
            lines.append(f"{count} keys only in {side}, e.g. {', '.join(map(str, examples))}")
    for column, found in diff.columns.items():
        shown = "; ".join(f"{key}: {a!r} vs {b!r}" for key, a, b in found.examples)
        lines.append(f"column {column}: {found.differing} matched rows differ, e.g. {shown}")
    for column, found in diff.embeddings.items():
        if found.below:
            shown = ", ".join(f"{key} (cos {cos:.4f})" if cos is not None else f"{key} (null in one store)"
                              for key, cos in found.examples)
            lines.append(f"column {column}: {found.below} of {found.compared} embeddings differ (min cosine "
                         f"{found.min_cos:.5f}), e.g. {shown}")
    return lines


def run(args) -> int:
    a, b = StoreReader(args.a), StoreReader(args.b)
    diffs = diff_stores(a, b, args.cos_tol, args.atol)
    notes = provenance_notes(a, b)
    differing = [d for d in diffs if d.differs]
    if args.json:
        emit({"match": not differing, "notes": notes,
              "tables": {d.table: {**dataclasses.asdict(d), "differs": d.differs} for d in diffs}})
    else:
        print(f"A = {args.a}\nB = {args.b}")
        for diff in diffs:
            lines = describe(diff)
            cosines = "".join(f", {column} min cosine {found.min_cos:.5f}" for column, found in diff.embeddings.items()
                              if found.compared)
            status = "DIFFERS" if lines else "match"
            print(f"{diff.table}: {status} ({diff.rows_a} rows in A, {diff.rows_b} in B{cosines})")
            for line in lines:
                print(f"  - {line}")
        for note in notes:
            print(f"note: {note}")
        print(f"{len(differing)} of {len(diffs)} tables differ" if differing else
              f"the stores match (embeddings within cosine {1 - args.cos_tol:g}, floats within {args.atol:g})")
    return DIFFER_EXIT if differing else MATCH_EXIT
