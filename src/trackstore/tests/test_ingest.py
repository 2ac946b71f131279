"""Ingestion end to end: input forms, stdin, rejects, dedupe, a load
killed with SIGKILL and started again, and what the store shows after.

Real FileStorages in temporary directories and real subprocesses of the
``trackstore`` console script; no mocks.
"""
import gzip
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
import unittest

import orjson
from hypothesis import given
from hypothesis import settings
from hypothesis import strategies as st

from trackstore.clickstream.dao import ClickstreamDao
from trackstore.clickstream.records import clickstream_records
from trackstore.db import get_storage
from trackstore.db import open_db
from trackstore.hitstore import hit_state
from trackstore.ingest import SLOW_COMMIT_ENV
from trackstore.ingest import IngestReport
from trackstore.ingest import ingest
from trackstore.metrics import compute
from trackstore.sessions.generate import generate
from trackstore.tests import TRACKSTORE
from trackstore.tests import python_env


def valid_records(path):
    """The records of a JSON Lines file that are loadable hits, decided
    independently of trackstore's parser: (line number, record)."""
    import datetime
    found = []
    with open(path, 'rb') as f:
        for lineno, line in enumerate(f, 1):
            try:
                record = json.loads(line)
                when = record['event']['timestamp']
                datetime.datetime.fromisoformat(when)
            except (ValueError, KeyError, TypeError):
                continue
            if record.get('id') is not None and record.get('type'):
                found.append((lineno, record))
    return found


def snapshot(storage):
    """Everything a load stored, independent of track ids: the sessions
    (with batch and number) and their events as the DAO gives them, and
    every track's metadata and data."""
    records = clickstream_records(storage)
    dao = ClickstreamDao(storage)
    sessions = {}
    events = {}
    for sid in records.ids.keys():
        session = dao.get_session(sid, events_limit=None)
        events[sid] = [(e.event_id, e.event_type, e.created_at)
                       for e in session.events]
        sessions[sid] = session.model_dump(exclude={'events'})
    tracks = sorted(
        (t.taskId, t.runId, t.userName, t.timeStamp,
         orjson.dumps(t.data, option=orjson.OPT_SORT_KEYS))
        for t in storage.values())
    return sessions, events, tracks


class Base(unittest.TestCase):

    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix='trackstore-ingest-')

    def tearDown(self):
        shutil.rmtree(self.dir, ignore_errors=True)

    def path(self, name):
        return os.path.join(self.dir, name)

    def uri(self, name='Data.fs'):
        return 'file://' + self.path(name)

    def db(self, name='Data.fs'):
        db = open_db(self.uri(name))
        self.addCleanup(db.close)
        return db

    def storage(self, db):
        conn = db.open()
        self.addCleanup(conn.close)
        return get_storage(conn)

    def generated(self, customers=40, days=4, seed=3, name='hits.jsonl'):
        path = self.path(name)
        generate(customers, days, seed, path)
        return path


class InputForms(Base):
    """JSON Lines, a JSON array, gzip of either: the same hits, the same
    store."""

    def forms(self):
        # Loadable hits plus four bad records that stay well nested, so
        # they can sit in an array too.
        good = [r for _, r in valid_records(self.generated())]
        bad = [{'id': 1, 'event': {'timestamp': '2022-04-28T08:00:00'}},
               {'type': 'search', 'event': {'timestamp': '2022-04-28'}},
               {'id': 2, 'type': 'search', 'event': {'ip': '1.2.3.4'}},
               {'id': 3, 'type': 'search', 'event': {'timestamp': 'soon'}}]
        records = good[:50] + bad + good[50:]
        lines = b''.join(orjson.dumps(r) + b'\n' for r in records)
        array = b'[\n' + b',\n'.join(orjson.dumps(r) for r in records) \
            + b'\n]\n'
        forms = {'hits.jsonl': lines, 'hits.json': array,
                 'hits.jsonl.gz': gzip.compress(lines),
                 'hits.json.gz': gzip.compress(array)}
        for name, data in forms.items():
            with open(self.path(name), 'wb') as f:
                f.write(data)
        return records, len(good)

    def test_four_forms_store_the_same(self):
        records, good = self.forms()
        snapshots = []
        for name in ('hits.jsonl', 'hits.json', 'hits.jsonl.gz',
                     'hits.json.gz'):
            db = self.db(name + '.fs')
            report = ingest(self.path(name), db)
            self.assertEqual(report.read, len(records), name)
            self.assertEqual(report.stored, good, name)
            self.assertEqual(report.rejected, 4, name)
            self.assertEqual(report.duplicates, 0, name)
            self.assertEqual(report.replaced, 0, name)
            with open(report.rejects_path, 'rb') as f:
                rejects = [orjson.loads(line) for line in f]
            # the array has '[' on line 1, so records start on line 2
            first = 51 if name.startswith('hits.jsonl') else 52
            self.assertEqual([r['line'] for r in rejects],
                             list(range(first, first + 4)), name)
            self.assertEqual(
                [r['reason'] for r in rejects],
                ['missing type', 'missing id', 'missing timestamp',
                 "unparsable timestamp 'soon'"], name)
            snapshots.append(snapshot(self.storage(db)))
        for other in snapshots[1:]:
            self.assertEqual(other, snapshots[0])
        sessions, events, tracks = snapshots[0]
        self.assertEqual(sum(len(e) for e in events.values()), good)

    def test_stdin(self):
        records, good = self.forms()
        for name in ('hits.jsonl', 'hits.json.gz'):
            with open(self.path(name), 'rb') as f:
                proc = subprocess.run(
                    TRACKSTORE + ['ingest', '-', '--db',
                                  self.uri(name + '.fs'), '--json'],
                    stdin=f, capture_output=True, timeout=300,
                    env=python_env())
            self.assertEqual(proc.returncode, 0, proc.stderr)
            report = orjson.loads(proc.stdout)
            self.assertEqual(report['source'], '-')
            self.assertEqual(report['stored'], good)
            self.assertEqual(report['rejected'], 4)
            # rejects of standard input go beside the database
            self.assertEqual(report['rejects_path'],
                             self.path('stdin.rejects.jsonl'))
        db = self.db('hits.json.gz.fs')
        _, events, _ = snapshot(self.storage(db))
        self.assertEqual(sum(len(e) for e in events.values()), good)

    def test_empty_inputs(self):
        for name, data in (('empty.jsonl', b''), ('blank.jsonl', b'\n\n'),
                           ('empty.json', b'[]')):
            with open(self.path(name), 'wb') as f:
                f.write(data)
            report = ingest(self.path(name), self.db(name + '.fs'))
            self.assertEqual((report.read, report.stored, report.rejected),
                             (0, 0, 0), name)
            self.assertIsNone(report.rejects_path)


class Rejects(Base):

    def test_every_record_accounted_for(self):
        path = self.generated(customers=100, days=6)
        with open(path, 'rb') as f:
            lines = f.read().splitlines()
        valid = valid_records(path)
        ids = [r['id'] for _, r in valid]
        report = ingest(path, self.db())
        self.assertEqual(report.read, len(lines))
        self.assertGreater(report.rejected, 0)
        self.assertEqual(report.stored + report.duplicates, len(valid))
        self.assertEqual(report.stored, len(set(ids)))
        self.assertEqual(report.rejected, len(lines) - len(valid))
        with open(report.rejects_path, 'rb') as f:
            rejects = [orjson.loads(line) for line in f]
        self.assertEqual(len(rejects), report.rejected)
        good_lines = {n for n, _ in valid}
        for reject in rejects:
            self.assertNotIn(reject['line'], good_lines)
            self.assertEqual(reject['raw'].encode(),
                             lines[reject['line'] - 1])
            self.assertTrue(reject['reason'])
        self.assertEqual(sum(report.reject_reasons.values()),
                         report.rejected)
        # the rejects file lies beside the database, named for the input
        self.assertEqual(report.rejects_path,
                         self.path('hits.jsonl.rejects.jsonl'))

    def test_given_rejects_path_and_summary(self):
        with open(self.path('bad.jsonl'), 'wb') as f:
            f.write(b'nonsense\n{"id": 1, "type": "x"}\n')
        report = ingest(self.path('bad.jsonl'), self.db(),
                        rejects=self.path('r.jsonl'))
        self.assertEqual(report.rejected, 2)
        self.assertEqual(report.rejects_path, self.path('r.jsonl'))
        self.assertIn('2 rejected (see %s)' % self.path('r.jsonl'),
                      report.summary())


class Dedupe(Base):

    def test_rerun_stores_nothing_new(self):
        path = self.generated()
        db = self.db()
        first = ingest(path, db)
        before = snapshot(self.storage(db))
        again = ingest(path, db)
        self.assertEqual(again.stored, 0)
        self.assertEqual(again.duplicates, first.stored)
        self.assertEqual(again.rejected, first.rejected)
        self.assertEqual((again.sessions, again.replaced), (0, 0))
        conn = db.open()
        self.addCleanup(conn.close)
        self.assertEqual(snapshot(get_storage(conn)), before)
        totals = hit_state(get_storage(conn)).totals
        self.assertEqual(totals['stored'], first.stored)
        self.assertEqual(totals['duplicates'], first.stored)

    def test_duplicates_within_one_input(self):
        records = [{'id': 7, 'type': 'search', 'event': {
            'customer-id': 5, 'ip': '1.1.1.1', 'user-agent': 'u',
            'timestamp': '2022-04-28T08:00:0%d' % i}} for i in range(3)]
        records.append({'id': 'x7', 'type': 'search', 'event': {
            'customer-id': 5, 'ip': '1.1.1.1', 'user-agent': 'u',
            'timestamp': '2022-04-28T08:00:05'}})
        records.append(dict(records[-1]))
        with open(self.path('dup.jsonl'), 'wb') as f:
            for r in records:
                f.write(orjson.dumps(r) + b'\n')
        db = self.db()
        report = ingest(self.path('dup.jsonl'), db)
        self.assertEqual((report.stored, report.duplicates), (2, 3))
        sessions, events, _ = snapshot(self.storage(db))
        self.assertEqual(len(sessions), 1)
        (hits,) = events.values()
        # the first of the duplicates wins
        self.assertEqual([h[:2] for h in hits],
                         [('7', 'search'), ('x7', 'search')])

    def test_a_longer_file_after_a_shorter_one(self):
        # A load of the first half, then of the whole input: the second
        # load takes exactly the hits the first did not.
        path = self.generated()
        with open(path, 'rb') as f:
            lines = f.read().splitlines(keepends=True)
        db = self.db()
        whole = ingest(path, self.db('whole.fs'))
        with open(self.path('a.jsonl'), 'wb') as f:
            f.writelines(lines[:len(lines) // 2])
        with open(self.path('b.jsonl'), 'wb') as f:
            f.writelines(lines)
        a = ingest(self.path('a.jsonl'), db)
        b = ingest(self.path('b.jsonl'), db)
        self.assertEqual(a.stored + b.stored, whole.stored)
        self.assertEqual(b.duplicates, a.stored)


class Stored(Base):
    """What a load stored is seen by query(), the DAO and the metrics."""

    def test_visible_everywhere(self):
        path = self.generated()
        db = self.db()
        report = ingest(path, db)
        storage = self.storage(db)
        dao = ClickstreamDao(storage)
        records = clickstream_records(storage)
        self.assertEqual(len(records.ids), report.sessions)
        # A session is one track, its hits are its events.
        self.assertEqual(len(storage), report.sessions)
        customer = next(r for _, r in valid_records(path)
                        if r['event'].get('customer-id') is not None)
        cid = str(customer['event']['customer-id'])
        tracks = storage.query(taskId='clickstream', userName=cid)
        self.assertTrue(tracks)
        session_tracks = tracks
        for track in session_tracks:
            stored = dao.get_session(track.data['session_id'],
                                     events_limit=None)
            self.assertEqual(stored.user_id, cid)
            self.assertEqual(stored.search_meta['customer'], cid)
            self.assertEqual(
                [e['event_id'] for e in track.data['events']],
                [e.event_id for e in stored.events])
            self.assertEqual(len(stored.events), stored.search_meta['hits'])
            times = [e.meta['ts'] for e in stored.events]
            self.assertEqual(times, sorted(times))
        hit_ids = {str(r['id']) for _, r in valid_records(path)
                   if str(r['event'].get('customer-id')) == cid}
        event_ids = {e.event_id
                     for t in session_tracks
                     for e in dao.get_session(
                         t.data['session_id'], events_limit=None).events}
        self.assertEqual(event_ids, hit_ids)
        batch = dao.get_batch(
            dao.get_session(session_tracks[0].data['session_id']).batch_id)
        self.assertEqual(batch.session_counter, report.sessions)
        self.assertGreater(compute(storage)['ordering_sessions'], 0)


class Kill(Base):
    """A load killed with SIGKILL, then run again, ends with exactly what
    one clean load stores."""

    def test_sigkill_and_rerun(self):
        path = self.generated(customers=400, days=6)
        clean_db = self.db('clean.fs')
        clean = ingest(path, clean_db, batch_size=500)
        env = python_env(**{SLOW_COMMIT_ENV: '0.2'})
        cmd = TRACKSTORE + ['ingest', path, '--db', self.uri(),
                            '--batch-size', '500']
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE)
        # Wait for a few commits (the file grows with each), then kill.
        deadline = time.time() + 120
        while time.time() < deadline:
            try:
                if os.path.getsize(self.path('Data.fs')) > 1500000:
                    break
            except OSError:
                pass
            if proc.poll() is not None:
                self.fail('the load ended before it was killed: %s'
                          % proc.stderr.read().decode())
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        proc.stdout.close()
        proc.stderr.close()
        self.assertEqual(proc.returncode, -signal.SIGKILL)
        # Killed halfway: some hits are in, not all.
        db = open_db(self.uri())
        conn = db.open()
        taken = len(hit_state(get_storage(conn)).ids)
        conn.close()
        db.close()
        self.assertGreater(taken, 0)
        self.assertLess(taken, clean.stored)
        # Run again: the rest goes in.
        proc = subprocess.run(cmd + ['--json'], capture_output=True,
                              timeout=600, env=python_env())
        self.assertEqual(proc.returncode, 0, proc.stderr)
        report = orjson.loads(proc.stdout)
        self.assertEqual(report['duplicates'], taken)
        self.assertEqual(report['stored'], clean.stored - taken)
        db = self.db()
        self.assertEqual(snapshot(self.storage(db)),
                         snapshot(self.storage(clean_db)))
        self.assertEqual(compute(self.storage(db)),
                         compute(self.storage(clean_db)))


class Concurrent(Base):
    """Two loads into one database at once (two connections, two
    threads): every hit stored once, nothing lost or doubled."""

    def test_two_loaders(self):
        import threading

        from trackstore.ingest import Loader
        path = self.generated(customers=120, days=4)
        with open(path, 'rb') as f:
            lines = f.read().splitlines(keepends=True)
        for name, part in (('a.jsonl', lines[0::2]),
                           ('b.jsonl', lines[1::2])):
            with open(self.path(name), 'wb') as f:
                f.writelines(part)
        db = self.db()
        reports = {}
        errors = []

        def load(name):
            try:
                with Loader(db, batch_size=200,
                            rejects=self.path(name + '.rej')) as loader:
                    reports[name] = loader.load(self.path(name))
            except Exception as e:      # pragma: no cover
                errors.append(e)

        threads = [threading.Thread(target=load, args=(n,))
                   for n in ('a.jsonl', 'b.jsonl')]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        self.assertEqual(errors, [])
        ids = {str(r['id']) for _, r in valid_records(path)}
        stored = sum(r.stored for r in reports.values())
        self.assertEqual(stored, len(ids))
        _, events, _ = snapshot(self.storage(db))
        event_ids = [e[0] for es in events.values() for e in es]
        self.assertEqual(len(event_ids), len(ids))
        self.assertEqual(set(event_ids), ids)
        again = ingest(path, db)
        self.assertEqual((again.stored, again.duplicates), (0, len(ids)))


class Report(unittest.TestCase):

    def test_summary_line(self):
        report = IngestReport('x.jsonl')
        report.read, report.stored, report.duplicates = 10, 7, 2
        report.rejected, report.rejects_path = 1, '/v/x.rejects.jsonl'
        report.late, report.sessions, report.replaced = 1, 4, 2
        self.assertEqual(
            report.summary(),
            '10 hits read: 7 stored, 2 duplicates, 1 rejected (see '
            '/v/x.rejects.jsonl), 1 late; 4 sessions written, 2 replaced')
        self.assertEqual(report.as_dict()['sessions'], 4)


def sessions_of(storage):
    """The stored sessions with their events, without the numbers the
    batch gave them (those follow the order sessions were written)."""
    return sorted(
        orjson.dumps({k: v for k, v in s.items() if k != 'session_number'},
                     option=orjson.OPT_SORT_KEYS)
        for s in ClickstreamDao(storage).iter_records())


class Batching(unittest.TestCase):
    """The commit size does not change what is stored."""

    reference = None

    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix='trackstore-batching-')
        self.input = os.path.join(self.dir, 'small.jsonl')
        generate(6, 2, 5, self.input)

    def tearDown(self):
        shutil.rmtree(self.dir, ignore_errors=True)

    def load(self, batch_size):
        db = open_db('memory://')
        try:
            ingest(self.input, db, batch_size=batch_size,
                   rejects=os.path.join(self.dir, 'rejects.jsonl'))
            conn = db.open()
            try:
                return sessions_of(get_storage(conn))
            finally:
                conn.close()
        finally:
            db.close()

    @settings(max_examples=6, deadline=None)
    @given(st.integers(min_value=1, max_value=300))
    def test_any_batch_size(self, batch_size):
        if self.reference is None:
            self.reference = self.load(100000)
        self.assertEqual(self.load(batch_size), self.reference)
