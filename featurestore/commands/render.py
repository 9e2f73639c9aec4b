"""Plain-text tables for people; `--json` output for scripts goes through `emit`. Cells are escaped (control
characters, line breaks and tabs of stored strings written as `\x1b`, `\n`), so a value can neither break the
table's layout nor reach the terminal as a command; `emit`'s JSON escapes them itself."""
from __future__ import annotations

import json
from typing import Sequence

from featurestore.terminal_text import escape_control


def human_bytes(size: int) -> str:
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} TiB"


def text_table(headers: Sequence[str], rows: Sequence[Sequence[object]], max_width: int = 60) -> str:
    def cell(value: object) -> str:
        text = "" if value is None else escape_control(str(value), keep="")
        return text if len(text) <= max_width else text[: max_width - 1] + "…"

    cells = [[cell(v) for v in row] for row in rows]
    widths = [max([len(h)] + [len(r[i]) for r in cells]) for i, h in enumerate(headers)]
    line = "  ".join(h.ljust(w) for h, w in zip(headers, widths))
    rule = "  ".join("-" * w for w in widths)
    body = ["  ".join(v.rjust(w) if _numeric(v) else v.ljust(w) for v, w in zip(r, widths)) for r in cells]
    return "\n".join([line, rule, *body])


def _numeric(text: str) -> bool:
    return text.replace(".", "", 1).replace("-", "", 1).replace(" ", "").isdigit()


def emit(data: object) -> None:
    print(json.dumps(data, indent=2, sort_keys=True, default=str))


def add_store_argument(parser) -> None:
    parser.add_argument("store", help="the store: the folder holding manifest.json, or its URL (s3://…, gs://…)")
    parser.add_argument("--json", action="store_true", help="machine-readable output")


def add_export_arguments(parser, out_help: str) -> None:
    """An export's STORE (a local folder) and what it writes: OUT after it, or --out."""
    parser.add_argument("store", help="path of the store (the directory holding manifest.json)")
    add_out_argument(parser, out_help, positional=True)


def add_out_argument(parser, help_text: str, positional: bool = False, required: bool = True) -> None:
    """The one output flag of every verb that writes something: `--out PATH` (`-o PATH`). `--output`, and for the
    exports the OUT argument after the store, are the older spellings and still work."""
    if positional:
        parser.add_argument("out_argument", nargs="?", metavar="OUT", help=f"{help_text}; the same as --out")
    parser.add_argument("-o", "--out", "--output", dest="out", default=None, metavar="PATH",
                        required=required and not positional, help=help_text)


def out_path(args) -> str:
    """The output path of a verb with add_out_argument(positional=True): --out or OUT, not two different ones."""
    given = {path for path in (args.out, getattr(args, "out_argument", None)) if path}
    if len(given) != 1:
        raise KeyError("give the output path once: --out PATH" if not given else
                       f"two output paths given ({', '.join(sorted(given))}): give one, with --out")
    return given.pop()
