"""Command-line tools over a store. Each command is a module in `featurestore/commands/` with
`add_arguments(parser)` and `run(args) -> exit code`; this file only lists and dispatches them."""
from __future__ import annotations

import argparse
import importlib
import sys

from featurestore.manifest import DamagedStoreError
from featurestore.reader import ShardReplacedError
from featurestore.terminal_text import terminal_safe_output
from featurestore.writer_lock import StoreLockedError
from schemas.tables import SchemaVersionError

# command name → (module under featurestore.commands, one-line help)
COMMANDS = {
    "inspect": ("inspect_store", "tables, shards, rows, bytes, schema, provenance and failure counts"),
    "validate": ("validate_store", "check files against the manifest; exit 1 listing every problem"),
    "gc": ("gc", "remove files no commit record names (leftovers of interrupted writes)"),
    "unlock": ("unlock", "say who holds the store's writer lock; on an object store, clear a lease whose job is gone"),
    "sql": ("sql", "run DuckDB SQL with one view per table"),
    "head": ("head", "print the first rows of a table"),
    "labels": ("labels", "pseudo-label vocabulary: counts, near-duplicates, base synonyms, novel accuracy"),
    "show": ("show", "draw one image's boxes, captions and pseudo labels to a PNG"),
    "search": ("search", "find regions by text with CLIP + faiss; write a contact sheet PNG"),
    "export-hdovd": ("export_hdovd", "write per-image .pth features, proposals.pkl and class embeddings for HD-OVD"),
    "export-proposals": ("export_proposals", "write the proposals stage as COCO-results JSON and HD-OVD's proposals "
                                             "pickle"),
    "export-coco": ("export_coco", "write pseudo boxes (and GT with --with-gt) as a COCO instances JSON"),
    "diff": ("diff", "compare two stores table by table; exit 0 when they match within tolerance, 1 listing them"),
    "report": ("report", "write a static HTML report: provenance, timings, failures, label crops, precision"),
}


def build_parser(command_name: str | None) -> argparse.ArgumentParser:
    """Every command is listed; only `command_name`'s module is imported and given its arguments. A command's module
    may pull in torch, DuckDB or faiss: a run loads only what it uses, which keeps start-up short and leaves no other
    library's threads to wind down at exit."""
    parser = argparse.ArgumentParser(prog="python -m featurestore", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (module_name, help_text) in COMMANDS.items():
        command = sub.add_parser(name, help=help_text, description=help_text)
        if name == command_name:
            module = importlib.import_module(f"featurestore.commands.{module_name}")
            module.add_arguments(command)
            command.set_defaults(run=module.run)
    return parser


def named_command(argv: list[str]) -> str | None:
    """The command a command line names: its first word that is not an option."""
    return next((word for word in argv if not word.startswith("-")), None)


def main(argv: list[str] | None = None) -> int:
    """Run one command; everything it prints goes out with control characters from the data escaped
    (featurestore.terminal_text)."""
    argv = sys.argv[1:] if argv is None else argv
    args = build_parser(named_command(argv)).parse_args(argv)
    with terminal_safe_output():
        try:
            return args.run(args)
        except (FileNotFoundError, FileExistsError, SchemaVersionError, KeyError, DamagedStoreError,
                ShardReplacedError, StoreLockedError) as error:
            message = error.args[0] if isinstance(error, KeyError) and error.args else error
            print(f"error: {message}")
            return 2
