#!/usr/bin/env python3
"""Runs the queries of `sql_scan_bench` with DuckDB on the same records, exported as NDJSON.

    pip install duckdb
    python3 sql/bench/duckdb_compare.py target/sql-bench/events.ndjson

Times each query (best of 5) reading the NDJSON file directly, on one thread and on all
threads, then once more from a DuckDB table loaded in memory (DuckDB's best case).
"""

import os
import sys
import time

import duckdb

RUNS = 5
QUERIES = [
    ("count(*)", "SELECT count(*) FROM {t}"),
    ("JSON decode, group by page", "SELECT page, count(*), sum(ms) FROM {t} GROUP BY page ORDER BY page LIMIT 1"),
    ("JSON decode, nested field", "SELECT \"user\".country AS c, count(*) FROM {t} GROUP BY c ORDER BY c LIMIT 1"),
]


def best_of(con, sql):
    best = float("inf")
    answer = None
    for _ in range(RUNS):
        started = time.perf_counter()
        answer = con.execute(sql).fetchall()
        best = min(best, time.perf_counter() - started)
    return best, answer


def main():
    path = sys.argv[1] if len(sys.argv) > 1 else "target/sql-bench/events.ndjson"
    source = (
        f"read_json('{path}', format='newline_delimited', "
        "columns={page: 'VARCHAR', user: 'STRUCT(id BIGINT, country VARCHAR)', ms: 'BIGINT', ua: 'VARCHAR'})"
    )
    con = duckdb.connect()
    records = con.execute(f"SELECT count(*) FROM {source}").fetchone()[0]
    cores = os.cpu_count() or 1
    print(f"duckdb {duckdb.__version__}, records: {records}, machine threads: {cores}")
    for threads in (1, cores):
        con.execute(f"SET threads = {threads}")
        for name, sql in QUERIES:
            seconds, answer = best_of(con, sql.format(t=source))
            print(f"ndjson  {name:<28} threads={threads} best_of_{RUNS}={seconds * 1000:8.1f} ms "
                  f"{records / seconds / 1e6:7.2f} M records/s  {answer[:1]}")
    con.execute(f"CREATE TABLE events AS SELECT * FROM {source}")
    for threads in (1, cores):
        con.execute(f"SET threads = {threads}")
        for name, sql in QUERIES:
            seconds, answer = best_of(con, sql.format(t="events"))
            print(f"table   {name:<28} threads={threads} best_of_{RUNS}={seconds * 1000:8.1f} ms "
                  f"{records / seconds / 1e6:7.2f} M records/s  {answer[:1]}")


if __name__ == "__main__":
    main()
