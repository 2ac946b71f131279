"""Raw hits: parsing, timestamps, the four input forms, rejects."""
import gzip
import io
import os
import pathlib
import subprocess
import sys
import tempfile
import threading
import unittest

import orjson
from hypothesis import given
from hypothesis import settings
from hypothesis import strategies as st

from trackstore.sessions import Reject
from trackstore.sessions import RejectsWriter
from trackstore.sessions import generate
from trackstore.sessions import parse_line
from trackstore.sessions import parse_timestamp
from trackstore.sessions import read_hits
from trackstore.sessions import read_records
from trackstore.sessions.hits import split_array
from trackstore.sessions.hits import stamp_of
from trackstore.tests import python_env


SEARCH = (
    b'{"id": 463469, "type": "search", "event": {"user-agent": '
    b'"Mozilla/5.0 (iPhone)", "ip": "200.15.173.55", "customer-id": null,'
    b' "timestamp": "2022-04-28T07:38:46.290271", '
    b'"query": "Synchronized didactic task-force"}}')
VIEW = (
    b'{"id": 452437, "type": "page_view", "event": {"user-agent": '
    b'"Mozilla/5.0 (iPod)", "ip": "121.225.65.59", "customer-id": 42,'
    b' "timestamp": "2022-04-28T07:17:46.290271", '
    b'"page": "https://xcc-webshop.com/cart"}}')


class ParseTests(unittest.TestCase):

    def test_seed_line(self):
        hit = parse_line(SEARCH, 1)
        self.assertEqual(hit.id, 463469)
        self.assertEqual(hit.type, 'search')
        self.assertEqual(hit.us, 1651131526290271)
        self.assertEqual(hit.ts, 1651131526.290271)
        self.assertIsNone(hit.customer)
        self.assertEqual(hit.ip, '200.15.173.55')
        self.assertEqual(hit.fields,
                         {'query': 'Synchronized didactic task-force'})
        self.assertEqual(hit.stamp,
                         stamp_of('200.15.173.55', 'Mozilla/5.0 (iPhone)'))
        self.assertEqual(hit.timestamp.isoformat(),
                         '2022-04-28T07:38:46.290271+00:00')

    def test_customer_id_is_a_string(self):
        self.assertEqual(parse_line(VIEW, 2).customer, '42')

    def test_explicit_stamp_and_flat_records(self):
        hit = parse_line(orjson.dumps({
            'id': 'a', 'type': 'x', 'timestamp': 1651104000,
            'session-stamp': 'S1', 'client-id': 7}), 1)
        self.assertEqual((hit.id, hit.us, hit.stamp, hit.client),
                         ('a', 1651104000000000, 'S1', '7'))

    def test_rejects_say_why(self):
        cases = [
            (b'{"id": 1, "type": "x", "event": {', 'not JSON'),
            (b'[1, 2]', 'not a JSON object'),
            (b'{"type": "x", "event": {"timestamp": 1}}', 'missing id'),
            (b'{"id": 1, "event": {"timestamp": 1}}', 'missing type'),
            (b'{"id": 1, "type": "x", "event": {"ip": "1"}}',
             'missing timestamp'),
            (b'{"id": 1, "type": "x", "event": {"timestamp": "soon"}}',
             "unparsable timestamp 'soon'"),
            (b'{"id": 1, "type": "x", "event": '
             b'{"timestamp": "2022-02-30T00:00:00.000000"}}',
             'unparsable timestamp'),
            (b'{"id": 1, "type": "x", "event": 3}',
             'event is not a JSON object'),
        ]
        for n, (line, reason) in enumerate(cases, 1):
            reject = parse_line(line, n)
            self.assertIs(reject.__class__, Reject, line)
            self.assertEqual(reject.lineno, n)
            self.assertTrue(reject.reason.startswith(reason),
                            (line, reject.reason))
            self.assertEqual(reject.raw, line)


class FastPathTests(unittest.TestCase):
    """``parse_record`` has a fast path for the usual shape; it must
    agree with the careful path on everything."""

    values = st.none() | st.integers(-3, 3) | st.sampled_from(
        ['', 'x', '42', '2022-04-28T07:38:46.290271',
         '2022-04-28T07:38:66.290271', '2022-04-28 07:38:46.290271',
         '2022-04-28T07:38:4\u00b2.290271', '2022-04-28T07:38:46.29027Z',
         '2022-04-28X07:38:46.290271']) | st.lists(st.integers(), max_size=1)

    stamps = st.sampled_from(['2022-04-28T07:38:46.290271',
                              '2022-04-28T07:39:00.000001'])
    usual = st.fixed_dictionaries(
        {'timestamp': stamps | values, 'customer-id': values,
         'ip': values, 'user-agent': values},
        optional={'query': values, 'session-stamp': values,
                  'client-id': values})

    @settings(max_examples=500)
    @given(usual | st.dictionaries(st.sampled_from(
        ['timestamp', 'customer-id', 'ip', 'user-agent', 'query',
         'session-stamp', 'client-id']), values),
        st.fixed_dictionaries({'id': values, 'type': values})
        | st.dictionaries(st.sampled_from(['id', 'type']), values),
        st.booleans())
    def test_fast_equals_careful(self, event, top, flat):
        from trackstore.sessions.hits import _parse_record
        from trackstore.sessions.hits import parse_record

        # the fast path needs the minute in its cache
        parse_timestamp('2022-04-28T07:38:00.000000')
        parse_timestamp('2022-04-28T07:39:00.000000')
        record = dict(top)
        if flat:
            record.update(event)
        else:
            record['event'] = event
        # both orders: the careful path fills the minute cache
        for _ in range(2):
            fast = parse_record(record, 3, b'raw')
            careful = _parse_record(record, 3, b'raw')
            self.assertIs(fast.__class__, careful.__class__)
            if fast.__class__ is Reject:
                self.assertEqual(fast, careful)
            else:
                self.assertEqual(fast.to_row(), careful.to_row())


class TimestampTests(unittest.TestCase):

    def test_forms(self):
        self.assertEqual(parse_timestamp('1970-01-01T00:00:00.000001'), 1)
        self.assertEqual(parse_timestamp('1970-01-01 00:00:01.000000'),
                         1000000)
        self.assertEqual(parse_timestamp('1970-01-01T00:00:01Z'), 1000000)
        self.assertEqual(parse_timestamp('1970-01-01T02:00:00+02:00'), 0)
        self.assertEqual(parse_timestamp('1970-01-01T00:00:00.5'), 500000)
        self.assertEqual(parse_timestamp(2.25), 2250000)

    def test_bad(self):
        for bad in ['2022-04-28T24:00:00.000000',
                    '2022-04-28T23:60:00.000000',
                    '2022-04-28T23:00:60.000000',
                    '2022-04-28T07:38:4x.290271', '2022-04-31T00:00:00',
                    '2022-04-28T07:38:4\u00b2.290271',
                    '2022-04-28X07:38:40.290271',
                    '', 'yesterday', None, [], float('nan'), True]:
            with self.assertRaises(ValueError, msg=repr(bad)):
                parse_timestamp(bad)

    def test_bad_in_a_record(self):
        # the per-hit path inlines the fast parse: same strictness
        for bad in ['2022-04-28T07:38:4\u00b2.290271',
                    '2022-04-28X07:38:40.290271',
                    '2022-04-28T07:38:60.290271']:
            parse_timestamp('2022-04-28T07:38:00.000000')   # cache it
            line = orjson.dumps({'id': 1, 'type': 'x',
                                 'event': {'timestamp': bad}})
            self.assertIs(parse_line(line, 1).__class__, Reject, bad)

    @given(st.datetimes(min_value=__import__('datetime').datetime(1971, 1, 1),
                        max_value=__import__('datetime').datetime(2200, 1, 1)))
    def test_fast_path_agrees_with_datetime(self, dt):
        import datetime
        expected = (dt.replace(tzinfo=datetime.timezone.utc)
                    - datetime.datetime(1970, 1, 1,
                                        tzinfo=datetime.timezone.utc))
        expected = (expected.days * 86400 + expected.seconds) * 10**6 \
            + expected.microseconds
        text = dt.isoformat(timespec='microseconds')
        self.assertEqual(parse_timestamp(text), expected)
        self.assertEqual(parse_timestamp(text + 'Z'), expected)


def lines_input(*lines):
    return b'\n'.join(lines) + b'\n'


def array_input(*items):
    return b'[\n  ' + b',\n  '.join(items) + b'\n]\n'


class ReaderTests(unittest.TestCase):

    # balanced, so that an array splitter still finds the item's end
    records = [SEARCH, b'{broken}', VIEW]

    def check(self, source, linenos):
        got = list(read_records(source))
        self.assertEqual([n for n, _ in got], linenos)
        self.assertEqual([raw.strip() for _, raw in got], self.records)

    def forms(self):
        jsonl = lines_input(*self.records)
        array = array_input(*self.records)
        return [('jsonl', jsonl, [1, 2, 3]), ('array', array, [2, 3, 4]),
                ('jsonl.gz', gzip.compress(jsonl), [1, 2, 3]),
                ('array.gz', gzip.compress(array), [2, 3, 4])]

    def test_paths(self):
        with tempfile.TemporaryDirectory() as tmp:
            for name, data, linenos in self.forms():
                # the name says nothing: the content decides
                path = pathlib.Path(tmp, name.replace('.', '_'))
                path.write_bytes(data)
                self.check(str(path), linenos)
                self.check(path, linenos)

    def test_file_objects(self):
        for name, data, linenos in self.forms():
            self.check(io.BytesIO(data), linenos)

    def test_pipes(self):
        # a real pipe neither seeks nor (as a raw FileIO) peeks
        for name, data, linenos in self.forms():
            r, w = os.pipe()

            def feed(w=w, data=data):
                with open(w, 'wb', buffering=0) as f:
                    f.write(data)

            t = threading.Thread(target=feed)
            t.start()
            with open(r, 'rb', buffering=0) as f:
                self.check(f, linenos)
            t.join()

    def test_stdin_of_a_real_process(self):
        code = ('import sys\n'
                'from trackstore.sessions import read_records\n'
                'for n, raw in read_records("-"):\n'
                '    print(n, len(raw.strip()))\n')
        for name, data, linenos in self.forms():
            out = subprocess.run(
                [sys.executable, '-c', code], input=data,
                capture_output=True, check=True,
                env=python_env()).stdout.decode()
            self.assertEqual(
                out.split(),
                [str(x) for n, raw in zip(linenos, self.records)
                 for x in (n, len(raw))], name)

    def test_blank_lines_are_skipped(self):
        got = list(read_records(io.BytesIO(b'\n' + SEARCH + b'\n\n  \n'
                                           + VIEW)))
        self.assertEqual([n for n, _ in got], [2, 5])

    def test_array_junk_is_a_record(self):
        got = list(read_records(io.BytesIO(b'[' + SEARCH + b'] trailing')))
        self.assertEqual([raw for _, raw in got], [SEARCH, b'trailing'])
        got = list(read_records(io.BytesIO(b'[' + SEARCH + b', {"id": 2')))
        self.assertEqual([raw for _, raw in got], [SEARCH, b'{"id": 2'])
        self.assertEqual(list(read_records(io.BytesIO(b'[]'))), [])
        self.assertEqual(list(read_records(io.BytesIO(b''))), [])

    @settings(max_examples=200, deadline=None)
    @given(st.lists(st.recursive(
        st.none() | st.booleans() | st.text()
        | st.integers(min_value=-2**63, max_value=2**63 - 1),
        lambda c: st.lists(c, max_size=3)
        | st.dictionaries(st.text(max_size=5), c, max_size=3),
        max_leaves=8), max_size=8),
        st.sampled_from([b'', b' ', b'\n', b'\r\n\t']),
        st.integers(min_value=1, max_value=17),
        st.sampled_from([0, orjson.OPT_INDENT_2]))
    def test_array_split_round_trip(self, items, space, chunk, option):
        # compact items one per line take the line path, pretty-printed
        # (multi-line) ones the nesting path
        data = b'[' + space + (b',' + space).join(
            orjson.dumps(i, option=option) for i in items) + space + b']'
        got = [orjson.loads(raw) for _, raw in
               split_array(io.BytesIO(data), chunk_size=chunk)]
        self.assertEqual(got, items)

    def test_broken_items_cost_one_record_each(self):
        # the generator's malformed lines include truncated JSON; in an
        # array each must stay one record, not swallow the rest
        out = io.BytesIO()
        generate(customers=100, days=3, seed=7, out=out, malformed=0.05)
        lines = [line for line in out.getvalue().split(b'\n') if line]
        for sep in (b',\n', b', ', b','):
            data = b'[' + sep.join(lines) + b']'
            for chunk in (97, 1 << 16):
                got = [raw for _, raw in split_array(
                    io.BytesIO(data), chunk_size=chunk)]
                self.assertEqual(got, lines, (sep, chunk))

    def test_array_line_numbers(self):
        data = b'[\n' + SEARCH + b',\n\n' + VIEW + b'\n]'
        got = list(split_array(io.BytesIO(data), chunk_size=5))
        self.assertEqual([n for n, _ in got], [2, 4])


class RejectsTests(unittest.TestCase):

    def test_every_reject_accounted_for(self):
        data = lines_input(
            SEARCH, b'not json', VIEW,
            b'{"id": 3, "type": "x", "event": {"ip": "1"}}',
            b'{"id": 4, "type": "x", "event": {"timestamp": "2022-13-01"}}',
            b'{"type": "x", "event": {"timestamp": 5}}')
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, 'rejects.jsonl')
            writer = RejectsWriter(path)
            self.assertFalse(os.path.exists(path))
            hits = list(read_hits(io.BytesIO(data), writer))
            writer.close()
            self.assertEqual([h.id for h in hits], [463469, 452437])
            self.assertEqual(writer.count, 4)
            self.assertEqual(dict(writer.reasons), {
                'not JSON': 1, 'missing timestamp': 1,
                'unparsable timestamp': 1, 'missing id': 1})
            with open(path, 'rb') as f:
                rows = [orjson.loads(line) for line in f]
        self.assertEqual([r['line'] for r in rows], [2, 4, 5, 6])
        self.assertEqual(rows[0]['raw'], 'not json')
        self.assertTrue(rows[0]['reason'].startswith('not JSON'))
        self.assertEqual(rows[1]['reason'], 'missing timestamp')

    def test_writer_to_a_file_object_and_bad_bytes(self):
        out = io.BytesIO()
        with RejectsWriter(out) as writer:
            writer.write(parse_line(b'\xff\xfe{', 9))
        row = orjson.loads(out.getvalue())
        self.assertEqual(row['line'], 9)
        self.assertEqual(row['raw'], '\ufffd\ufffd{')


class GenerateTests(unittest.TestCase):

    def test_deterministic_and_realistic(self):
        a, b, c = io.BytesIO(), io.BytesIO(), io.BytesIO()
        n = generate(customers=60, days=3, seed=5, out=a)
        generate(customers=60, days=3, seed=5, out=b)
        generate(customers=60, days=3, seed=6, out=c)
        self.assertEqual(a.getvalue(), b.getvalue())
        self.assertNotEqual(a.getvalue(), c.getvalue())
        self.assertEqual(a.getvalue().count(b'\n'), n)
        rejects = []
        hits = list(read_hits(io.BytesIO(a.getvalue()),
                              type('R', (), {'write': rejects.append})()))
        self.assertEqual(len(hits) + len(rejects), n)
        types = {h.type for h in hits}
        self.assertEqual(types, {'search', 'page_view', 'add_to_cart',
                                 'placed_order'})
        self.assertEqual(len({h.id for h in hits}), len(hits))
        customers = {h.customer for h in hits}
        self.assertIn(None, customers)
        self.assertGreater(len(customers), 30)
        # roughly in time order, a few lines up to 10 s late
        latest = 0
        disorder = 0
        for h in hits:
            if h.us < latest:
                disorder += 1
                self.assertLessEqual(latest - h.us, 10 * 10**6)
            latest = max(latest, h.us)
        self.assertGreater(disorder, 0)
        # logins in mid-session: anonymous hits then the customer, same
        # stamp, within a minute or so
        by_stamp = {}
        logins = 0
        for h in sorted(hits, key=lambda h: h.us):
            prev = by_stamp.get(h.stamp)
            if (prev is not None and prev.customer is None
                    and h.customer is not None
                    and h.us - prev.us < 20 * 60 * 10**6):
                logins += 1
            by_stamp[h.stamp] = h
        self.assertGreater(logins, 0)

    def test_malformed_lines(self):
        out = io.BytesIO()
        n = generate(customers=200, days=4, seed=1, out=out,
                     malformed=0.02)
        rejects = []
        hits = list(read_hits(io.BytesIO(out.getvalue()),
                              type('R', (), {'write': rejects.append})()))
        self.assertEqual(len(hits) + len(rejects), n)
        kinds = {r.reason.split(' ')[0] for r in rejects}
        self.assertEqual(kinds, {'not', 'missing', 'unparsable'})

    def test_gzip_path(self):
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, 'hits.jsonl.gz')
            n = generate(customers=20, days=1, seed=2, out=path)
            self.assertEqual(sum(1 for _ in read_records(path)), n)
            with open(path, 'rb') as f:
                self.assertEqual(f.read(2), b'\x1f\x8b')

    def test_seeds_give_disjoint_ids(self):
        ids = {}
        for seed in (0, 1, 2, -1):
            out = io.BytesIO()
            generate(customers=30, days=2, seed=seed, out=out)
            ids[seed] = {h.id for h in read_hits(io.BytesIO(
                out.getvalue()))}
            self.assertTrue(all(seed * 10**9 < i < (seed + 1) * 10**9
                                for i in ids[seed]), seed)
        self.assertEqual(min(ids[0]), 400001)   # as it always was
        self.assertEqual(min(ids[2]), 2000400001)
        with self.assertRaises(ValueError):
            generate(customers=1, days=1, seed=2 ** 40, out=io.BytesIO())
