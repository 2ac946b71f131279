"""Retention: ``prune`` drops archived batches and finished runs older
than a date, ``pack`` shrinks the file, what remains is unchanged."""
import calendar
import os
import shutil
import subprocess
import tempfile
import time
import unittest

import hypothesis
import orjson
import transaction
from hypothesis import strategies as st

from trackstore.clickstream import ClickstreamDao
from trackstore.clickstream.records import clickstream_records
from trackstore.db import get_storage
from trackstore.db import open_db
from trackstore.hitstore import store_hits
from trackstore.ingest import ingest
from trackstore.metrics import compute
from trackstore.retention import apply_retention
from trackstore.retention import pack
from trackstore.retention import parse_time
from trackstore.retention import prune
from trackstore.retention import retention_of
from trackstore.retention import set_retention
from trackstore.sessions import Rules
from trackstore.sessions import parse_line
from trackstore.storage import TrackingStorage
from trackstore.tests import TRACKSTORE
from trackstore.tests import python_env
from trackstore.tests import stored_visits
from trackstore.tests.userdata import batch_consistent
from trackstore.tests.userdata import fresh_load
from trackstore.tests.userdata import generated_hits
from trackstore.tests.userdata import hit
from trackstore.tests.userdata import minutes
from trackstore.tests.userdata import other_hits
from trackstore.tests.userdata import write_hits


def epoch(text):
    return calendar.timegm(time.strptime(text, '%Y-%m-%dT%H:%M'))


def hit_time(h):
    return epoch(h['event']['timestamp'][:16])


def between(hits, low, high):
    """The hits from ``low`` to before ``high`` (UTC text)."""
    return [h for h in hits if epoch(low) <= hit_time(h) < epoch(high)]


def unstitched(visits):
    """The visits without the user of anonymous ones."""
    return [v if v[1].startswith('c:') else v[:2] + (None,) + v[3:]
            for v in visits]


class PruneAndPack(unittest.TestCase):
    """Three loads: an archived batch, a released one, a collecting
    one; the cuts between them leave hours without hits, so no visit
    spans two loads."""

    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix='trackstore-retain-')
        self.path = os.path.join(self.dir, 'Data.fs')
        hits = generated_hits(customers=25, days=6, seed=12) + other_hits()
        self.old = between(hits, '2022-04-01T00:00', '2022-04-30T00:00')
        self.middle = between(hits, '2022-04-30T03:00', '2022-05-02T00:00')
        self.new = between(hits, '2022-05-02T03:00', '2022-06-01T00:00')
        self.db = open_db('file://' + self.path)
        self.load(self.old, 'old')
        self.dao_call(lambda dao: dao.release_batch('r1'))
        self.dao_call(lambda dao: dao.update_batch_status('1', 'archived'))
        self.load(self.middle, 'middle')
        self.dao_call(lambda dao: dao.release_batch('r2'))
        self.load(self.new, 'new')
        self.conn = self.db.open()
        self.storage = get_storage(self.conn)

    def tearDown(self):
        transaction.abort()
        self.conn.close()
        self.db.close()
        shutil.rmtree(self.dir, ignore_errors=True)

    def load(self, hits, name):
        return ingest(write_hits(os.path.join(self.dir, name + '.jsonl'),
                                 hits), self.db)

    def dao_call(self, fn):
        conn = self.db.open()
        try:
            result = fn(ClickstreamDao(get_storage(conn)))
            transaction.commit()
            return result
        finally:
            conn.close()

    def test_prune_then_pack(self):
        storage = self.storage
        dao = ClickstreamDao(storage)
        self.assertEqual(
            [(b.batch_id, b.status.value) for b in map(
                dao.get_batch, ('1', '2', '3'))],
            [('1', 'archived'), ('2', 'released'), ('3', 'collecting')])
        old_sessions = dao.get_batch('1').session_counter
        self.assertGreater(old_sessions, 20)
        kept = [v for v in stored_visits(storage)
                if v[0] not in {s.session_id for s in
                                dao.get_batch_sessions('1')}]
        self.conn.close()
        # the baseline: the file with no history to drop
        pack(self.db)
        baseline = os.path.getsize(self.path)
        self.conn = self.db.open()
        storage = self.storage = get_storage(self.conn)
        dao = ClickstreamDao(storage)
        report = prune(storage, parse_time('2022-05-01'))
        transaction.commit()
        self.assertEqual((report.batches, report.sessions, report.runs),
                         (1, old_sessions, 0))
        # the released batch is older than the date but still in use
        self.assertIsNone(dao.get_batch('1'))
        self.assertEqual(dao.get_batch_sessions('1'), [])
        self.assertEqual(storage.query(taskId='clickstream', runId=1), [])
        self.assertIsNone(storage.getRun('clickstream', 1))
        self.assertNotIn('r1', clickstream_records(storage).releases)
        self.assertEqual(stored_visits(storage), kept)
        batch_consistent(self, storage)
        # the metrics of what remains are those of its hits alone
        self.assertGreater(compute(storage)['ordering_sessions'], 5)
        fresh = fresh_load(self.dir, self.middle + self.new)
        self.assertEqual(compute(storage), fresh[0])
        # the same visits; an anonymous one may have been stitched to
        # a customer by a login on its device in the pruned data
        self.assertEqual(unstitched(stored_visits(storage)),
                         unstitched(fresh[2]))
        self.conn.close()
        sizes = pack(self.db)
        self.conn = self.db.open()
        self.assertLess(sizes[1], baseline)
        self.assertEqual(sizes[1], os.path.getsize(self.path))
        self.assertEqual(stored_visits(get_storage(self.conn)), kept)

    def test_a_batch_with_newer_sessions_stays(self):
        visits = stored_visits(self.storage)
        report = prune(self.storage, parse_time('2022-04-29T12:00'))
        self.assertEqual((report.batches, report.sessions), (0, 0))
        self.assertEqual(stored_visits(self.storage), visits)

    def test_old_data_loaded_again_does_not_come_back(self):
        prune(self.storage, parse_time('2022-05-01'))
        transaction.commit()
        visits = stored_visits(self.storage)
        self.conn.close()
        report = self.load(self.old, 'old')
        self.conn = self.db.open()
        self.storage = get_storage(self.conn)
        self.assertEqual(report.stored, 0)
        self.assertEqual(stored_visits(self.storage), visits)

    def test_retention_at_each_load(self):
        self.assertIsNone(retention_of(self.storage))
        set_retention(self.storage, 90 * 86400)
        transaction.commit()
        self.conn.close()
        report = self.load(other_hits(day=40, first_id=700000), 'later')
        self.assertEqual(report.pruned.batches, 1)
        self.assertIn('pruned before', report.summary())
        self.assertEqual(report.as_dict()['pruned']['batches'], 1)
        self.assertGreater(report.stored, 0)
        # nothing left to prune: the next load prunes nothing
        report = self.load(other_hits(day=41, first_id=710000), 'next')
        self.assertEqual(report.pruned.batches, 0)
        self.conn = self.db.open()
        storage = get_storage(self.conn)
        set_retention(storage, None)
        transaction.commit()
        self.conn.close()
        report = self.load(other_hits(day=42, first_id=720000), 'last')
        self.assertIsNone(report.pruned)
        self.assertNotIn('pruned', report.summary())
        self.conn = self.db.open()


class PruneRuns(unittest.TestCase):
    """Runs of other tasks, and run ids, on a storage of its own."""

    def test_finished_runs(self):
        storage = TrackingStorage()
        old = epoch('2022-01-01T00:00')
        storage.saveUserTrack('jobs', 0, 'u1', {'n': 1}, timeStamp=old)
        storage.saveUserTrack('jobs', 0, 'u2', {'n': 2}, timeStamp=old + 9)
        storage.stopRun('jobs')
        storage.saveUserTrack('jobs', 0, 'u1', {'n': 3}, timeStamp=old + 99)
        storage.saveUserTrack('live', 0, 'u3', {'n': 4}, timeStamp=old)
        report = prune(storage, old + 1000)
        # the stopped run; the current ones are not finished
        self.assertEqual((report.runs, report.tracks), (1, 2))
        self.assertEqual([t.data['n'] for t in storage.values()], [3, 4])
        self.assertEqual(storage.getUserNames('jobs'), ['u1'])
        self.assertEqual([r.id for r in storage.getRuns()], [2, 3])

    def test_run_ids_are_not_reused(self):
        storage = TrackingStorage()
        dao = ClickstreamDao(storage)
        dao.register_session({'session_id': 's1', 'search_query': 'q',
                              'created_at': 1000, 'search_results': []})
        dao.release_batch('r')
        dao.update_batch_status('1', 'archived')
        self.assertEqual(prune(storage, 2000).batches, 1)
        self.assertEqual(storage.getRuns(), [])
        got = dao.register_session({
            'session_id': 's2', 'search_query': 'q', 'created_at': 1500,
            'search_results': []})
        self.assertEqual(got.batch_id, '2')

    def test_remove_batch(self):
        storage = TrackingStorage()
        dao = ClickstreamDao(storage)
        dao.register_session({'session_id': 's1', 'search_query': 'q',
                              'created_at': 1000, 'search_results': []})
        with self.assertRaises(ValueError):
            dao.remove_batch('1')
        self.assertIsNone(dao.remove_batch('9'))
        self.assertIsNone(dao.remove_batch('x'))
        self.assertIsNone(storage.removeRun('other', 1))
        dao.update_batch_status('1', 'released')
        self.assertEqual(dao.remove_batch('1'), 1)
        self.assertEqual(len(storage), 0)
        self.assertIsNone(dao.get_session('s1'))

    def test_no_longer_late_once_pruned(self):
        def load(storage, *hits):
            return store_hits(storage, [
                parse_line(orjson.dumps(h), 1) for h in hits], Rules())
        first = hit(1, 'search', minutes(0), '7002', query='mug')
        near = hit(2, 'page_view', minutes(10), '7002', page='/')
        for pruned in (False, True):
            storage = TrackingStorage()
            dao = ClickstreamDao(storage)
            load(storage, first)
            dao.release_batch('r')
            dao.update_batch_status('1', 'archived')
            if pruned:
                self.assertEqual(prune(storage, epoch(
                    '2022-05-01T00:00')).sessions, 1)
            self.assertEqual(load(storage, near)['late'], int(not pruned))
            self.assertEqual(
                [[e['event_id'] for e in s['events']]
                 for s in dao.iter_records()],
                [['2']] if pruned else [['1'], ['2']])

    @hypothesis.settings(max_examples=60, deadline=None)
    @hypothesis.given(
        batches=st.lists(st.tuples(
            st.lists(st.integers(0, 100), min_size=1, max_size=4),
            st.sampled_from(['released', 'fine_tuning', 'archived'])),
            min_size=1, max_size=5),
        before=st.integers(0, 110))
    def test_exactly_the_old_archived_batches(self, batches, before):
        storage = TrackingStorage()
        dao = ClickstreamDao(storage)
        n = 0
        expected = {}
        for i, (times, status) in enumerate(batches, 1):
            for t in times:
                n += 1
                dao.register_session({
                    'session_id': 's%d' % n, 'search_query': 'q',
                    'created_at': t, 'search_results': []})
            dao.release_batch('r%d' % i)
            dao.update_batch_status(str(i), status)
            gone = status == 'archived' and max(times) < before
            expected[str(i)] = None if gone else len(times)
        dao.register_session({'session_id': 'open', 'search_query': 'q',
                              'created_at': 0, 'search_results': []})
        report = prune(storage, before)
        self.assertEqual(report.batches, sum(
            1 for v in expected.values() if v is None))
        for batch_id, count in expected.items():
            batch = dao.get_batch(batch_id)
            self.assertEqual(
                None if batch is None else batch.session_counter, count)
        self.assertEqual(len(storage), sum(
            v for v in expected.values() if v) + 1)
        batch_consistent(self, storage)


class Commands(unittest.TestCase):
    """``trackstore prune`` and ``trackstore pack``."""

    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix='trackstore-retain-cli-')
        write_hits(os.path.join(self.dir, 'hits.jsonl'),
                   other_hits() + generated_hits(10, 2, 5))

    def tearDown(self):
        shutil.rmtree(self.dir, ignore_errors=True)

    def run_cli(self, *args, ok=True):
        proc = subprocess.run(
            TRACKSTORE + list(args), cwd=self.dir, capture_output=True,
            text=True, timeout=600, env=python_env())
        if ok:
            self.assertEqual(proc.returncode, 0, proc.stderr)
        return proc

    def archive_first_batch(self):
        db = open_db('file://' + os.path.join(self.dir, 'Data.fs'))
        try:
            conn = db.open()
            dao = ClickstreamDao(get_storage(conn))
            dao.release_batch('r1')
            dao.update_batch_status('1', 'archived')
            transaction.commit()
            conn.close()
        finally:
            db.close()

    def test_prune_keep_each_load_and_pack(self):
        self.run_cli('ingest', 'hits.jsonl', '--db', 'Data.fs')
        self.archive_first_batch()
        out = self.run_cli('prune', '--db', 'Data.fs', '--keep', '90d',
                           '--each-load', '--json').stdout
        self.assertEqual(orjson.loads(out)['batches'], 1)
        write_hits(os.path.join(self.dir, 'more.jsonl'),
                   other_hits(day=3, first_id=600000))
        self.run_cli('ingest', 'more.jsonl', '--db', 'Data.fs')
        out = orjson.loads(self.run_cli(
            'ingest', 'hits.jsonl', '--db', 'Data.fs', '--json').stdout)
        self.assertEqual(out['stored'], 0)
        self.assertEqual(out['pruned']['batches'], 0)
        out = self.run_cli('pack', '--db', 'Data.fs').stdout
        self.assertRegex(out, r'^packed: \d+ bytes -> \d+ bytes$')
        self.assertFalse(os.path.exists(
            os.path.join(self.dir, 'Data.fs.old')))
        self.run_cli('prune', '--db', 'Data.fs', '--off')
        out = orjson.loads(self.run_cli(
            'ingest', 'more.jsonl', '--db', 'Data.fs', '--json').stdout)
        self.assertIsNone(out['pruned'])

    def test_bad_options(self):
        self.run_cli('ingest', 'hits.jsonl', '--db', 'Data.fs')
        for args, message in [
                ((), 'either --before or --keep'),
                (('--before', '2022-01-01', '--keep', '1d'),
                 'either --before or --keep'),
                (('--before', 'May 1st'), 'not a UTC date or time'),
                (('--keep', '1d', '--off'), '--off takes no other'),
                (('--before', '2022-01-01', '--each-load'),
                 '--each-load needs --keep'),
                (('--keep', 'soon'), '--keep')]:
            proc = self.run_cli('prune', '--db', 'Data.fs', *args,
                                ok=False)
            self.assertEqual(proc.returncode, 2, args)
            self.assertIn(message, proc.stderr, args)
        proc = self.run_cli('prune', '--db', 'none.fs', '--keep', '1d',
                            ok=False)
        self.assertEqual(proc.returncode, 1)
        self.assertIn('--db', proc.stderr)
        self.assertFalse(os.path.exists(os.path.join(self.dir, 'none.fs')))
        proc = self.run_cli('erase-user', '7002', '--db', 'Data.fs',
                            '--after', '2022-05-01', '--before',
                            '2022-04-01', ok=False)
        self.assertEqual(proc.returncode, 2)

    def test_apply_retention_without_setting(self):
        self.assertIsNone(apply_retention(TrackingStorage()))
        with self.assertRaises(ValueError):
            set_retention(TrackingStorage(), 0)
