"""Bad input, at scale: whatever a line holds, it ends as stored, a
duplicate or rejected with a reason, and nothing crashes.

Hypothesis writes the lines: arbitrary bytes, invalid UTF-8, deep
nesting, huge numbers, wrong types and missing fields, mixed with good
hits. The parser is asked about each line, and real loads into a real
FileStorage account for every line read.
"""
import datetime
import io
import json
import os
import pickle
import shutil
import tempfile
import unittest

import orjson
from hypothesis import HealthCheck
from hypothesis import assume
from hypothesis import given
from hypothesis import settings
from hypothesis import strategies as st

from trackstore.check import check_store
from trackstore.db import get_storage
from trackstore.db import open_db
from trackstore.ingest import ingest
from trackstore.sessions.hits import DEFAULT_MAX_DEPTH
from trackstore.sessions.hits import Hit
from trackstore.sessions.hits import Limits
from trackstore.sessions.hits import Reject
from trackstore.sessions.hits import RejectsWriter
from trackstore.sessions.hits import parse_line


def accounted(report):
    """The lines a load accounts for: every line read ends as exactly
    one of these outcomes (the one place to name a new outcome)."""
    return (report.stored + report.duplicates + report.rejected
            + report.bots)


# -- what lines hold ------------------------------------------------------


def dumps(value):
    """JSON text of ``value`` as bytes; unlike orjson, the standard
    library writes integers of any size, and a lone surrogate in a
    string goes out as the bytes it would be (not UTF-8)."""
    return json.dumps(value, ensure_ascii=False).encode(
        'utf-8', 'surrogatepass')


json_scalars = st.one_of(
    st.none(), st.booleans(), st.integers(),
    st.integers(min_value=2 ** 63 - 5, max_value=2 ** 70),
    st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=20))
json_values = st.recursive(
    json_scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.dictionaries(st.text(max_size=8), inner, max_size=4)),
    max_leaves=12)

timestamps = st.one_of(
    st.datetimes(min_value=datetime.datetime(2000, 1, 1),
                 max_value=datetime.datetime(2025, 1, 1)).map(
        lambda d: d.strftime('%Y-%m-%dT%H:%M:%S.%f')),
    st.datetimes().map(lambda d: d.isoformat()),
    st.floats(), st.integers(), json_values)
# Digits that str.isdigit takes and int() does not ('\u00b2') once
# crashed the loader.
ids = st.one_of(st.integers(min_value=1, max_value=60),
                st.integers(), st.text(max_size=6),
                st.text('-0123456789\u00b2\u0663', max_size=4),
                json_values)


@st.composite
def hits(draw):
    """A hit as a dict: mostly well formed, with some fields of the
    wrong type or missing."""
    event = {'user-agent': draw(st.sampled_from(['A', 'B'])),
             'ip': draw(st.sampled_from(['192.0.2.1', '192.0.2.2'])),
             'customer-id': draw(st.one_of(
                 st.none(), st.sampled_from(['c1', 'c2']), json_values)),
             'timestamp': draw(timestamps)}
    hit = {'id': draw(ids), 'type': draw(st.one_of(
        st.sampled_from(['search', 'page_view']), json_values)),
        'event': event}
    for name in draw(st.sets(st.sampled_from(
            ['id', 'type', 'event', 'timestamp', 'ip']), max_size=2)):
        (event if name in event else hit).pop(name, None)
    return hit


@st.composite
def good_hits(draw):
    """A hit that is valid as it stands."""
    return {'id': draw(st.integers(min_value=1, max_value=60)),
            'type': draw(st.sampled_from(['search', 'page_view'])),
            'event': {'user-agent': 'A', 'ip': '192.0.2.1',
                      'customer-id': draw(st.sampled_from([None, 'c1'])),
                      'timestamp': draw(timestamps.filter(
                          lambda t: isinstance(t, str) and len(t) == 26
                          and t.startswith('20')))}}


def nested(depth):
    return '[' * depth + '0' + ']' * depth


@st.composite
def deep_hits(draw):
    """A good hit with a field nested ``depth`` levels, up to past what
    orjson reads (1,024)."""
    hit = dumps(draw(good_hits()))
    depth = draw(st.one_of(
        st.sampled_from([DEFAULT_MAX_DEPTH - 1, DEFAULT_MAX_DEPTH,
                         DEFAULT_MAX_DEPTH + 1, 500, 1000, 1030]),
        st.integers(1, 1100)))
    # Into the event (its last field), whose fields are stored.
    return hit[:-2] + b', "deep": ' + nested(depth).encode() + b'}}'


@st.composite
def bad_utf8(draw):
    """A hit whose bytes are not UTF-8 (a stray or cut-off sequence)."""
    hit = dumps(draw(st.one_of(good_hits(), hits())))
    bad = draw(st.sampled_from([b'\xff', b'\xc3(', b'\xe2\x82', b'\x80',
                                b'\xed\xa0\x80']))
    at = draw(st.integers(0, len(hit)))
    return hit[:at] + bad + hit[at:]


huge_numbers = st.sampled_from([
    b'{"id": 1e999, "type": "search", "event": {"timestamp": 1}}',
    b'{"id": 123456789012345678901234567890, "type": "x", "event": {}}',
    b'{"id": 5, "type": "x", "event": {"timestamp": 1e308}}',
    b'{"id": 5, "type": "x", "event": {"timestamp": -1e308}}',
    b'{"id": 6, "type": "x", "event": {"timestamp": "2022-04-28T07:38:46'
    b'.290271", "customer-id": 1e400}}',
    b'{"id": -9223372036854775809, "type": "x"}',
])

lines = st.one_of(
    good_hits().map(dumps), hits().map(dumps),
    st.binary(max_size=60),
    bad_utf8(), deep_hits(), huge_numbers,
    json_values.map(dumps),
    st.text(max_size=40).map(lambda t: t.encode('utf-8', 'surrogatepass')),
).map(lambda line: line.replace(b'\n', b' '))

# A window that does not move with the clock, so that the reasons the
# parser gives here and the load gives are the same text.
LIMITS = Limits(max_time='2030-01-01')
SETTINGS = settings(max_examples=200, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])


class Parser(unittest.TestCase):
    """``parse_line`` answers for any line, and what it takes can be
    stored."""

    @SETTINGS
    @given(lines)
    def test_every_line_is_a_hit_or_a_reject(self, line):
        result = parse_line(line, 7)
        if result.__class__ is Reject:
            self.assertEqual(result.lineno, 7)
            self.assertIsInstance(result.reason, str)
            self.assertTrue(result.reason)
            # The rejects file takes it too (raw bytes, maybe not UTF-8).
            out = io.BytesIO()
            RejectsWriter(out).write(result)
            self.assertEqual(orjson.loads(out.getvalue())['line'], 7)
        else:
            self.assertIs(result.__class__, Hit)
            # A session is pickled into the store: what parses must.
            pickle.dumps(result.event, protocol=5)

    def test_deep_nesting_is_rejected_by_its_depth(self):
        hit = (b'{"id": 1, "type": "search", "event": {"timestamp": '
               b'"2022-04-28T07:38:46.290271", "deep": %s}}')
        ok = parse_line(hit % nested(DEFAULT_MAX_DEPTH - 3).encode(), 1)
        self.assertIs(ok.__class__, Hit)
        for depth in (DEFAULT_MAX_DEPTH, 500, 1000):
            bad = parse_line(hit % nested(depth).encode(), 1)
            self.assertEqual(
                bad.reason, 'nested too deep: more than %d levels'
                % DEFAULT_MAX_DEPTH)
        # Past orjson's own limit the line is no JSON it reads.
        self.assertTrue(parse_line(hit % nested(2000).encode(), 1)
                        .reason.startswith('not JSON'))


class Loads(unittest.TestCase):
    """Real loads of such lines: every line read is accounted for, the
    rejects file holds one line per reject, and the store is sound."""

    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix='trackstore-bad-')
        self.addCleanup(shutil.rmtree, self.dir, True)
        self.n = 0

    def load(self, data):
        self.n += 1
        source = os.path.join(self.dir, 'in-%d.jsonl' % self.n)
        with open(source, 'wb') as f:
            f.write(data)
        rejects = source + '.rejects'
        uri = 'file://' + os.path.join(self.dir, 'db-%d.fs' % self.n)
        db = open_db(uri)
        try:
            first = ingest(source, db, rejects=rejects, format='jsonl',
                           limits=LIMITS)
            written = []
            if os.path.exists(rejects):
                with open(rejects, 'rb') as f:
                    written = [orjson.loads(line) for line in f]
            again = ingest(source, db, rejects=rejects, format='jsonl',
                           limits=LIMITS)
            conn = db.open()
            try:
                problems = check_store(get_storage(conn)).problems
            finally:
                conn.close()
        finally:
            db.close()
        return first, written, again, problems

    @settings(max_examples=40, deadline=None,
              suppress_health_check=[HealthCheck.too_slow])
    @given(st.lists(lines, max_size=25))
    def test_every_line_is_accounted_for(self, batch):
        data = b''.join(line + b'\n' for line in batch)
        # A first line starting like gzip makes the file a (broken)
        # gzip: a question of the input format, not of its lines.
        assume(not data.startswith(b'\x1f\x8b'))
        # The loader reads each line with its end, as a file holds it.
        records = [(n, line + b'\n') for n, line in enumerate(batch, 1)
                   if not (line + b'\n').isspace()]
        parsed = [parse_line(line, n, LIMITS) for n, line in records]
        valid = {h.idkey for h in parsed if h.__class__ is Hit}
        first, written, again, problems = self.load(data)
        self.assertIsNone(first.broken)
        self.assertEqual(first.read, len(records))
        self.assertEqual(accounted(first), first.read)
        self.assertEqual(first.stored, len(valid))
        self.assertEqual(len(written), first.rejected)
        self.assertEqual(
            [(r['line'], r['reason']) for r in written],
            [(r.lineno, r.reason) for r in parsed
             if r.__class__ is Reject])
        # The same lines again: nothing new, every hit a duplicate.
        self.assertEqual(accounted(again), again.read)
        self.assertEqual(again.stored, 0)
        self.assertEqual(again.duplicates, first.stored + first.duplicates)
        self.assertEqual(problems, [])

    def test_ids_of_digits_int_does_not_take(self):
        # '\u00b2' is a digit to str.isdigit, but not to int(): a hit
        # with such an id once crashed the load.
        good = ('{"id": "%s", "type": "search", "event": {"timestamp": '
                '"2022-04-28T07:38:%02d.000000", "ip": "192.0.2.1"}}')
        ids = ['\u00b2', '-\u00b2', '\u0663', '7']
        data = '\n'.join(good % (i, n) for n, i in enumerate(ids))
        first, written, again, problems = self.load(
            data.encode() + b'\n')
        self.assertEqual((first.read, first.stored, first.rejected),
                         (4, 4, 0))
        self.assertEqual(again.duplicates, 4)
        self.assertEqual(problems, [])

    def test_a_deep_hit_among_good_ones(self):
        # Nested 500 deep, a hit once crashed the load that pickled it.
        good = (b'{"id": %d, "type": "search", "event": {"timestamp": '
                b'"2022-04-28T07:38:%02d.000000", "ip": "192.0.2.1"%s}}')
        data = b'\n'.join([
            good % (1, 1, b''),
            good % (2, 2, b', "deep": ' + nested(500).encode()),
            good % (3, 3, b', "deep": ' + nested(20).encode())]) + b'\n'
        first, written, again, problems = self.load(data)
        self.assertEqual((first.read, first.stored, first.rejected),
                         (3, 2, 1))
        self.assertEqual(written[0]['line'], 2)
        self.assertEqual(written[0]['reason'],
                         'nested too deep: more than 32 levels')
        self.assertEqual(problems, [])
