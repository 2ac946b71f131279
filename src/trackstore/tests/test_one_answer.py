"""One answer for any input: whatever the order of the hits and however
they are split into loads, the stored visits are those of the batch
rule over all the hits loaded (identities and stitching included)."""
import os
import random
import shutil
import subprocess
import tempfile
import unittest

from hypothesis import HealthCheck
from hypothesis import given
from hypothesis import settings
from hypothesis import strategies as st

from trackstore.clickstream.dao import ClickstreamDao
from trackstore.clickstream.records import visits_version
from trackstore.clickstream.visits import stored_session_id
from trackstore.db import get_storage
from trackstore.db import open_db
from trackstore.hitstore import store_hits
from trackstore.ingest import IngestReport
from trackstore.ingest import Loader
from trackstore.ingest import _Stream
from trackstore.sessions import Rules
from trackstore.sessions import make_hit
from trackstore.sessions import sessionize
from trackstore.storage import TrackingStorage
from trackstore.tests import TRACKSTORE
from trackstore.tests import python_env
from trackstore.tests import stored_visits
from trackstore.tests import visits_at


T0 = 1651104000.0   # 2022-04-28T00:00:00Z
RULES = Rules(timeout=30 * 60)


def expected(hits):
    """The batch rule's visits over ``hits``, as stored signatures."""
    return sorted(
        (stored_session_id(s), s.client, s.user_id, tuple(
            h.idkey for h in s.hits))
        for s in sessionize(hits, rules=RULES))


@st.composite
def hit_sets(draw):
    """Hits of a few customers and anonymous visitors sharing a few
    session stamps (so owners change and logins stitch), with client
    ids on some, at minutes that make gaps near the timeout likely."""
    count = draw(st.integers(1, 30))
    hits = []
    for n in range(count):
        minute = draw(st.integers(0, 200))
        second = draw(st.sampled_from([0, 1, 59]))
        customer = draw(st.sampled_from([None, None, 'c1', 'c2']))
        stamp = draw(st.sampled_from(['s1', 's2', 's3']))
        client = draw(st.sampled_from([None, None, 'k1', 'k2']))
        kind = draw(st.sampled_from(['page_view', 'search',
                                     'placed_order']))
        kw = {'session_stamp': stamp}
        if client is not None:
            kw['client_id'] = client
        hits.append(make_hit(n + 1, T0 + minute * 60 + second, type=kind,
                             customer=customer, **kw))
    return hits


def load_in_parts(parts):
    storage = TrackingStorage()
    for part in parts:
        store_hits(storage, part, RULES)
    return storage


class OneAnswer(unittest.TestCase):

    @settings(max_examples=150, deadline=None,
              suppress_health_check=[HealthCheck.too_slow])
    @given(hits=hit_sets(), seed=st.integers(0, 2 ** 32),
           loads=st.integers(1, 4))
    def test_any_order_any_split(self, hits, seed, loads):
        rng = random.Random(seed)
        shuffled = list(hits)
        rng.shuffle(shuffled)
        cuts = sorted(rng.randrange(len(hits) + 1)
                      for _ in range(loads - 1))
        bounds = [0] + cuts + [len(hits)]
        parts = [shuffled[a:b] for a, b in zip(bounds, bounds[1:])]
        storage = TrackingStorage()
        before = ([], visits_version(storage))
        for part in parts:
            store_hits(storage, part, RULES)
            after = (stored_visits(storage), visits_version(storage))
            # Reports over the visits are kept while this stays put.
            if after[0] != before[0]:
                self.assertGreater(after[1], before[1])
            before = after
        self.assertEqual(before[0], expected(hits))

    def test_a_later_login_stitches_what_was_stored_visits(self):
        anonymous = make_hit(1, T0, session_stamp='s1')
        login = make_hit(2, T0 + 60, customer='c1', session_stamp='s1')
        storage = load_in_parts([[anonymous], [login]])
        users = {s[1]: s[2] for s in stored_visits(storage)}
        self.assertEqual(users, {'a:s1': 'c1', 'c:c1': 'c1'})

    def test_an_earlier_hit_changes_the_owner(self):
        # k2 is seen on s1 first in the second load, but its hit is
        # earlier: s1 belongs to k2, and k1's hit joins k2's visit.
        late = make_hit(1, T0 + 60, session_stamp='s1', client_id='k1')
        early = make_hit(2, T0, session_stamp='s1', client_id='k2')
        storage = load_in_parts([[late], [early]])
        self.assertEqual(stored_visits(storage), expected([late, early]))
        self.assertEqual([s[1] for s in stored_visits(storage)], ['a:k2'])

    def test_a_hit_bridging_two_visits_merges_them(self):
        first = make_hit(1, T0, customer='c1')
        last = make_hit(3, T0 + 50 * 60, customer='c1')
        bridge = make_hit(2, T0 + 25 * 60, customer='c1')
        storage = load_in_parts([[first, last], [bridge]])
        self.assertEqual(len(stored_visits(storage)), 1)
        self.assertEqual(stored_visits(storage)[0][3], ('1', '2', '3'))
        self.assertEqual(len(storage), 1)


class Released(unittest.TestCase):
    """A released batch never changes: a hit that would join one of its
    visits is stored as a late visit of its own, counted as late."""

    def test_late_hit(self):
        storage = TrackingStorage()
        store_hits(storage, [make_hit(1, T0, customer='c1')], RULES)
        dao = ClickstreamDao(storage)
        dao.release_batch('r1')
        counts = store_hits(
            storage, [make_hit(2, T0 + 60, customer='c1'),
                      make_hit(3, T0 + 5 * 3600, customer='c1')], RULES)
        self.assertEqual(counts['late'], 1)
        released = dao.get_batch_sessions('1')
        self.assertEqual([[e.event_id for e in s.events]
                          for s in released], [['1']])
        collecting = dao.get_batch_sessions('2')
        self.assertEqual(
            sorted((s.search_meta['late'], [e.event_id for e in s.events])
                   for s in collecting), [(False, ['3']), (True, ['2'])])

    def test_rerun_stores_nothing(self):
        storage = TrackingStorage()
        hits = [make_hit(n, T0 + n * 60, customer='c1')
                for n in range(5)]
        store_hits(storage, hits, RULES)
        before = stored_visits(storage)
        counts = store_hits(storage, hits, RULES)
        self.assertEqual(counts['stored'], 0)
        self.assertEqual(counts['duplicates'], 5)
        self.assertEqual(stored_visits(storage), before)


class ShuffledFile(unittest.TestCase):
    """A user's view: a generated file and its shuffled copy, loaded
    with the command, give exactly the same ``metrics --json``."""

    def setUp(self):
        self.tmp = tempfile.mkdtemp()
        self.addCleanup(shutil.rmtree, self.tmp)

    def run_cli(self, *args):
        return subprocess.run(
            TRACKSTORE + list(args), check=True, capture_output=True,
            env=python_env(), cwd=self.tmp).stdout

    def test_shuffled_copy(self):
        path = os.path.join(self.tmp, 'hits.jsonl')
        self.run_cli('generate', '--customers', '60', '--days', '3',
                     '--seed', '9', '-o', path)
        with open(path, 'rb') as f:
            lines = f.read().splitlines(True)
        random.Random(1).shuffle(lines)
        half = len(lines) // 2
        for name, part in (('b', lines[half:]), ('a', lines[:half])):
            with open(os.path.join(self.tmp, name), 'wb') as f:
                f.writelines(part)
        one = 'file://' + os.path.join(self.tmp, 'one.fs')
        two = os.path.join(self.tmp, 'two.fs')
        self.run_cli('ingest', path, '--db', one)
        # The shuffled halves, the second half first, with a memory
        # budget so small that the sort spills runs to disk.
        for name in ('b', 'a'):
            self.run_cli('ingest', os.path.join(self.tmp, name), '--db',
                         'file://' + two, '--memory', '64K')
        metrics = [self.run_cli('metrics', '--json', '--db', uri)
                   for uri in (one, 'file://' + two)]
        self.assertEqual(metrics[0], metrics[1])
        self.assertIn(b'"ordering_sessions"', metrics[0])
        # A live stream of the shuffled lines on standard input, with a
        # lateness far smaller than the disorder: the same sessions.
        three = 'file://' + os.path.join(self.tmp, 'three.fs')
        subprocess.run(
            TRACKSTORE + ['ingest', '-', '--follow', '--lateness', '1m',
                          '--batch-size', '200', '--db', three],
            input=b''.join(lines), check=True, capture_output=True,
            env=python_env(), cwd=self.tmp)
        self.assertEqual(
            self.run_cli('metrics', '--json', '--db', three), metrics[0])
        self.assertEqual(visits_at(three), visits_at(one))


class TwoLiveStreams(unittest.TestCase):
    """Two ``--follow`` streams into one database at once keep their
    open sessions apart: one that stops and resumes where it committed
    loses none of its hits, whatever the other one stored meanwhile."""

    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix='trackstore-streams-')
        self.addCleanup(shutil.rmtree, self.tmp, True)
        self.db = open_db('file://' + os.path.join(self.tmp, 'Data.fs'))
        self.addCleanup(self.db.close)
        self.report = IngestReport('-')

    def start(self, name):
        loader = Loader(self.db, batch_size=5)
        self.addCleanup(loader.close)
        return _Stream(loader, name)

    def test_a_stream_resumes_with_its_own_open_sessions(self):
        mine = [make_hit(n, T0 + n * 60, session_stamp='s1',
                         client_id='k1') for n in range(1, 11)]
        theirs = [make_hit(n, T0 + n * 60, session_stamp='s2',
                           client_id='k2') for n in range(11, 21)]
        a, b = self.start('a'), self.start('b')
        b.add(theirs[0], self.report)
        # 'a' commits after its 5th hit, its visit still open, and
        # stops there, while 'b' goes on and stores all of its hits.
        for hit in mine[:5]:
            a.add(hit, self.report)
        for hit in theirs[1:]:
            b.add(hit, self.report)
        b.finish(self.report)
        # 'a' is started again and given the hits it had not committed.
        a = self.start('a')
        for hit in mine[5:]:
            a.add(hit, self.report)
        a.finish(self.report)
        conn = self.db.open()
        try:
            self.assertEqual(stored_visits(get_storage(conn)),
                             expected(mine + theirs))
        finally:
            conn.close()
