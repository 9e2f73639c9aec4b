"""`head STORE TABLE`: the first rows of a table; embeddings shown by size and first values."""
from __future__ import annotations

from featurestore.commands.render import add_store_argument, emit, text_table
from featurestore.reader import StoreReader
from schemas.tables import EMBEDDING_COLUMNS, TABLES


def add_arguments(parser) -> None:
    add_store_argument(parser)
    parser.add_argument("table", choices=sorted(TABLES))
    parser.add_argument("-n", type=int, default=10, help="number of rows (default 10)")


def _short(value, is_embedding: bool):
    if is_embedding and value is not None:
        return f"[{len(value)}] " + " ".join(f"{v:.3f}" for v in value[:3]) + " …"
    return value


def run(args) -> int:
    rows = []
    for batch in StoreReader(args.store).stream(args.table, batch_size=args.n):
        rows.extend(batch.to_pylist())
        if len(rows) >= args.n:
            break
    rows = rows[: args.n]
    embeddings = EMBEDDING_COLUMNS[args.table]
    shown = [{k: _short(v, k in embeddings) for k, v in row.items()} for row in rows]
    if args.json:
        emit(shown)
    elif shown:
        headers = list(shown[0])
        print(text_table(headers, [[row[h] for h in headers] for row in shown], max_width=40))
    else:
        print(f"table {args.table} is empty")
    return 0
