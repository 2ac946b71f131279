"""Clickstream writes: trackstore's DAO on FileStorage against SQLite.

    .venv/bin/python benchmarks/clickstream.py [--sessions 3000]
        [--bulk 50000] [--chunk 10000] [--rounds 3]

Two workloads on the same generated sessions (10 results shown, 3 click
events each, random session ids, most sessions with a user id):

- one by one: ``register_session`` + ``push_events`` (3 events), one
  transaction per session, as the HTTP routes do;
- bulk: ``store_sessions`` with ``--chunk`` sessions and their events per
  transaction, as the ingest pipeline does.

SQLite gets the same rules: session id unique, (batch, number) unique
with numbers taken from a counter row of the collecting batch, at most
one collecting batch (a partial unique index), (session id, event id)
unique with duplicates skipped, and indexes on user and time as the
tracks have. Two SQLite settings are measured: the default rollback
journal with ``synchronous=FULL``, an fsync per commit as FileStorage
does (the like-for-like comparison), and WAL with ``synchronous=NORMAL``,
no fsync per commit (faster, and a committed transaction may be lost on
power failure).

Each store runs ``--rounds`` times, the stores taking turns; printed are
the median sessions/s per store, the spread, and the ratios of the
medians to each SQLite setting.
"""
import argparse
import gc
import os
import random
import shutil
import sqlite3
import statistics
import sys
import tempfile
import time

import orjson
import transaction
import ZODB
from rich.console import Console
from rich.table import Table
from ZODB.FileStorage import FileStorage

from trackstore import TrackingStorage
from trackstore.clickstream import ClickstreamDao
from trackstore.clickstream import Session
from trackstore.clickstream import SessionEvent


T0 = 1_763_800_000


def generate(n, seed):
    """``n`` (Session, [3 SessionEvent]) pairs, deterministic."""
    rnd = random.Random(seed)
    items = []
    for i in range(n):
        sid = '%032x' % rnd.getrandbits(128)
        created = T0 + i
        user = None if rnd.random() < 0.2 else 'user%d' % rnd.randrange(
            max(n // 5, 1))
        results = [{'object_id': 'obj%d' % rnd.randrange(100_000),
                    'rank': float(k)} for k in range(10)]
        session = Session(session_id=sid, search_query='query %d' % i,
                          created_at=created, search_results=results,
                          user_id=user)
        events = [SessionEvent(
            event_id='e%d' % k, session_id=sid,
            object_id=results[rnd.randrange(10)]['object_id'],
            event_type='click', created_at=created + k + 1)
            for k in range(3)]
        items.append((session, events))
    return items


# -- trackstore ------------------------------------------------------------


class ZODBStore:
    name = 'trackstore FileStorage'

    def __init__(self, workdir):
        self.db = ZODB.DB(FileStorage(os.path.join(workdir, 'Data.fs')),
                          cache_size=100_000)
        self.conn = self.db.open()
        root = self.conn.root()
        root['trackstore'] = TrackingStorage()
        transaction.commit()
        self.storage = root['trackstore']

    def one_by_one(self, items):
        for session, events in items:
            dao = ClickstreamDao(self.storage)
            dao.register_session(session)
            dao.push_events(events)
            transaction.commit()

    def bulk(self, chunks):
        for chunk in chunks:
            ClickstreamDao(self.storage).store_sessions(chunk)
            transaction.commit()

    def count(self):
        dao = ClickstreamDao(self.storage)
        batch = dao.get_batch(str(self.storage.getRun('clickstream').id))
        return batch.session_counter, len(self.storage)

    def close(self):
        transaction.abort()
        self.conn.close()
        self.db.close()


# -- SQLite with the same rules ----------------------------------------------


SCHEMA = """
CREATE TABLE batches (
    batch_id INTEGER PRIMARY KEY,
    session_counter INTEGER NOT NULL,
    last_number INTEGER NOT NULL,
    created_at INTEGER NOT NULL,
    status TEXT NOT NULL,
    release_id TEXT UNIQUE,
    released_at INTEGER);
CREATE UNIQUE INDEX one_collecting ON batches (status)
    WHERE status = 'collecting';
CREATE TABLE sessions (
    session_id TEXT PRIMARY KEY,
    batch_id INTEGER NOT NULL REFERENCES batches,
    session_number INTEGER NOT NULL,
    user_id TEXT,
    created_at INTEGER NOT NULL,
    data TEXT NOT NULL,
    UNIQUE (batch_id, session_number));
CREATE INDEX sessions_user ON sessions (user_id);
CREATE INDEX sessions_time ON sessions (created_at);
CREATE TABLE events (
    session_id TEXT NOT NULL REFERENCES sessions,
    event_id TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    data TEXT NOT NULL,
    PRIMARY KEY (session_id, event_id));
CREATE INDEX events_time ON events (created_at);
"""


class SQLiteStore:

    def __init__(self, workdir, wal):
        self.name = 'SQLite WAL/NORMAL' if wal else 'SQLite FULL'
        self.db = sqlite3.connect(
            os.path.join(workdir, 'clickstream-%s.sqlite' % wal),
            isolation_level=None)
        if wal:
            self.db.execute('PRAGMA journal_mode=WAL')
            self.db.execute('PRAGMA synchronous=NORMAL')
        else:
            self.db.execute('PRAGMA synchronous=FULL')
        self.db.executescript(SCHEMA)

    def _collecting(self):
        row = self.db.execute("SELECT batch_id FROM batches "
                              "WHERE status = 'collecting'").fetchone()
        if row is not None:
            return row[0]
        return self.db.execute(
            "INSERT INTO batches (session_counter, last_number, created_at,"
            " status) VALUES (0, 0, ?, 'collecting') RETURNING batch_id",
            (int(time.time()),)).fetchone()[0]

    def _take(self, batch, count):
        return self.db.execute(
            'UPDATE batches SET last_number = last_number + ?, '
            'session_counter = session_counter + ? WHERE batch_id = ? '
            'RETURNING last_number', (count, count, batch)).fetchone()[0] \
            - count + 1

    @staticmethod
    def _session_row(session, batch, number):
        return (session.session_id, batch, number, session.user_id,
                session.created_at,
                orjson.dumps(session.model_dump(mode='json')).decode())

    @staticmethod
    def _event_rows(events):
        return [(e.session_id, e.event_id, e.created_at,
                 orjson.dumps(e.model_dump(mode='json')).decode())
                for e in events]

    def one_by_one(self, items):
        db = self.db
        for session, events in items:
            db.execute('BEGIN IMMEDIATE')
            known = db.execute('SELECT 1 FROM sessions WHERE session_id = ?',
                               (session.session_id,)).fetchone()
            if known is None:
                batch = self._collecting()
                number = self._take(batch, 1)
                db.execute('INSERT INTO sessions VALUES (?, ?, ?, ?, ?, ?)',
                           self._session_row(session, batch, number))
            db.executemany('INSERT OR IGNORE INTO events VALUES (?, ?, ?, ?)',
                           self._event_rows(events))
            db.execute('COMMIT')

    def bulk(self, chunks):
        db = self.db
        for chunk in chunks:
            db.execute('BEGIN IMMEDIATE')
            ids = [s.session_id for s, _ in chunk]
            known = set()
            for start in range(0, len(ids), 30_000):
                part = ids[start:start + 30_000]
                known.update(row[0] for row in db.execute(
                    'SELECT session_id FROM sessions WHERE session_id IN '
                    '(%s)' % ','.join('?' * len(part)), part))
            new = []
            for session, _ in chunk:
                if session.session_id not in known:
                    known.add(session.session_id)
                    new.append(session)
            if new:
                batch = self._collecting()
                first = self._take(batch, len(new))
                db.executemany(
                    'INSERT INTO sessions VALUES (?, ?, ?, ?, ?, ?)',
                    [self._session_row(s, batch, first + i)
                     for i, s in enumerate(new)])
            db.executemany('INSERT OR IGNORE INTO events VALUES (?, ?, ?, ?)',
                           [row for _, events in chunk
                            for row in self._event_rows(events)])
            db.execute('COMMIT')

    def count(self):
        counter = self.db.execute(
            "SELECT session_counter FROM batches "
            "WHERE status = 'collecting'").fetchone()[0]
        rows = sum(self.db.execute('SELECT count(*) FROM %s' % t).fetchone()[0]
                   for t in ('sessions', 'events'))
        return counter, rows

    def close(self):
        self.db.close()


def measure(store, workload, payload, expected):
    started = time.perf_counter()
    getattr(store, workload)(payload)
    elapsed = time.perf_counter() - started
    counter, rows = store.count()
    # Every store must have kept every session and event, exactly once.
    assert (counter, rows) == expected, (store.name, counter, rows)
    return elapsed


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--sessions', type=int, default=3000,
                        help='sessions written one transaction each')
    parser.add_argument('--rounds', type=int, default=3,
                        help='runs of each store; the median is shown')
    parser.add_argument('--bulk', type=int, default=50_000,
                        help='sessions written with store_sessions')
    parser.add_argument('--chunk', type=int, default=10_000,
                        help='sessions per bulk transaction')
    args = parser.parse_args(argv)
    console = Console(width=110)
    workloads = []
    if args.sessions:
        single = generate(args.sessions, seed=1)
        workloads.append(('one by one', 'one_by_one', single,
                          args.sessions))
    if args.bulk:
        items = generate(args.bulk, seed=2)
        chunks = [items[i:i + args.chunk]
                  for i in range(0, len(items), args.chunk)]
        workloads.append(('bulk, %d/txn' % args.chunk, 'bulk',
                          chunks, args.bulk))
    # The pre-generated input is millions of long-lived objects; without
    # this every full collection would walk them, and that cost (seconds
    # per 10,000 sessions) belongs to the benchmark, not to any store.
    gc.collect()
    gc.freeze()
    makers = [ZODBStore, lambda d: SQLiteStore(d, wal=False),
              lambda d: SQLiteStore(d, wal=True)]
    table = Table(title='Clickstream writes: sessions/s (3 events each), '
                  'median of %d rounds' % args.rounds)
    table.add_column('workload')
    table.add_column('store')
    table.add_column('sessions/s', justify='right')
    table.add_column('spread', justify='right')
    table.add_column('vs SQLite FULL', justify='right')
    table.add_column('vs SQLite WAL', justify='right')
    for label, workload, payload, n in workloads:
        rates = {}
        for round_ in range(args.rounds):
            # The stores take turns, in a rotating order, so that a
            # neighbour's load on the shared disk hits all of them.
            order = makers[round_ % 3:] + makers[:round_ % 3]
            for make in order:
                workdir = tempfile.mkdtemp(prefix='trackstore-bench-')
                store = make(workdir)
                try:
                    with console.status('%s, round %d: %s' % (
                            label, round_ + 1, store.name)):
                        # One track per session and one per event.
                        elapsed = measure(store, workload, payload,
                                          (n, 4 * n))
                finally:
                    store.close()
                    shutil.rmtree(workdir, ignore_errors=True)
                rates.setdefault(store.name, []).append(n / elapsed)
        medians = {name: statistics.median(r) for name, r in rates.items()}
        full = medians['SQLite FULL']
        wal = medians['SQLite WAL/NORMAL']
        for name, median in medians.items():
            table.add_row(
                label, name, '{:,.0f}'.format(median),
                '{:,.0f}-{:,.0f}'.format(min(rates[name]), max(rates[name])),
                '%.2fx' % (median / full), '%.2fx' % (median / wal))
    console.print(table)
    console.print('python %s, %d sessions one by one, %d in bulk' % (
        sys.version.split()[0], args.sessions, args.bulk))


if __name__ == '__main__':
    main()
