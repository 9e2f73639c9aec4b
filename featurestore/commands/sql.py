"""`sql STORE "SELECT …"`: DuckDB with one view per table."""
from __future__ import annotations

import duckdb

from featurestore.commands.render import add_store_argument, emit, text_table
from featurestore.sql import connect


def add_arguments(parser) -> None:
    add_store_argument(parser)
    parser.add_argument("query", help='SQL over the views proposals, images, regions, pseudo_labels, vocab, failures')
    parser.add_argument("--max-rows", type=int, default=50, help="rows to print (default 50)")


def run(args) -> int:
    try:
        result = connect(args.store).execute(args.query)
    except duckdb.Error as error:
        print(f"error: {error}")
        return 2
    headers = [d[0] for d in result.description]
    rows = result.fetchmany(args.max_rows)
    if args.json:
        emit([dict(zip(headers, row)) for row in rows])
    else:
        print(text_table(headers, rows))
    return 0
