"""Order metrics: the spec's worked example, edge cases, and a generated
data set checked against an independent computation in SQL (SQLite
window functions over the same raw hits)."""
import datetime
import json
import os
import shutil
import sqlite3
import tempfile
import unittest

from hypothesis import given
from hypothesis import strategies as st

from trackstore.db import get_storage
from trackstore.db import open_db
from trackstore.ingest import ingest
from trackstore.metrics import SessionSummary
from trackstore.metrics import compute
from trackstore.metrics import order_metrics
from trackstore.metrics import order_values
from trackstore.metrics import percentile
from trackstore.sessions.generate import generate


S = SessionSummary.seconds
T0 = datetime.datetime(2022, 4, 28, 8, 0, 0)


def hit(hid, minutes, customer='c1', type='page_view', ip='1.2.3.4'):
    when = T0 + datetime.timedelta(minutes=minutes)
    return {'id': hid, 'type': type, 'event': {
        'user-agent': 'UA', 'ip': ip, 'customer-id': customer,
        'timestamp': when.isoformat(timespec='microseconds')}}


# The spec's example as hits: S1 (600 s), S2 (1200 s), S3 with an
# order, S4 (300 s), S5 with an order; gaps between sessions > 30 min.
EXAMPLE_HITS = [
    hit(1, 0), hit(2, 10),                                   # S1
    hit(3, 60), hit(4, 70), hit(5, 80),                      # S2
    hit(6, 200), hit(7, 201, type='placed_order'),           # S3
    hit(8, 300), hit(9, 305),                                # S4
    hit(10, 400, type='placed_order'),                       # S5
]


class WorkedExample(unittest.TestCase):

    def sessions(self):
        return [S('c', 0, 600, False, 'S1'), S('c', 1000, 2200, False, 'S2'),
                S('c', 5000, 5100, True, 'S3'),
                S('c', 9000, 9300, False, 'S4'),
                S('c', 20000, 20000, True, 'S5')]

    def test_values(self):
        values = order_values(self.sessions())
        self.assertEqual([(v.session_id, v.sessions_before,
                           v.seconds_before) for v in values],
                         [('S3', 2, 1800.0), ('S5', 1, 300.0)])

    def test_medians_in_minutes(self):
        result = order_metrics(self.sessions())
        self.assertEqual(result['median_visits_before_order'], 1.5)
        # (30 min + 5 min) / 2: minutes, not seconds
        self.assertEqual(
            result['median_session_duration_minutes_before_order'], 17.5)
        self.assertEqual(result['ordering_sessions'], 2)
        self.assertEqual(result['customers_with_orders'], 1)
        self.assertEqual(result['visits_before_order']['p90'], 1.9)

    def test_order_of_input_does_not_matter(self):
        self.assertEqual(order_values(reversed(self.sessions())),
                         order_values(self.sessions()))

    def test_customers_counted_apart(self):
        sessions = self.sessions() + [
            S('d', 0, 60, False), S('d', 100, 100, True)]
        values = order_values(sessions)
        self.assertEqual([(v.customer, v.sessions_before, v.seconds_before)
                          for v in values],
                         [('c', 2, 1800.0), ('c', 1, 300.0),
                          ('d', 1, 60.0)])

    def test_nothing_ordered(self):
        result = order_metrics([S('c', 0, 10, False)])
        self.assertIsNone(result['median_visits_before_order'])
        self.assertIsNone(
            result['median_session_duration_minutes_before_order'])
        self.assertEqual(result['ordering_sessions'], 0)

    def test_first_session_ordering(self):
        values = order_values([S('c', 0, 10, True), S('c', 5000, 5000, True)])
        self.assertEqual([(v.sessions_before, v.seconds_before)
                          for v in values], [(0, 0.0), (0, 0.0)])

    def test_microseconds_exact(self):
        values = order_values([
            SessionSummary('c', 1651132800000001, 1651132800000002, False),
            SessionSummary('c', 1651140000000000, 1651140000000000, True)])
        self.assertEqual(values[0].seconds_before, 1e-6)


class Percentiles(unittest.TestCase):

    def test_known(self):
        self.assertEqual(percentile([1, 2, 3, 4], 50), 2.5)
        self.assertEqual(percentile([1, 2, 3], 50), 2.0)
        self.assertEqual(percentile([5], 90), 5.0)
        self.assertIsNone(percentile([], 50))
        self.assertEqual(percentile([0, 10], 25), 2.5)

    @given(st.lists(st.integers(-1000, 1000), min_size=1, max_size=50))
    def test_within_bounds_and_monotone(self, data):
        data.sort()
        values = [percentile(data, p) for p in (0, 25, 50, 75, 90, 100)]
        self.assertEqual(values[0], data[0])
        self.assertEqual(values[-1], data[-1])
        self.assertEqual(values, sorted(values))


class TempDir(unittest.TestCase):

    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix='trackstore-metrics-')

    def tearDown(self):
        shutil.rmtree(self.dir, ignore_errors=True)

    def write(self, name, hits):
        path = os.path.join(self.dir, name)
        with open(path, 'w') as f:
            for h in hits:
                f.write(json.dumps(h) + '\n')
        return path

    def load(self, path, **kw):
        db = open_db('file://' + os.path.join(self.dir, 'Data.fs'))
        self.addCleanup(db.close)
        ingest(path, db, **kw)
        conn = db.open()
        self.addCleanup(conn.close)
        return get_storage(conn)


class StoredExample(TempDir):
    """The worked example through the whole pipeline."""

    def test_example_hits(self):
        storage = self.load(self.write('example.jsonl', EXAMPLE_HITS))
        result = compute(storage)
        self.assertEqual(result['ordering_sessions'], 2)
        self.assertEqual(result['visits_before_order']['p25'], 1.25)
        self.assertEqual(result['median_visits_before_order'], 1.5)
        # S1 10 min + S2 20 min = 30 min, S4 5 min
        self.assertEqual(
            result['median_session_duration_minutes_before_order'], 17.5)

    def test_two_orders_in_one_session_count_once(self):
        hits = EXAMPLE_HITS + [hit(11, 402, type='placed_order')]
        result = compute(self.load(self.write('two.jsonl', hits)))
        self.assertEqual(result['ordering_sessions'], 2)
        self.assertEqual(result['median_visits_before_order'], 1.5)

    def test_anonymous_sessions_left_out_unless_asked(self):
        # Anonymous hits on the customer's device (same IP and user
        # agent) just before c1 logs in: stitched to c1, kept in their
        # own session, not counted by default.
        anon = [hit(100, -20, customer=None), hit(101, -15, customer=None)]
        storage = self.load(self.write('anon.jsonl', anon + EXAMPLE_HITS))
        self.assertEqual(compute(storage)['median_visits_before_order'],
                         1.5)
        with_anon = compute(storage, include_anonymous=True)
        self.assertTrue(with_anon['include_anonymous'])
        # S3 now has 3 sessions before it: the anonymous one, S1, S2
        self.assertEqual(with_anon['visits_before_order']['p75'], 2.5)
        # and 35 minutes: 5 (anonymous) + 10 (S1) + 20 (S2)
        self.assertEqual(with_anon['session_duration_minutes_before_order'][
            'p90'], 5 + (35 - 5) * 0.9)

    def test_timeout_applies(self):
        # With a 5-minute timeout S2 (hits 10 minutes apart) splits in 3.
        storage = self.load(self.write('example.jsonl', EXAMPLE_HITS),
                            timeout=300)
        result = compute(storage)
        # S1 -> 2 sessions, S2 -> 3: 5 before S3 (0 s); S4 -> 1 (300 s)
        self.assertEqual(result['visits_before_order']['p25'], 2.0)
        self.assertEqual(result['visits_before_order']['p75'], 4.0)


# -- an independent computation in SQL -------------------------------------


SQL_METRICS = '''
WITH gaps AS (
    SELECT customer, id, us, type,
           us - LAG(us) OVER (PARTITION BY customer ORDER BY us, id) AS gap
    FROM hits WHERE customer IS NOT NULL),
numbered AS (
    SELECT *, SUM(CASE WHEN gap IS NULL OR gap > :timeout THEN 1 ELSE 0 END)
              OVER (PARTITION BY customer ORDER BY us, id
                    ROWS UNBOUNDED PRECEDING) AS session
    FROM gaps),
sessions AS (
    SELECT customer, session, MIN(us) AS first, MAX(us) AS last,
           MAX(type = 'placed_order') AS ordered
    FROM numbered GROUP BY customer, session),
grouped AS (
    SELECT *, COALESCE(SUM(ordered) OVER (
                  PARTITION BY customer ORDER BY session
                  ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING), 0)
              AS orders_before
    FROM sessions),
before AS (
    SELECT customer, orders_before, COUNT(*) AS n,
           SUM(last - first) AS us
    FROM grouped WHERE ordered = 0 GROUP BY customer, orders_before)
SELECT g.customer, g.first, COALESCE(b.n, 0), COALESCE(b.us, 0)
FROM grouped AS g LEFT JOIN before AS b
     ON b.customer = g.customer AND b.orders_before = g.orders_before
WHERE g.ordered = 1
ORDER BY g.customer, g.first
'''


def load_sqlite(path):
    """Raw hits into SQLite with the standard library only: json,
    datetime. A hit counts when it is a JSON object with id, type and a
    timestamp that datetime reads (no zone: UTC); the first hit of an id
    wins."""
    db = sqlite3.connect(':memory:')
    db.execute('CREATE TABLE hits (id TEXT PRIMARY KEY, customer TEXT, '
               'us INTEGER, type TEXT)')
    epoch = datetime.datetime(1970, 1, 1, tzinfo=datetime.timezone.utc)
    with open(path, encoding='utf-8') as f:
        for line in f:
            try:
                h = json.loads(line)
                event = h['event']
                when = datetime.datetime.fromisoformat(event['timestamp'])
            except (ValueError, KeyError, TypeError):
                continue
            if h.get('id') in (None, '') or not h.get('type'):
                continue
            if when.tzinfo is None:
                when = when.replace(tzinfo=datetime.timezone.utc)
            customer = event.get('customer-id')
            customer = None if customer in (None, '') else str(customer)
            d = when - epoch
            us = (d.days * 86400 + d.seconds) * 1000000 + d.microseconds
            db.execute('INSERT OR IGNORE INTO hits VALUES (?, ?, ?, ?)',
                       (str(h['id']), customer, us, h['type']))
    return db


class AgainstSQL(TempDir):

    def check(self, customers, days, seed, timeout=1800):
        path = os.path.join(self.dir, 'hits.jsonl')
        generate(customers, days, seed, path)
        storage = self.load(path, timeout=timeout)
        from trackstore.metrics import stored_summaries
        ours = [(v.customer, int(round(v.ordered_at * 1e6)),
                 v.sessions_before, int(round(v.seconds_before * 1e6)))
                for v in order_values(stored_summaries(storage))]
        sql = load_sqlite(path).execute(
            SQL_METRICS, {'timeout': timeout * 1000000}).fetchall()
        self.assertGreater(len(sql), 20)
        self.assertEqual(sorted(ours), sorted(tuple(r) for r in sql))
        # and the answer's medians from the SQL values
        result = compute(storage)
        visits = sorted(r[2] for r in sql)
        minutes = sorted(r[3] / 6e7 for r in sql)
        self.assertEqual(result['ordering_sessions'], len(sql))
        self.assertEqual(result['median_visits_before_order'],
                         percentile(visits, 50))
        self.assertAlmostEqual(
            result['median_session_duration_minutes_before_order'],
            percentile(minutes, 50), places=9)
        self.assertAlmostEqual(
            result['session_duration_minutes_before_order']['p90'],
            percentile(minutes, 90), places=9)
        return sql

    def test_generated(self):
        self.check(300, 20, 7)

    def test_generated_short_timeout(self):
        self.check(150, 10, 11, timeout=600)
