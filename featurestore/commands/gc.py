"""`gc STORE`: remove the files no commit record names (leftovers of interrupted writes); `validate` lists them."""
from __future__ import annotations

from featurestore.commands.render import add_store_argument, emit, human_bytes
from featurestore.gc import DEFAULT_MIN_AGE_SECONDS, collect_garbage
from featurestore.manifest import read_manifest
from featurestore.writer_lock import WriterLock


def add_arguments(parser) -> None:
    add_store_argument(parser)
    parser.add_argument("--min-age", type=float, default=DEFAULT_MIN_AGE_SECONDS, metavar="SECONDS",
                        help="keep files younger than this: a running job may not have committed them yet "
                             f"(default {DEFAULT_MIN_AGE_SECONDS:.0f})")
    parser.add_argument("--dry-run", action="store_true", help="list what would be removed, remove nothing")


def run(args) -> int:
    if args.dry_run:
        result = collect_garbage(args.store, min_age_seconds=args.min_age, dry_run=True)
    else:
        read_manifest(args.store)  # a folder that is not a store gets no lock file
        with WriterLock(args.store, "gc"):  # not while a job writes: its newest files may be about to be named
            result = collect_garbage(args.store, min_age_seconds=args.min_age)
    if args.json:
        emit({"store": args.store, "dry_run": args.dry_run, "removed": result.removed,
              "kept_young": result.kept_young, "bytes": result.bytes})
        return 0
    verb = "would remove" if args.dry_run else "removed"
    print(f"{args.store}: {verb} {len(result.removed)} unreferenced file(s), {human_bytes(result.bytes)}")
    for relative in result.removed:
        print(f"  - {relative}")
    if result.kept_young:
        print(f"kept {len(result.kept_young)} unreferenced file(s) younger than {args.min_age:.0f} s "
              f"(a running job may still commit them)")
    return 0
