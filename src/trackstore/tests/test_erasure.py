"""Erasure: after ``erase-user`` nothing finds the user, and after
``pack`` their data is not in the file either."""
import os
import shutil
import subprocess
import tempfile
import unittest

import hypothesis
import orjson
import transaction
from hypothesis import strategies as st

from trackstore.clickstream import ClickstreamDao
from trackstore.db import get_storage
from trackstore.db import open_db
from trackstore.erasure import erase_user
from trackstore.hitstore import hit_state
from trackstore.hitstore import store_hits
from trackstore.ingest import ingest
from trackstore.metrics import compute
from trackstore.retention import pack
from trackstore.sessions import Rules
from trackstore.sessions import parse_line
from trackstore.storage import TrackingStorage
from trackstore.tests import TRACKSTORE
from trackstore.tests import python_env
from trackstore.tests import stored_visits
from trackstore.tests.layers import ZEOServer
from trackstore.tests.layers import for_layers
from trackstore.tests.userdata import ERIN
from trackstore.tests.userdata import SECRET
from trackstore.tests.userdata import batch_consistent
from trackstore.tests.userdata import erin_hits
from trackstore.tests.userdata import fresh_load
from trackstore.tests.userdata import fresh_metrics
from trackstore.tests.userdata import generated_hits
from trackstore.tests.userdata import other_hits
from trackstore.tests.userdata import write_hits
from trackstore.tests.webserver import WebServer


API = '/api/v1/clickstream'


def erin_sessions(storage):
    """The stored sessions that are Erin's (hers or stitched to her)."""
    return [s for s in ClickstreamDao(storage).iter_records()
            if s['user_id'] == ERIN
            or s['search_meta'].get('customer') == ERIN]


def hit_ids(sessions):
    return {e['event_id'] for s in sessions for e in s['events']}


class EraseFromFile(unittest.TestCase):
    """A FileStorage in a temporary directory."""

    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix='trackstore-erase-')
        self.path = os.path.join(self.dir, 'Data.fs')
        self.hits = erin_hits() + other_hits() + generated_hits()
        self.source = write_hits(os.path.join(self.dir, 'hits.jsonl'),
                                 self.hits)
        self.db = open_db('file://' + self.path)
        ingest(self.source, self.db)
        self.conn = self.db.open()
        self.storage = get_storage(self.conn)

    def tearDown(self):
        transaction.abort()
        self.conn.close()
        self.db.close()
        shutil.rmtree(self.dir, ignore_errors=True)

    def data_file(self):
        with open(self.path, 'rb') as f:
            return f.read()

    def erase(self, *args, **kw):
        report = erase_user(self.storage, *args, **kw)
        transaction.commit()
        return report

    def test_nothing_finds_her(self):
        storage = self.storage
        dao = ClickstreamDao(storage)
        before = erin_sessions(storage)
        # her two customer visits and the anonymous one stitched to her
        self.assertEqual(len(before), 3)
        self.assertEqual(
            sum(1 for s in before if s['search_meta']['customer'] is None),
            1)
        others = [v for v in stored_visits(storage)
                  if v[0] not in {s['session_id'] for s in before}]
        report = self.erase(ERIN)
        self.assertEqual((report.sessions, report.hits), (3, 7))
        self.assertEqual(report.identities, 1)
        # no query, no DAO call
        self.assertEqual(storage.query(userName=ERIN), [])
        self.assertNotIn(ERIN, storage.getUserNames('clickstream'))
        for s in before:
            self.assertIsNone(dao.get_session(s['session_id']))
            self.assertEqual(
                storage.query(userName=s['session_id']), [])
        self.assertEqual(erin_sessions(storage), [])
        for track in storage.values():
            self.assertNotIn(ERIN, orjson.dumps(track.data).decode())
            self.assertNotIn(SECRET, orjson.dumps(track.data).decode())
        self.assertNotIn(ERIN, {c for c, _, _ in
                                hit_state(storage).customers.values()})
        # everyone else is as they were, and the batches add up
        self.assertEqual(stored_visits(storage), others)
        batch_consistent(self, storage)
        # the metrics are those of a database that never saw her hits
        gone = hit_ids(before)
        rest = [h for h in self.hits if str(h['id']) not in gone]
        self.assertEqual(len(rest), len(self.hits) - 7)
        fresh = fresh_load(self.dir, rest)
        self.assertEqual(
            (compute(storage), compute(storage, True), others), fresh)
        self.assertNotEqual(
            fresh[:2], fresh_metrics(self.dir, self.hits, 'all'))

    def test_loaded_again_she_does_not_come_back(self):
        self.erase(ERIN)
        self.conn.close()
        report = ingest(self.source, self.db)
        self.assertEqual(report.stored, 0)
        self.assertEqual(report.duplicates, report.read - report.rejected)
        self.conn = self.db.open()
        self.storage = get_storage(self.conn)
        self.assertEqual(erin_sessions(self.storage), [])
        self.assertEqual(self.storage.query(userName=ERIN), [])

    def test_new_hits_of_hers_are_stored(self):
        # Erasure is of what was stored: what she does later is new.
        self.erase(ERIN)
        later = [h for h in erin_hits(day=30, first_id=990000)
                 if h['event']['customer-id'] is not None]
        store_hits(self.storage, [parse_line(orjson.dumps(h), 1)
                                  for h in later], Rules())
        transaction.commit()
        self.assertEqual(len(erin_sessions(self.storage)), 2)
        batch_consistent(self, self.storage)

    def test_pack_removes_her_from_the_file(self):
        self.assertIn(SECRET.encode(), self.data_file())
        self.erase(ERIN)
        # unreachable, but still in the file's history
        self.assertIn(SECRET.encode(), self.data_file())
        self.conn.close()
        sizes = pack(self.db)
        self.conn = self.db.open()
        self.storage = get_storage(self.conn)
        self.assertNotIn(SECRET.encode(), self.data_file())
        self.assertFalse(os.path.exists(self.path + '.old'))
        self.assertLess(sizes[1], sizes[0])
        self.assertEqual(sizes[1], os.path.getsize(self.path))
        # what remains is intact
        batch_consistent(self, self.storage)
        self.assertGreater(compute(self.storage)['ordering_sessions'], 0)

    def test_commands(self):
        # trackstore erase-user, then trackstore pack, on the file
        self.conn.close()
        self.db.close()
        run = [TRACKSTORE + ['erase-user', ERIN, '--db', self.path],
               TRACKSTORE + ['pack', '--db', self.path]]
        out = [subprocess.run(args, capture_output=True, text=True,
                              env=python_env(), timeout=300)
               for args in run]
        for proc in out:
            self.assertEqual(proc.returncode, 0, proc.stderr)
        self.assertEqual(
            out[0].stdout, "user '%s': 3 sessions (7 hits), 0 other "
            "tracks and 1 identity links erased\n" % ERIN)
        self.assertRegex(out[1].stdout, r'^packed: \d+ bytes -> \d+ bytes')
        self.assertNotIn(SECRET.encode(), self.data_file())
        self.assertFalse(os.path.exists(self.path + '.old'))
        self.db = open_db('file://' + self.path)
        self.conn = self.db.open()
        self.assertEqual(erin_sessions(get_storage(self.conn)), [])

    def test_pack_keep_old(self):
        self.erase(ERIN)
        self.conn.close()
        pack(self.db, keep_old=True)
        self.conn = self.db.open()
        with open(self.path + '.old', 'rb') as f:
            self.assertIn(SECRET.encode(), f.read())
        self.assertNotIn(SECRET.encode(), self.data_file())

    def test_time_range(self):
        storage = self.storage
        before = erin_sessions(storage)
        week = min(s['created_at'] for s in before) + 3 * 86400
        report = self.erase(ERIN, after=week)
        self.assertEqual((report.sessions, report.hits), (1, 2))
        # the customer's first hit on her stamp is before the range:
        # the stitch stays
        self.assertEqual(report.identities, 0)
        left = erin_sessions(storage)
        self.assertEqual(
            sorted(s['session_id'] for s in left),
            sorted(s['session_id'] for s in before
                   if s['created_at'] < week))
        report = self.erase(ERIN, before=week)
        self.assertEqual((report.sessions, report.identities), (2, 1))
        self.assertEqual(erin_sessions(storage), [])
        batch_consistent(self, storage)

    def test_other_tracks_of_hers(self):
        storage = self.storage
        storage.saveUserTrack('survey', 0, ERIN, {'answer': SECRET})
        storage.saveUserTrack('survey', 0, '7002', {'answer': 'no'})
        transaction.commit()
        report = self.erase(ERIN)
        self.assertEqual(report.tracks, 1)
        self.assertEqual(storage.getUserNames('survey'), ['7002'])

    def test_unknown_user_and_bad_id(self):
        visits = stored_visits(self.storage)
        report = self.erase('nobody')
        self.assertEqual((report.sessions, report.tracks), (0, 0))
        self.assertEqual(stored_visits(self.storage), visits)
        for bad in ('', None, 7001):
            with self.assertRaises(ValueError):
                erase_user(self.storage, bad)


class EraseRange(unittest.TestCase):
    """Any time range erases exactly her sessions that started in it."""

    @hypothesis.settings(max_examples=25, deadline=None)
    @hypothesis.given(
        after=st.none() | st.integers(0, 12 * 86400),
        length=st.none() | st.integers(1, 12 * 86400))
    def test_any_range(self, after, length):
        db = open_db('memory://')
        try:
            conn = db.open()
            storage = get_storage(conn)
            hits = [parse_line(orjson.dumps(h), 1)
                    for h in erin_hits() + other_hits()]
            store_hits(storage, hits, Rules())
            transaction.commit()
            start = min(s['created_at'] for s in erin_sessions(storage))
            low = None if after is None else start - 3600 + after
            high = None if length is None else (
                (start - 3600 if low is None else low) + length)
            inside = {s['session_id'] for s in erin_sessions(storage)
                      if (low is None or s['created_at'] >= low)
                      and (high is None or s['created_at'] < high)}
            others = set(v[0] for v in stored_visits(storage)) - inside
            report = erase_user(storage, ERIN, low, high)
            transaction.commit()
            self.assertEqual(report.sessions, len(inside))
            self.assertEqual({v[0] for v in stored_visits(storage)},
                             others)
            batch_consistent(self, storage)
            conn.close()
        finally:
            transaction.abort()
            db.close()


class EraseAnySplit(unittest.TestCase):
    """Whatever order and loads her hits came in, erasing her leaves
    the visits of the others' hits alone."""

    @staticmethod
    def visits(batches):
        storage = TrackingStorage()
        for hits in batches:
            store_hits(storage, [parse_line(orjson.dumps(h), 1)
                                 for h in hits], Rules())
        return storage

    @hypothesis.settings(max_examples=30, deadline=None)
    @hypothesis.given(st.data())
    def test_any_split(self, data):
        hits = data.draw(st.permutations(
            erin_hits() + other_hits() + erin_hits(day=1, first_id=1)))
        cuts = sorted(data.draw(st.lists(
            st.integers(0, len(hits)), max_size=4)))
        bounds = [0] + cuts + [len(hits)]
        storage = self.visits(
            [hits[a:b] for a, b in zip(bounds, bounds[1:])])
        erase_user(storage, ERIN)
        rest = [h for h in hits if h['event']['customer-id'] != ERIN
                and h['event']['ip'] != '10.9.9.9']
        self.assertEqual(stored_visits(storage),
                         stored_visits(self.visits([rest])))
        batch_consistent(self, storage)


class EraseUnderTheServer(unittest.TestCase):
    """``trackstore erase-user`` on a ZEO database a running server
    reads: no route finds her afterwards and the cached metrics are
    computed again."""

    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix='trackstore-erase-web-')
        self.zeo = ZEOServer(os.path.join(self.dir, 'Data.fs')).start()
        self.hits = erin_hits() + other_hits() + generated_hits()
        source = write_hits(os.path.join(self.dir, 'hits.jsonl'),
                            self.hits)
        db = open_db(self.zeo.uri)
        try:
            ingest(source, db)
            conn = db.open()
            self.erins = erin_sessions(get_storage(conn))
            conn.close()
        finally:
            db.close()
        self.server = WebServer(self.zeo.uri,
                                log=self.dir + '/serve.log').start()

    def tearDown(self):
        self.server.stop()
        self.zeo.stop()
        shutil.rmtree(self.dir, ignore_errors=True)

    def metrics(self, http):
        r = http.get('/metrics/orders',
                     params={'include_anonymous': 'true'})
        r.raise_for_status()
        return r.json()

    def test_no_route_finds_her(self):
        with self.server.client() as http:
            sid = self.erins[0]['session_id']
            self.assertEqual(http.get(API + '/session', params={
                'session_id': sid}).status_code, 200)
            cached = self.metrics(http)
            proc = subprocess.run(
                TRACKSTORE + ['erase-user', ERIN, '--db', self.zeo.uri,
                              '--json'],
                capture_output=True, text=True, env=python_env(),
                timeout=300)
            self.assertEqual(proc.returncode, 0, proc.stderr)
            self.assertEqual(orjson.loads(proc.stdout)['sessions'], 3)
            for s in self.erins:
                sid = {'session_id': s['session_id']}
                self.assertEqual(http.get(
                    API + '/session', params=sid).status_code, 404)
                self.assertEqual(http.post(
                    API + '/session/irrelevant', json=sid).status_code, 404)
                self.assertEqual(http.post(
                    API + '/internal/session/use-for-improvement',
                    json=sid).status_code, 404)
            page = http.get(API + '/internal/batch/sessions', params={
                'batch_id': '1', 'limit': 1000})
            page.raise_for_status()
            self.assertNotIn(ERIN, page.text)
            self.assertNotIn(SECRET, page.text)
            self.assertGreater(len(page.json()['sessions']), 10)
            dashboard = http.get('/api/v1/dashboard')
            dashboard.raise_for_status()
            self.assertNotIn(SECRET, dashboard.text)
            metrics = self.metrics(http)
            self.assertNotEqual(metrics, cached)
        gone = hit_ids(self.erins)
        fresh = fresh_metrics(
            self.dir, [h for h in self.hits if str(h['id']) not in gone])
        self.assertEqual(metrics, orjson.loads(orjson.dumps(fresh[1])))


class EraseAndPrune:
    """On every storage: erase a user, prune the archived batch and
    pack; another connection then finds neither, and what remains adds
    up."""

    def storage(self, conn):
        return get_storage(conn, name=self.name)

    def test_erase_prune_pack(self):
        from trackstore.retention import prune
        conn = self.db.open()
        storage = self.storage(conn)
        store_hits(storage, [parse_line(orjson.dumps(h), 1)
                             for h in erin_hits() + other_hits()], Rules())
        dao = ClickstreamDao(storage)
        dao.release_batch('r1')
        dao.update_batch_status('1', 'archived')
        store_hits(storage, [parse_line(orjson.dumps(h), 1)
                             for h in other_hits(day=20, first_id=1000)],
                   Rules())
        transaction.commit()
        self.assertEqual(erase_user(storage, ERIN).sessions, 3)
        transaction.commit()
        # everything in the archived batch is older than 2286
        self.assertEqual(prune(storage, 1e10).batches, 1)
        transaction.commit()
        conn.close()
        pack(self.db)
        conn = self.db.open()
        try:
            storage = self.storage(conn)
            self.assertEqual(storage.query(userName=ERIN), [])
            self.assertEqual(erin_sessions(storage), [])
            self.assertIsNone(ClickstreamDao(storage).get_batch('1'))
            # the second load's: 3 visits of each customer, 1 anonymous
            self.assertEqual(len(stored_visits(storage)), 7)
            batch_consistent(self, storage)
        finally:
            conn.close()


for_layers(EraseAndPrune, globals())
