"""Erasure and retention benchmark: what erase-user, prune and pack cost.

Generated hits (``--customers``, ``--days``) are loaded into a
FileStorage in two halves by time; the first half's batch is released
and archived. Then it times:

- ``erase_user`` of ``--users`` customers, one transaction each (the
  median and the largest);
- ``prune`` of the archived batch (one transaction);
- ``pack`` of the file, with the sizes before and after.

    .venv/bin/python benchmarks/retention.py
    .venv/bin/python benchmarks/retention.py --customers 500 --days 7
"""
import argparse
import io
import os
import shutil
import statistics
import tempfile
import time

import transaction

from trackstore.clickstream import ClickstreamDao
from trackstore.db import get_storage
from trackstore.db import open_db
from trackstore.erasure import erase_user
from trackstore.ingest import ingest
from trackstore.retention import pack
from trackstore.retention import prune
from trackstore.sessions.generate import generate


def halves(customers, days, directory):
    """Write the generated hits in two files, split at half time."""
    out = io.BytesIO()
    generate(customers, days, 1, out)
    lines = out.getvalue().splitlines()
    stamps = sorted(line.split(b'"timestamp":"')[1][:19] for line in lines
                    if b'"timestamp":"' in line)
    cut = stamps[len(stamps) // 2]
    paths = [os.path.join(directory, name) for name in ('a.jsonl',
                                                        'b.jsonl')]
    with open(paths[0], 'wb') as a, open(paths[1], 'wb') as b:
        for line in lines:
            late = b'"timestamp":"' in line and \
                line.split(b'"timestamp":"')[1][:19] >= cut
            (b if late else a).write(line + b'\n')
    return paths, len(lines)


def timed(fn, *args):
    started = time.perf_counter()
    result = fn(*args)
    return time.perf_counter() - started, result


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--customers', type=int, default=2000)
    parser.add_argument('--days', type=int, default=14)
    parser.add_argument('--users', type=int, default=20)
    args = parser.parse_args()
    directory = tempfile.mkdtemp(prefix='trackstore-bench-retention-')
    try:
        (first, second), hits = halves(args.customers, args.days,
                                       directory)
        db = open_db('file://' + os.path.join(directory, 'Data.fs'))
        ingest(first, db)
        conn = db.open()
        dao = ClickstreamDao(get_storage(conn))
        dao.release_batch('bench')
        dao.update_batch_status('1', 'archived')
        transaction.commit()
        conn.close()
        ingest(second, db)
        conn = db.open()
        storage = get_storage(conn)
        sessions = len(storage)
        users = [u for u in storage.getUserNames('clickstream') if u]
        step = max(len(users) // args.users, 1)
        erased = []
        for user in users[::step][:args.users]:
            seconds, report = timed(erase_user, storage, user)
            transaction.commit()
            erased.append((seconds, report.sessions))
        print('%d hits, %d sessions, %d customers' % (
            hits, sessions, len(users)))
        times = [s for s, _ in erased]
        print('erase-user: %d users, %d sessions; median %.1f ms, largest '
              '%.1f ms' % (len(erased), sum(n for _, n in erased),
                           statistics.median(times) * 1000,
                           max(times) * 1000))
        seconds, report = timed(prune, storage, 1e10)
        transaction.commit()
        print('prune: %d sessions of %d batch(es) in %.2f s (%.0f '
              'sessions/s)' % (report.sessions, report.batches, seconds,
                               report.sessions / seconds))
        conn.close()
        seconds, (before, after) = timed(pack, db)
        print('pack: %.1f MB -> %.1f MB in %.2f s' % (
            before / 1e6, after / 1e6, seconds))
        db.close()
    finally:
        shutil.rmtree(directory, ignore_errors=True)


if __name__ == '__main__':
    main()
