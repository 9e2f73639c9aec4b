"""`validate STORE`: manifest vs files, row counts, checksums, join keys; exit 1 listing every problem and what
repairs it. `--repair` rebuilds a damaged manifest.json from the commit records (under the store's writer lock);
damaged shards are recomputed by their job's resume, whose command it prints."""
from __future__ import annotations

from featurestore.commands.render import add_store_argument, emit
from featurestore.manifest_rebuild import rebuild_manifest
from featurestore.validate import check_store
from featurestore.writer_lock import WriterLock


def add_arguments(parser) -> None:
    add_store_argument(parser)
    parser.add_argument("--repair", action="store_true",
                        help="rebuild a damaged manifest.json from the commit records; print the command that "
                             "recomputes each damaged shard")


def run(args) -> int:
    check = check_store(args.store)
    rebuilt = False
    if args.repair and check.manifest_damaged:
        with WriterLock(args.store, "validate --repair"):
            rebuild_manifest(args.store)
        rebuilt = True
        check = check_store(args.store)
    repairs = check.repairs(args.store)
    if args.json:
        emit({"store": args.store, "valid": not check.problems, "problems": check.problems, "repairs": repairs,
              "damaged_shards": {stage: sorted(shards) for stage, shards in check.damaged.items()},
              "manifest_rebuilt": rebuilt})
    else:
        if rebuilt:
            print(f"{args.store}: rebuilt manifest.json from the commit records (the damaged one is kept as "
                  "manifest.json.damaged)")
        if check.problems:
            print(f"{args.store}: {len(check.problems)} problem(s)")
            for problem in check.problems:
                print(f"  - {problem}")
            for repair in repairs:
                print(f"repair: {repair}")
        else:
            print(f"{args.store}: valid")
    return 1 if check.problems else 0
