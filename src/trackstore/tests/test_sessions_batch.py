"""The 30-minute rule, pinned at its boundaries, in batch and stream."""
import unittest

from trackstore.sessions import CollectingCloser
from trackstore.sessions import Rules
from trackstore.sessions import StreamEngine
from trackstore.sessions import make_hit
from trackstore.sessions import parse_duration
from trackstore.sessions import session_id
from trackstore.sessions import sessionize


T0 = 1651104000.0   # 2022-04-28T00:00:00Z
MIN = 60.0


def hit(id, offset, customer='c1', **kw):
    return make_hit(id, T0 + offset, customer=customer, **kw)


def at_us(id, offset_us, customer='c1', **kw):
    """A hit ``offset_us`` microseconds after T0 (exact, no floats)."""
    h = make_hit(id, T0, customer=customer, **kw)
    h.us += offset_us
    return h


def groups(sessions):
    return [[h.id for h in s.hits] for s in sessions]


def streamed(hits, rules=None, **kw):
    closer = CollectingCloser()
    engine = StreamEngine(closer, rules=rules, **kw)
    for h in hits:
        engine.add(h)
    engine.flush()
    return sorted(closer.sessions, key=lambda s: (s.first_us, s.client))


class BoundaryTests(unittest.TestCase):
    """Every case is checked in batch and in the streaming engine."""

    def check(self, hits, expected, rules=None):
        batch = sessionize(hits, rules=rules)
        self.assertEqual(groups(batch), expected)
        self.assertEqual(groups(streamed(hits, rules=rules)), expected)
        self.assertEqual([s.signature() for s in batch],
                         [s.signature() for s in streamed(hits, rules)])
        return batch

    def test_gap_of_exactly_the_timeout_stays(self):
        self.check([at_us(1, 0), at_us(2, 30 * 60 * 10**6)], [[1, 2]])

    def test_one_microsecond_more_splits(self):
        self.check([at_us(1, 0), at_us(2, 30 * 60 * 10**6 + 1)],
                   [[1], [2]])

    def test_the_seed_rounding_is_not_copied(self):
        # the seed rounded 30:29 to 30 minutes and kept it in
        self.check([hit(1, 0), hit(2, 30 * MIN + 29)], [[1], [2]])

    def test_gap_is_from_the_previous_hit(self):
        # 25 + 25 + 25 minutes: far longer than the timeout in all,
        # but no gap exceeds it
        self.check([hit(i, 25 * MIN * i) for i in range(4)],
                   [[0, 1, 2, 3]])

    def test_per_customer(self):
        hits = [hit(1, 0, 'a'), hit(2, 10 * MIN, 'b'),
                hit(3, 35 * MIN, 'a'), hit(4, 36 * MIN, 'b')]
        batch = self.check(hits, [[1], [2, 4], [3]])
        self.assertEqual([s.customer for s in batch], ['a', 'b', 'a'])

    def test_order_of_input_does_not_matter_in_batch(self):
        hits = [hit(i, 10 * MIN * i) for i in range(5)]
        self.assertEqual(groups(sessionize(hits[::-1])),
                         [[0, 1, 2, 3, 4]])

    def test_ties_are_ordered_by_id(self):
        hits = [hit('b', 0), hit('a', 0), hit('c', 0)]
        self.assertEqual(groups(sessionize(hits)), [['a', 'b', 'c']])

    def test_configurable_timeout(self):
        hits = [hit(1, 0), hit(2, 10 * MIN), hit(3, 20 * MIN + 1)]
        self.check(hits, [[1, 2], [3]], rules=Rules(timeout='10m'))
        self.assertEqual(groups(sessionize(hits, timeout=600)),
                         [[1, 2], [3]])
        self.assertEqual(groups(sessionize(hits, timeout='5m')),
                         [[1], [2], [3]])

    def test_events_cap(self):
        hits = [hit(i, i) for i in range(7)]
        # the hit at the cap closes the session at once
        self.check(hits, [[0, 1, 2], [3, 4, 5], [6]],
                   rules=Rules(max_events=3))
        self.check(hits[:6], [[0, 1, 2], [3, 4, 5]],
                   rules=Rules(max_events=3))

    def test_length_cap(self):
        rules = Rules(max_length='1h')
        hits = [hit(i, 20 * MIN * i) for i in range(5)]
        # 0..60 min is exactly the cap: stays; 80 min exceeds it
        self.check(hits, [[0, 1, 2, 3], [4]], rules=rules)
        hits = [at_us(1, 0), at_us(2, 3600 * 10**6 + 1)]
        self.check(hits, [[1], [2]], rules=Rules(max_length='1h',
                                                 timeout='2h'))

    def test_no_caps(self):
        hits = [hit(i, 20 * MIN * i) for i in range(100)]
        self.check(hits, [list(range(100))],
                   rules=Rules(max_events=None, max_length=None))

    def test_session_ids_are_deterministic(self):
        hits = [hit(1, 0), hit(2, 31 * MIN)]
        a = sessionize(hits)
        self.assertEqual([s.session_id for s in a],
                         [session_id('c:c1', '1'), session_id('c:c1', '2')])
        self.assertEqual(len(set(s.session_id for s in a)), 2)

    def test_durations(self):
        s, = sessionize([hit(1, 0), hit(2, 600.5)])
        self.assertEqual(s.duration, 600.5)
        self.assertEqual((s.first_ts, s.last_ts), (T0, T0 + 600.5))
        s, = sessionize([hit(1, 0)])
        self.assertEqual(s.duration, 0.0)


class RulesTests(unittest.TestCase):

    def test_durations(self):
        self.assertEqual(parse_duration('30m'), 1800.0)
        self.assertEqual(parse_duration('90s'), 90.0)
        self.assertEqual(parse_duration('1.5h'), 5400.0)
        self.assertEqual(parse_duration('2d'), 172800.0)
        self.assertEqual(parse_duration('250ms'), 0.25)
        self.assertEqual(parse_duration(12), 12.0)
        for bad in ['', 'm', '30 minutes', '-1s', '1y']:
            with self.assertRaises(ValueError):
                parse_duration(bad)

    def test_rules(self):
        r = Rules()
        self.assertEqual((r.timeout, r.max_events, r.max_length),
                         (1800.0, 10000, 86400.0))
        self.assertEqual(Rules.from_dict(r.as_dict()), r)
        with self.assertRaises(ValueError):
            Rules(timeout=0)
        with self.assertRaises(ValueError):
            Rules(max_events=0)
