"""The streaming engine: ticks, pings, lateness, caps, compaction,
identities, late hits, checkpoints, closers; and its agreement with the
batch sessionizer."""
import io
import os
import pickle
import random
import shutil
import tempfile
import unittest

import transaction
from hypothesis import given
from hypothesis import settings
from hypothesis import strategies as st
from zope.interface.verify import verifyObject

from trackstore.clickstream.visits import stored_session_id
from trackstore.clickstream.visits import to_clickstream
from trackstore.hitstore import StoringCloser
from trackstore.interfaces import ICloser
from trackstore.sessions import CollectingCloser
from trackstore.sessions import Identities
from trackstore.sessions import PrintingCloser
from trackstore.sessions import Reject
from trackstore.sessions import Rules
from trackstore.sessions import StreamEngine
from trackstore.sessions import generate
from trackstore.sessions import make_hit
from trackstore.sessions import parse_line
from trackstore.sessions import read_records
from trackstore.sessions import sessionize


T0 = 1651104000.0   # 2022-04-28T00:00:00Z
US = 10**6
MIN = 60.0
TIMEOUT_US = 30 * 60 * US


def hit(id, offset, customer='c1', **kw):
    return make_hit(id, T0 + offset, customer=customer, **kw)


def ids(sessions):
    return [[h.id for h in s.hits] for s in sessions]


def signatures(sessions):
    return sorted(s.signature() for s in sessions)


_GENERATED = {}


def generated_hits(customers=150, days=3, seed=3):
    key = (customers, days, seed)
    if key not in _GENERATED:
        out = io.BytesIO()
        generate(customers=customers, days=days, seed=seed, out=out)
        hits = []
        for lineno, raw in read_records(io.BytesIO(out.getvalue())):
            h = parse_line(raw, lineno)
            if h.__class__ is not Reject:
                hits.append(h)
        _GENERATED[key] = hits
    return _GENERATED[key]


class TickTests(unittest.TestCase):

    def test_exact_close_with_a_microsecond_tick(self):
        closer = CollectingCloser()
        engine = StreamEngine(closer, lateness=0, tick=1e-6)
        h = hit(1, 0)
        engine.add(h)
        engine.ping_us(h.us + TIMEOUT_US)
        self.assertEqual(closer.sessions, [])       # exactly the timeout
        engine.ping_us(h.us + TIMEOUT_US + 1)
        self.assertEqual(ids(closer.sessions), [[1]])
        self.assertEqual(closer.sessions[0].reason, 'timeout')
        self.assertEqual(engine.open_count, 0)

    def test_buckets_only_find_candidates(self):
        # with one-minute buckets a session closes at the first tick
        # after its expiry, never before it
        closer = CollectingCloser()
        engine = StreamEngine(closer, lateness=0, tick=60)
        h = hit(1, 0.5)
        engine.add(h)
        expiry = h.us + TIMEOUT_US
        for t in range(h.us, expiry + 1, 7 * US):
            engine.ping_us(t)
        engine.ping_us(expiry)
        self.assertEqual(closer.sessions, [])
        engine.ping_us(expiry + 60 * US + 1)
        self.assertEqual(ids(closer.sessions), [[1]])

    def test_later_hits_move_the_expiry(self):
        closer = CollectingCloser()
        engine = StreamEngine(closer, lateness=0, tick=1e-6)
        engine.add(hit(1, 0))
        engine.add(hit(2, 20 * MIN))
        engine.ping(T0 + 45 * MIN)      # past the first hit's expiry
        self.assertEqual(closer.sessions, [])
        engine.ping(T0 + 50 * MIN)      # exactly the second's
        self.assertEqual(closer.sessions, [])
        engine.ping(T0 + 50 * MIN + 1e-6)
        self.assertEqual(ids(closer.sessions), [[1, 2]])

    def test_hits_move_time_too(self):
        closer = CollectingCloser()
        engine = StreamEngine(closer, lateness=0, tick=1)
        engine.add(hit(1, 0, 'a'))
        engine.add(hit(2, 2 * 3600, 'b'))   # another client, 2 h later
        self.assertEqual(ids(closer.sessions), [[1]])

    def test_event_time_not_wall_clock(self):
        # data from 2022: nothing closes until hits or pings say so
        closer = CollectingCloser()
        engine = StreamEngine(closer)
        engine.add(hit(1, 0))
        self.assertEqual(closer.sessions, [])
        self.assertEqual(engine.stats()['held'] + engine.open_count, 1)

    def test_duplicates_are_not_the_engines_business(self):
        # deduplication by hit id is the loader's job; the engine takes
        # a repeated hit like any other and does not trip over it
        closer = CollectingCloser()
        engine = StreamEngine(closer, lateness=60)
        engine.add(hit(1, 0))
        engine.add(hit(1, 0))
        engine.flush()
        self.assertEqual(ids(closer.sessions), [[1, 1]])

    def test_lateness_holds_hits_back(self):
        closer = CollectingCloser()
        engine = StreamEngine(closer, lateness=60, tick=1)
        engine.add(hit(2, 100))
        self.assertEqual(engine.held, 1)
        engine.add(hit(1, 50))          # 50 s late: within the lateness
        engine.ping(T0 + 100 + 60)      # the watermark reaches 100
        self.assertEqual(engine.held, 1)
        engine.ping(T0 + 100 + 61)
        self.assertEqual(engine.held, 0)
        engine.ping(T0 + 100 + 60 + 30 * MIN + 2)
        self.assertEqual(ids(closer.sessions), [[1, 2]])
        self.assertEqual(engine.late, 0)


class CapTests(unittest.TestCase):

    def test_hit_at_the_events_cap_closes_at_once(self):
        closer = CollectingCloser()
        engine = StreamEngine(closer, rules=Rules(max_events=3), lateness=0)
        for i in range(3):
            engine.add(hit(i, i))
        # the latest hit waits until time moves past it (hits of the
        # same microsecond may still come)
        self.assertEqual(engine.held, 1)
        engine.ping(T0 + 2.000001)
        self.assertEqual(ids(closer.sessions), [[0, 1, 2]])
        self.assertEqual(closer.sessions[0].reason, 'max_events')
        engine.add(hit(3, 3))
        engine.flush()
        self.assertEqual(ids(closer.sessions), [[0, 1, 2], [3]])
        self.assertEqual(engine.capped_events, 1)

    def test_length_cap_closes_on_a_tick(self):
        closer = CollectingCloser()
        engine = StreamEngine(closer, rules=Rules(max_length='1h'),
                              lateness=0, tick=1)
        for i in range(4):
            engine.add(hit(i, 20 * MIN * i))   # 0 .. 60 min
        engine.ping(T0 + 3600 + 2)
        self.assertEqual(ids(closer.sessions), [[0, 1, 2, 3]])
        self.assertEqual(closer.sessions[0].reason, 'max_length')
        self.assertEqual(engine.capped_length, 1)

    def test_length_cap_on_a_hit(self):
        closer = CollectingCloser()
        engine = StreamEngine(closer, rules=Rules(max_length='1h'),
                              lateness=0, tick=3600)
        for i in range(5):
            engine.add(hit(i, 20 * MIN * i))
        engine.flush()
        self.assertEqual(ids(closer.sessions), [[0, 1, 2, 3], [4]])


class CompactionTests(unittest.TestCase):

    def test_round_trip(self):
        hits = generated_hits()
        plain, packed = CollectingCloser(), CollectingCloser()
        a = StreamEngine(plain, compact_bytes=None)
        b = StreamEngine(packed, compact_bytes=600)
        for h in hits:
            a.add(h)
            b.add(h)
        a.flush()
        b.flush()
        self.assertEqual(a.compactions, 0)
        self.assertGreater(b.compactions, 100)
        self.assertEqual(signatures(plain.sessions),
                         signatures(packed.sessions))
        # the expanded hits are the same values, events and all
        for x, y in zip(sorted(plain.sessions, key=lambda s: s.session_id),
                        sorted(packed.sessions,
                               key=lambda s: s.session_id)):
            self.assertEqual([h.to_row() for h in x.hits],
                             [h.to_row() for h in y.hits])

    def test_open_session_is_compressed_in_place(self):
        closer = CollectingCloser()
        engine = StreamEngine(closer, compact_bytes=1000, lateness=0)
        for i in range(50):
            engine.add(hit(i, i, page='https://xcc-webshop.com/' + 'x' * 80))
        engine.ping(T0 + 50)
        s = engine.open['c:c1']
        self.assertGreater(len(s.chunks), 1)
        self.assertLess(len(s.hits), 50)
        self.assertLess(s.packed_bytes, 50 * 150)
        self.assertEqual([h.id for h in s.all_hits()], list(range(50)))


class LateTests(unittest.TestCase):

    def test_late_hit_is_counted_and_handed_on(self):
        closer = CollectingCloser()
        engine = StreamEngine(closer, lateness=0, tick=1)
        engine.add(hit(1, 0))
        engine.add(hit(2, 60))
        engine.ping(T0 + 3 * 3600)
        self.assertEqual(ids(closer.sessions), [[1, 2]])
        engine.add(hit(3, 30))          # inside the closed session's time
        self.assertEqual(engine.late, 1)
        late = closer.sessions[-1]
        self.assertEqual(ids([late]), [[3]])
        self.assertTrue(late.late)
        self.assertEqual(late.reason, 'late')
        self.assertEqual(late.customer, 'c1')

    def test_hit_that_would_have_extended_a_closed_session(self):
        closer = CollectingCloser()
        engine = StreamEngine(closer, lateness=0, tick=1)
        engine.add(hit(1, 0))
        engine.ping(T0 + 40 * MIN)
        self.assertEqual(ids(closer.sessions), [[1]])
        # after the closed session's last hit, but within its timeout:
        # in batch it would be part of it
        engine.add(hit(2, 20 * MIN))
        self.assertEqual(engine.late, 1)
        self.assertTrue(closer.sessions[-1].late)
        # a hit of the same customer past that timeout is a new session
        engine.add(hit(3, 40 * MIN))
        engine.flush()
        self.assertEqual(engine.late, 1)
        self.assertEqual(ids(closer.sessions), [[1], [2], [3]])

    def test_old_hit_of_an_unknown_client_is_late(self):
        closer = CollectingCloser()
        engine = StreamEngine(closer, lateness=0, tick=1)
        engine.add(hit(1, 3 * 3600, 'a'))
        engine.add(hit(2, 0, 'b'))      # 3 h behind: its time is closed
        self.assertEqual(engine.late, 1)
        self.assertEqual([(s.customer, s.late) for s in closer.sessions],
                         [('b', True)])

    def test_out_of_order_hit_still_joins_an_open_session(self):
        closer = CollectingCloser()
        engine = StreamEngine(closer, lateness=0, tick=1)
        engine.add(hit(1, 0))
        engine.add(hit(3, 120))
        engine.add(hit(2, 60))          # late, but its session is open
        engine.flush()
        self.assertEqual(engine.late, 0)
        self.assertEqual(ids(closer.sessions), [[1, 2, 3]])

    def test_nothing_is_dropped(self):
        hits = list(generated_hits())
        rng = random.Random(4)
        # heavy disorder, no lateness allowed: many hits are late
        arrival = sorted(hits, key=lambda h: h.us + rng.randrange(
            3600 * US))
        closer = CollectingCloser()
        engine = StreamEngine(closer, lateness=0, tick=60)
        for h in arrival:
            engine.add(h)
        engine.flush()
        self.assertGreater(engine.late, 0)
        got = sorted(h.idkey for s in closer.sessions for h in s.hits)
        self.assertEqual(got, sorted(h.idkey for h in hits))
        self.assertEqual(sum(1 for s in closer.sessions if s.late),
                         engine.late)


class IdentityTests(unittest.TestCase):

    def run_both(self, hits):
        closer = CollectingCloser()
        engine = StreamEngine(closer, lateness=0, tick=1)
        for h in hits:
            engine.add(h)
        engine.flush()
        batch = sessionize(hits)
        self.assertEqual(signatures(batch), signatures(closer.sessions))
        return batch, engine

    def test_login_mid_session_stitches_the_anonymous_hits(self):
        ua = dict(ip='10.0.0.1', user_agent='Firefox')
        hits = [hit(1, 0, None, **ua), hit(2, 60, None, **ua),
                hit(3, 120, '77', **ua), hit(4, 180, '77', **ua),
                # somebody else, anonymous, on another device
                hit(5, 100, None, ip='10.0.0.2', user_agent='Firefox')]
        batch, _ = self.run_both(hits)
        by_first = {s.hits[0].id: s for s in batch}
        anon, customer, other = by_first[1], by_first[3], by_first[5]
        self.assertEqual(ids([anon, customer]), [[1, 2], [3, 4]])
        self.assertEqual((anon.customer, anon.user_id, anon.stitched),
                         (None, '77', True))
        self.assertEqual((customer.customer, customer.user_id),
                         ('77', '77'))
        self.assertEqual(other.user_id, None)

    def test_stamp_keeps_its_first_customer(self):
        ua = dict(ip='10.0.0.1', user_agent='Firefox')
        hits = [hit(1, 0, 'first', **ua), hit(2, 60, 'second', **ua),
                hit(3, 86400, None, **ua)]     # a day later, logged out
        batch, _ = self.run_both(hits)
        # customers are never merged; the anonymous visit is linked to
        # the stamp's first customer
        self.assertEqual([(s.client, s.user_id) for s in batch], [
            ('c:first', 'first'), ('c:second', 'second'),
            ('a:' + hits[2].stamp, 'first')])

    def test_customer_too_late_for_the_anonymous_session(self):
        ua = dict(ip='10.0.0.1', user_agent='Firefox')
        hits = [hit(1, 0, None, **ua), hit(2, 30 * MIN + 1, '77', **ua)]
        batch, _ = self.run_both(hits)
        self.assertEqual([s.user_id for s in batch], [None, '77'])
        hits = [hit(1, 0, None, **ua), hit(2, 30 * MIN, '77', **ua)]
        batch, _ = self.run_both(hits)
        self.assertEqual([s.user_id for s in batch], ['77', '77'])

    def test_later_client_with_the_same_stamp_is_merged(self):
        hits = [hit(1, 0, None, session_stamp='S', client_id='X'),
                hit(2, 60, None, session_stamp='S', client_id='Y'),
                hit(3, 90, None, session_stamp='T', client_id='Y')]
        batch, engine = self.run_both(hits)
        self.assertEqual([(s.client, ids([s])[0]) for s in batch],
                         [('a:X', [1, 2]), ('a:Y', [3])])
        self.assertEqual(engine.identities.merged, 1)

    def test_explicit_stamp_wins_over_ip_and_agent(self):
        a = hit(1, 0, None, ip='1.1.1.1', session_stamp='S')
        b = hit(2, 60, None, ip='2.2.2.2', session_stamp='S')
        self.assertEqual(ids(self.run_both([a, b])[0]), [[1, 2]])
        a = hit(1, 0, None, ip='1.1.1.1')
        b = hit(2, 60, None, ip='2.2.2.2')
        self.assertEqual(ids(self.run_both([a, b])[0]), [[1], [2]])

    def test_incremental_identity_changes(self):
        ident = Identities()
        ident.client_key(hit(1, 0, None, session_stamp='S'))
        ident.client_key(hit(2, 0, 'c', session_stamp='S'))
        self.assertEqual(ident.take_changes(), {
            'owners': {'S': 'S'},
            'customers': {'S': ['c', int(T0 * US), '2']}})
        ident.client_key(hit(3, 1, 'd', session_stamp='S'))
        self.assertEqual(ident.take_changes(),
                         {'owners': {}, 'customers': {}})


class CheckpointTests(unittest.TestCase):

    def test_restart_gives_the_same_sessions(self):
        hits = generated_hits()
        whole = CollectingCloser()
        engine = StreamEngine(whole, compact_bytes=800)
        for h in hits:
            engine.add(h)
        engine.flush()
        for cut in (1, len(hits) // 3, len(hits) // 2 + 17, len(hits) - 1):
            closer = CollectingCloser()
            first = StreamEngine(closer, compact_bytes=800)
            for h in hits[:cut]:
                first.add(h)
            saved = pickle.dumps(first.state())
            del first                       # the process dies
            second = StreamEngine.from_state(pickle.loads(saved), closer)
            for h in hits[cut:]:
                second.add(h)
            second.flush()
            self.assertEqual(ids(closer.sessions), ids(whole.sessions))
            self.assertEqual(signatures(closer.sessions),
                             signatures(whole.sessions))
            self.assertEqual(second.stats(), engine.stats())

    def test_incremental_identities(self):
        hits = generated_hits()
        whole = CollectingCloser()
        engine = StreamEngine(whole)
        engine.add_many(hits)
        engine.flush()
        closer = CollectingCloser()
        first = StreamEngine(closer)
        persistent = {'owners': {}, 'customers': {}}
        cut = len(hits) // 2
        for i, h in enumerate(hits[:cut]):
            first.add(h)
            if i % 1000 == 0:
                changes = first.identities.take_changes()
                persistent['owners'].update(changes['owners'])
                persistent['customers'].update(changes['customers'])
        state = pickle.loads(pickle.dumps(first.state(identities=False)))
        changes = first.identities.take_changes()
        persistent['owners'].update(changes['owners'])
        persistent['customers'].update(changes['customers'])
        with self.assertRaises(ValueError):
            StreamEngine.from_state(state, closer)
        second = StreamEngine.from_state(
            state, closer, identities=Identities.from_state(persistent))
        second.add_many(hits[cut:])
        second.flush()
        self.assertEqual(signatures(closer.sessions),
                         signatures(whole.sessions))

    def test_held_hits_survive(self):
        closer = CollectingCloser()
        engine = StreamEngine(closer, lateness=60)
        engine.add(hit(2, 10))
        self.assertEqual(engine.held, 1)
        again = StreamEngine.from_state(engine.state(), closer)
        again.add(hit(1, 5))
        again.flush()
        self.assertEqual(ids(closer.sessions), [[1, 2]])

    def test_unknown_version(self):
        with self.assertRaises(ValueError):
            StreamEngine.from_state({'version': 99}, CollectingCloser())


# -- the invariant: stream == batch --------------------------------------


CUSTOMERS = [None, None, 'a', 'b', 'c']
STAMPS = [('10.0.0.%d' % i, 'UA') for i in range(3)]


@st.composite
def hit_sets(draw):
    n = draw(st.integers(min_value=1, max_value=60))
    hits = []
    t = 0
    for i in range(n):
        # gaps around the timeout are the interesting ones
        t += draw(st.sampled_from([
            0, 1, 10 * US, 60 * US, 29 * 60 * US, TIMEOUT_US,
            TIMEOUT_US + 1, 2 * 3600 * US]) | st.integers(0, 40 * 60 * US))
        ip, ua = draw(st.sampled_from(STAMPS))
        extra = {}
        if draw(st.booleans()):
            # explicit stamps and cookies: merges of clients
            extra['session_stamp'] = draw(st.sampled_from(['S', 'T']))
            extra['client_id'] = draw(st.sampled_from(['X', 'Y', 'Z']))
        h = make_hit(i, T0, customer=draw(st.sampled_from(CUSTOMERS)),
                     ip=ip, user_agent=ua, type=draw(st.sampled_from(
                         ['search', 'page_view', 'placed_order'])),
                     **extra)
        h.us += t
        hits.append(h)
    # the offsets are a random walk per hit list; mix the clients' hits
    return hits


class AgreementTests(unittest.TestCase):

    @settings(max_examples=300, deadline=None)
    @given(hit_sets(),
           st.sampled_from([0, 1, 60, 15 * 60]),
           st.sampled_from([None, 2, 5]),
           st.sampled_from([None, '45m', '3h']),
           st.sampled_from([1e-6, 1, 60, 600]),
           st.randoms(use_true_random=False),
           st.sampled_from([None, 300]))
    def test_stream_equals_batch(self, hits, lateness, max_events,
                                 max_length, tick, rnd, compact):
        rules = Rules(max_events=max_events, max_length=max_length)
        batch = sessionize(hits, rules=rules)
        # shuffle within the allowed lateness: each hit arrives no later
        # than ``lateness`` after a later-stamped hit
        delay = int(lateness * US)
        arrival = sorted(hits, key=lambda h: h.us + rnd.randint(0, delay))
        closer = CollectingCloser()
        engine = StreamEngine(closer, rules=rules, lateness=lateness,
                              tick=tick, compact_bytes=compact)
        for h in arrival:
            engine.add(h)
            if rnd.random() < 0.1:
                # an idle ping at the current time changes nothing
                engine.ping_us(engine.max_seen)
        engine.flush()
        self.assertEqual(engine.late, 0)
        self.assertEqual(signatures(closer.sessions), signatures(batch))

    def test_generated_data_with_disorder(self):
        hits = generated_hits()
        batch = sessionize(hits)
        rng = random.Random(1)
        arrival = sorted(hits, key=lambda h: h.us + rng.randrange(60 * US))
        closer = CollectingCloser()
        engine = StreamEngine(closer, lateness=60)
        engine.add_many(arrival)
        engine.flush()
        self.assertEqual(signatures(closer.sessions), signatures(batch))
        self.assertGreater(sum(1 for s in batch if s.stitched), 0)
        self.assertGreater(sum(1 for s in batch if s.customer), 0)


# -- closers -------------------------------------------------------------


class CloserTests(unittest.TestCase):

    def test_interfaces(self):
        verifyObject(ICloser, CollectingCloser())
        verifyObject(ICloser, PrintingCloser(io.StringIO()))

    def test_printing(self):
        out = io.StringIO()
        closer = PrintingCloser(out)
        engine = StreamEngine(closer, lateness=0)
        engine.add(hit(1, 0, '77', type='search', query='lamp'))
        engine.add(hit(2, 61.5, '77', type='placed_order', order=5))
        engine.flush()
        line = out.getvalue()
        self.assertEqual(line.count('\n'), 1)
        self.assertIn('customer=77 2022-04-28T00:00:00.000000..'
                      '00:01:01.500000 2 hits (placed_order 1, search 1)',
                      line)

    def test_mapping_to_clickstream(self):
        s, = sessionize([
            hit(1, 0.25, None, type='page_view', page='https://x/p/1'),
            hit(2, 10, None, type='search', query='lamp'),
            hit(3, 20, None, type='add_to_cart', product=12),
            hit(4, 30, None, type='search', query='bulb')])
        session, events = to_clickstream(s)
        self.assertEqual(session.session_id, s.session_id)
        self.assertEqual(session.search_query, 'lamp')
        self.assertEqual(session.created_at, int(T0))
        self.assertEqual(session.search_results, [])
        self.assertIsNone(session.user_id)
        self.assertEqual(session.search_meta['hits'], 4)
        self.assertEqual(session.search_meta['first_ts'], T0 + 0.25)
        self.assertEqual(session.search_meta['last_ts'], T0 + 30)
        self.assertIs(session.search_meta['late'], False)
        self.assertIsNone(session.search_meta['customer'])
        self.assertEqual(
            [(e.event_id, e.object_id, e.event_type) for e in events],
            [('1', 'https://x/p/1', 'page_view'), ('2', '', 'search'),
             ('3', '12', 'add_to_cart'), ('4', '', 'search')])
        self.assertEqual(events[0].meta,
                         {'ts': T0 + 0.25, 'page': 'https://x/p/1'})
        self.assertEqual(events[2].created_at, int(T0) + 20)


class StoringCloserTests(unittest.TestCase):

    def setUp(self):
        import ZODB
        import ZODB.FileStorage

        from trackstore import TrackingStorage
        self.tmp = tempfile.mkdtemp()
        self.db = ZODB.DB(ZODB.FileStorage.FileStorage(
            os.path.join(self.tmp, 'Data.fs')))
        self.conn = self.db.open()
        self.conn.root()['tracking'] = TrackingStorage()
        transaction.commit()
        self.storage = self.conn.root()['tracking']

    def tearDown(self):
        transaction.abort()
        self.conn.close()
        self.db.close()
        shutil.rmtree(self.tmp)

    def test_sessions_land_in_the_store(self):
        from trackstore.clickstream import ClickstreamDao
        hits = generated_hits(customers=20, days=2, seed=9)
        closer = StoringCloser(self.storage, batch_size=50)
        verifyObject(ICloser, closer)
        engine = StreamEngine(closer)
        engine.add_many(hits)
        engine.flush()
        closer.flush()
        transaction.commit()
        self.assertEqual(closer.events, len(hits))
        batch = sessionize(hits)
        self.assertEqual(closer.stored, len(batch))
        # one track a session, its hits inside
        tracks = len(self.storage)
        self.assertEqual(tracks, len(batch))
        dao = ClickstreamDao(self.storage)
        for s in batch[:20]:
            stored = dao.get_session(stored_session_id(s))
            self.assertEqual([e.event_id for e in stored.events],
                             [h.idkey for h in s.hits][:100])
            self.assertEqual(stored.user_id, s.user_id)
        # storing the same sessions again changes nothing
        again = StoringCloser(self.storage, batch_size=7)
        for s in batch:
            again.close(s)
        again.flush()
        transaction.commit()
        self.assertEqual(len(self.storage), tracks)
        # and the tracks are seen by queries
        self.assertTrue(self.storage.query(taskId='clickstream'))
