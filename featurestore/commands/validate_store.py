"""`validate STORE`: manifest vs files, row counts, checksums, join keys; exit 1 listing every problem."""
from __future__ import annotations

from featurestore.commands.render import add_store_argument, emit
from featurestore.validate import validate_store


def add_arguments(parser) -> None:
    add_store_argument(parser)


def run(args) -> int:
    problems = validate_store(args.store)
    if args.json:
        emit({"store": args.store, "valid": not problems, "problems": problems})
    elif problems:
        print(f"{args.store}: {len(problems)} problem(s)")
        for problem in problems:
            print(f"  - {problem}")
    else:
        print(f"{args.store}: valid")
    return 1 if problems else 0
