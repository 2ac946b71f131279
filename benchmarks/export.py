"""Export benchmark: rows a second and bytes a hit for each format.

Generated hits (``--customers``, ``--days``) are loaded into a new
FileStorage, then exported as JSON Lines, CSV and Parquet; each export
is read back (``read_export``) and, for JSON Lines, loaded into a new
database, which must hold the same sessions.

    .venv/bin/python benchmarks/export.py
    .venv/bin/python benchmarks/export.py --customers 4000 --days 14
"""
import argparse
import os
import shutil
import tempfile
import time

from trackstore.db import get_storage
from trackstore.db import open_db
from trackstore.export import FORMATS
from trackstore.export import export
from trackstore.export import read_export
from trackstore.ingest import ingest
from trackstore.sessions.generate import generate
from trackstore.tests import stored_visits


def timed(fn, *args):
    started = time.perf_counter()
    result = fn(*args)
    return time.perf_counter() - started, result


def with_storage(path, fn, *args):
    db = open_db(path)
    try:
        conn = db.open()
        try:
            return fn(get_storage(conn), *args)
        finally:
            conn.close()
    finally:
        db.close()


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--customers', type=int, default=2000)
    parser.add_argument('--days', type=int, default=7)
    args = parser.parse_args()
    directory = tempfile.mkdtemp(prefix='trackstore-bench-export-')
    try:
        source = os.path.join(directory, 'hits.jsonl')
        with open(source, 'wb') as f:
            generate(args.customers, args.days, 5, f)
        store = os.path.join(directory, 'a.fs')
        ingest(source, store, rejects=source + '.rejects')
        print(time.strftime('%Y-%m-%d %H:%M'))
        for format in FORMATS:
            out = os.path.join(directory, 'out.' + format)
            seconds, report = timed(with_storage, store, export, out,
                                    format)
            back, rows = timed(lambda: sum(1 for _ in read_export(out)))
            print('%-8s %d sessions, %d hits in %.2f s (%d hits/s), '
                  '%.0f bytes a hit; read back in %.2f s' % (
                      format, report.sessions, report.hits, seconds,
                      report.hits / seconds,
                      os.path.getsize(out) / report.hits, back))
        copy = os.path.join(directory, 'b.fs')
        seconds, _ = timed(ingest, os.path.join(directory, 'out.jsonl'),
                           copy)
        same = with_storage(copy, stored_visits) == with_storage(
            store, stored_visits)
        print('the JSON Lines export loaded in %.2f s: same sessions: %s'
              % (seconds, same))
    finally:
        shutil.rmtree(directory, ignore_errors=True)


if __name__ == '__main__':
    main()
