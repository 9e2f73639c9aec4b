"""`sql STORE "SELECT …"`: DuckDB with one view per table."""
from __future__ import annotations

import sys

import duckdb

from featurestore.commands.render import add_store_argument, emit, text_table
from featurestore.sql import connect


def add_arguments(parser) -> None:
    add_store_argument(parser)
    parser.add_argument("query", help='SQL over the views proposals, images, regions, pseudo_labels, vocab, failures')
    parser.add_argument("--max-rows", type=int, default=50, help="rows to print (default 50; 0 = all)")


def run(args) -> int:
    try:
        result = connect(args.store).execute(args.query)
    except duckdb.Error as error:
        print(f"error: {error}")
        return 2
    headers = [d[0] for d in result.description]
    rows = result.fetchall() if args.max_rows <= 0 else result.fetchmany(args.max_rows)
    more = args.max_rows > 0 and bool(result.fetchmany(1))
    if args.json:
        emit([dict(zip(headers, row)) for row in rows])
    else:
        print(text_table(headers, rows))
    if more:  # said on stderr, so --json output stays one JSON document
        print(f"(the first {len(rows)} rows only: the query has more; --max-rows N shows N, --max-rows 0 all)",
              file=sys.stderr)
    return 0
