"""`inspect STORE`: what a store holds, at a glance."""
from __future__ import annotations

from featurestore.commands.crop_census import census_lines, crop_census
from featurestore.commands.render import add_store_argument, emit, human_bytes, text_table
from featurestore.commands.report_store import proposal_recall
from featurestore.reader import StoreReader
from pipelines.proposal_recall import format_recall_table
from schemas.tables import TABLES


def add_arguments(parser) -> None:
    add_store_argument(parser)
    parser.add_argument("--schema", action="store_true", help="also print each table's Arrow schema")


def summarise(reader: StoreReader) -> dict:
    tables = {}
    for table in TABLES:
        commits = reader.table_commits(table)
        if not commits:
            continue
        schema = reader.schema(table)
        tables[table] = {
            "shards": len({(c.stage, c.shard) for c in commits}),
            "rows": sum(c.files[table].rows or 0 for c in commits),
            "bytes": sum(c.files[table].bytes for c in commits),
            "schema": [f"{f.name}: {f.type}" for f in schema],
        }
    failures = {}
    if "failures" in tables:
        counts = reader.read_table("failures", ["stage", "kind"]).group_by(["stage", "kind"]).aggregate(
            [("kind", "count")])
        for row in counts.to_pylist():
            failures[f"{row['stage']}/{row['kind']}"] = row["kind_count"]
    stages = {}
    for name, record in reader.manifest.stages.items():
        stages[name] = {"config_hash": record.config_hash, "code_version": record.code_version,
                        "models": {role: model.to_json() for role, model in record.models.items()},
                        "embedding_dim": record.embedding_dim, "summary": record.summary}
        stages[name]["committed_shards"] = sum(1 for c in reader.commits if c.stage == name)
    extra = {"wds": [c for c in reader.commits if "wds" in c.files]}
    return {"store": str(reader.root), "schema_version": reader.manifest.schema_version, "stages": stages,
            "tables": tables, "failures": failures, "crops": crop_census(reader),
            "proposal_recall": proposal_recall(reader),
            "wds": {"shards": len(extra["wds"]), "bytes": sum(c.files["wds"].bytes for c in extra["wds"])}}


def run(args) -> int:
    summary = summarise(StoreReader(args.store))
    if args.json:
        emit(summary)
        return 0
    print(f"store {summary['store']}  (schema version {summary['schema_version']})\n")
    rows = [(name, t["shards"], t["rows"], human_bytes(t["bytes"])) for name, t in summary["tables"].items()]
    if summary["wds"]["shards"]:
        rows.append(("wds (tar)", summary["wds"]["shards"], "", human_bytes(summary["wds"]["bytes"])))
    print(text_table(["table", "shards", "rows", "bytes"], rows))
    print("\nstages")
    print(text_table(["stage", "shards", "config hash", "code version", "embedding dim"],
                     [(name, s["committed_shards"], (s["config_hash"] or "")[:12], s["code_version"],
                       s["embedding_dim"]) for name, s in summary["stages"].items()]))
    for name, stage in summary["stages"].items():
        if not stage["models"]:
            continue
        print(f"\n{name} models")
        for role, model in (stage["models"] or {}).items():
            print(f"  {role}: " + ", ".join(f"{key} {value}" for key, value in model.items() if key != "files"))
            for entry in model.get("files", []):
                print("    " + ", ".join(f"{key} {value}" for key, value in entry.items()))
    lines = census_lines(summary["crops"])
    if lines:
        print("\n" + "\n".join(lines))
    recall = summary["proposal_recall"]
    if recall:
        print(f"\nproposal recall (class-agnostic; novel GT from {recall['novel_annotations'] or 'no held-out file'}), "
              f"in %\n" + format_recall_table({"proposals": recall["sides"]}, recall["max_dets"]))
    print("\nfailures" + ("" if summary["failures"] else ": none"))
    if summary["failures"]:
        print(text_table(["stage/kind", "rows"], sorted(summary["failures"].items())))
    if args.schema:
        for name, table in summary["tables"].items():
            print(f"\n{name}\n  " + "\n  ".join(table["schema"]))
    return 0
