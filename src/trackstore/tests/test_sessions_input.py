"""Bad input: what the reader and the parser say about it (issue 8.5)."""
import datetime
import gzip
import io
import os
import tempfile
import unittest
import zlib

import orjson
from hypothesis import given
from hypothesis import settings
from hypothesis import strategies as st

from trackstore.sessions import generate
from trackstore.sessions.hits import DEFAULT_LIMITS
from trackstore.sessions.hits import Hit
from trackstore.sessions.hits import InputBroken
from trackstore.sessions.hits import InputError
from trackstore.sessions.hits import Limits
from trackstore.sessions.hits import Reject
from trackstore.sessions.hits import RejectsWriter
from trackstore.sessions.hits import check_id
from trackstore.sessions.hits import check_source
from trackstore.sessions.hits import open_source
from trackstore.sessions.hits import parse_line
from trackstore.sessions.hits import parse_record
from trackstore.sessions.hits import read_hits
from trackstore.sessions.hits import read_records
from trackstore.sessions.hits import sniff_format


#: The uid and gid of ``nobody`` on Debian.
NOBODY = 65534


def hit(id=1, timestamp='2022-04-28T07:38:46.290271', **event):
    event.setdefault('timestamp', timestamp)
    return orjson.dumps({'id': id, 'type': 'x', 'event': event})


def generated(customers=30, days=1, seed=0):
    out = io.BytesIO()
    generate(customers=customers, days=days, seed=seed, out=out,
             malformed=0)
    return out.getvalue()


class IdTests(unittest.TestCase):

    def reason(self, value):
        line = hit(0).replace(b'"id":0', b'"id":' + orjson.dumps(
            value) if value.__class__ is not int else b'"id":%d' % value)
        reject = parse_line(line, 7)
        self.assertIs(reject.__class__, Reject, value)
        return reject.reason

    def test_what_is_wrong(self):
        self.assertEqual(
            self.reason(1.5),
            'bad id: must be an integer or a string, got float 1.5')
        self.assertEqual(
            self.reason(True),
            'bad id: must be an integer or a string, got true')
        self.assertEqual(
            self.reason([1]),
            'bad id: must be an integer or a string, got an array')
        self.assertEqual(self.reason(''), 'bad id: an empty string')
        self.assertEqual(self.reason(None), 'missing id')
        self.assertEqual(
            self.reason(2 ** 70), 'bad id: 1180591620717411303424 is '
            'outside the 64-bit integer range (give larger ids as strings)')
        # (JSON readers give some of these as floats: digits may change)
        for big in (2 ** 64 - 1, 2 ** 63, -2 ** 63 - 1):
            reason = self.reason(big)
            self.assertTrue(reason.startswith('bad id: '), reason)
            self.assertIn('is outside the 64-bit integer range', reason)

    def test_an_integer_and_its_text_are_one_id(self):
        a = parse_line(hit(12345), 1)
        b = parse_line(hit('12345'), 2)
        self.assertEqual((a.id, a.idkey), (12345, '12345'))
        self.assertEqual((b.id, b.idkey), (12345, '12345'))
        self.assertIs(b.id.__class__, int)
        for edge in (2 ** 63 - 1, -2 ** 63, 0, -1):
            self.assertEqual(check_id(str(edge)), (edge, None))

    def test_other_strings_stay_strings(self):
        for text in ('012345', '-0', '+5', ' 5', '5 ', '1e3', '12a',
                     str(2 ** 63), '\u0661\u0662', 'abc'):
            self.assertEqual(check_id(text), (text, None), text)

    @given(st.integers(-2 ** 63, 2 ** 63 - 1) | st.text(min_size=1))
    def test_fast_path_normalizes_too(self, value):
        # the fast path (usual shape) and check_id agree
        line = hit(value, ip='1.2.3.4', **{'user-agent': 'a',
                                           'customer-id': None})
        got = parse_line(line, 1)
        self.assertEqual(got.id, check_id(value)[0])


class TimeTests(unittest.TestCase):

    def us(self, when):
        got = parse_line(hit(timestamp=when), 1)
        self.assertIs(got.__class__, Hit, (when, got))
        return got.us

    def test_zones_are_converted_to_utc(self):
        base = self.us('2022-04-28T07:38:46.290271')
        for when in ('2022-04-28T07:38:46.290271Z',
                     '2022-04-28T07:38:46.290271z',
                     '2022-04-28T07:38:46.290271+00:00',
                     '2022-04-28T09:38:46.290271+02:00',
                     '2022-04-28T09:38:46.290271+0200',
                     '2022-04-28T05:08:46.290271-02:30',
                     '2022-04-28 07:38:46.290271Z',
                     '2022-04-28t07:38:46.290271z'):
            self.assertEqual(self.us(when), base, when)
        self.assertEqual(self.us('2022-04-28T07:38:46Z'), base - 290271)
        self.assertEqual(self.us(1651131526.290271), base)

    def test_epoch_milliseconds_are_rejected(self):
        reject = parse_line(hit(timestamp=1651131526290), 3)
        self.assertIs(reject.__class__, Reject)
        self.assertTrue(reject.reason.startswith(
            'timestamp outside the window: 1651131526290 is not within'
            ' 1990-01-01T00:00:00'), reject.reason)
        self.assertIn('epoch milliseconds?', reject.reason)
        for when in ('1970-01-01T00:00:00Z', '9999-12-31T23:59:59',
                     '1989-12-31T23:59:59.999999', 0, -5):
            reject = parse_line(hit(timestamp=when), 1)
            self.assertIs(reject.__class__, Reject, when)
            self.assertTrue(reject.reason.startswith(
                'timestamp outside the window'), reject.reason)
        self.assertEqual(self.us('1990-01-01T00:00:00'), 631152000000000)

    def test_the_window_is_settable(self):
        limits = Limits(min_time='2022-04-28', max_time=1651190400)
        ok = hit(timestamp='2022-04-28T07:38:46.290271')
        self.assertIs(parse_line(ok, 1, limits).__class__, Hit)
        for when in ('2022-04-27T23:59:59.999999Z',
                     '2022-04-29T00:00:00.000001'):
            got = parse_line(hit(timestamp=when), 1, limits)
            self.assertIs(got.__class__, Reject, when)
        old = Limits(min_time=0)
        self.assertIs(parse_line(hit(timestamp=10), 1, old).__class__, Hit)
        with self.assertRaises(ValueError):
            Limits(min_time='2022-01-01', max_time='2021-01-01')

    def test_the_default_end_moves_with_the_clock(self):
        limits = Limits()
        soon = datetime.datetime.now(datetime.timezone.utc) \
            + datetime.timedelta(hours=12)
        self.assertIs(parse_line(hit(timestamp=soon.isoformat()), 1,
                                 limits).__class__, Hit)
        # as if the limits were made two days ago
        limits.max_us -= 2 * 86400 * 10 ** 6
        self.assertIs(parse_line(hit(timestamp=soon.isoformat()), 1,
                                 limits).__class__, Hit)
        later = soon + datetime.timedelta(days=1)
        self.assertIs(parse_line(hit(timestamp=later.isoformat()), 1,
                                 limits).__class__, Reject)

    def test_the_fast_path_checks_the_window(self):
        limits = Limits(min_time='2022-04-28T08:00:00')
        line = hit(timestamp='2022-04-28T07:38:46.290271', ip='1',
                   **{'user-agent': 'a', 'customer-id': None})
        self.assertIs(parse_line(line, 1).__class__, Hit)    # cached
        self.assertIs(parse_line(line, 1, limits).__class__, Reject)


class SizeTests(unittest.TestCase):

    def test_a_huge_hit_is_rejected_unparsed(self):
        line = hit(query='x' * (2 << 20))
        reject = parse_line(line, 4)
        self.assertIs(reject.__class__, Reject)
        self.assertEqual(reject.reason,
                         'hit too large: %d bytes, the most is %d'
                         % (len(line), 1 << 20))
        self.assertIs(parse_line(line, 4, Limits(max_bytes=None))
                      .__class__, Hit)
        self.assertIs(parse_line(hit(), 4, Limits(max_bytes=50))
                      .__class__, Reject)


# lone surrogates too: json.loads (the web route's) gives them
TEXT = st.text(st.characters(blacklist_categories=()), max_size=30)


class NeverRaisesTests(unittest.TestCase):
    """Bad input never crashes the parser: anything gives a Hit or a
    Reject."""

    json = st.recursive(
        st.none() | st.booleans() | st.floats() | TEXT
        | st.integers(-2 ** 80, 2 ** 80)
        | st.sampled_from(['2022-04-28T07:38:46.290271',
                           '2022-04-28T07:38:46Z', '1651131526']),
        lambda c: st.lists(c, max_size=3) | st.dictionaries(
            st.sampled_from(['id', 'type', 'event', 'timestamp', 'ip',
                             'user-agent', 'customer-id', 'session-stamp',
                             'client-id']) | TEXT,
            c, max_size=6),
        max_leaves=12)

    def check(self, got, lineno):
        self.assertIn(got.__class__, (Hit, Reject))
        if got.__class__ is Reject:
            self.assertEqual(got.lineno, lineno)
            self.assertIsInstance(got.reason, str)
        else:
            self.assertTrue(DEFAULT_LIMITS.min_us <= got.us
                            <= DEFAULT_LIMITS.max_us)
            self.assertIn(got.id.__class__, (int, str))

    @settings(max_examples=500, deadline=None)
    @given(st.binary(max_size=200))
    def test_bytes(self, data):
        self.check(parse_line(data, 3), 3)

    @settings(max_examples=300, deadline=None)
    @given(st.text(st.characters(blacklist_categories=()), max_size=100))
    def test_text(self, data):
        self.check(parse_line(data, 3), 3)

    @settings(max_examples=500, deadline=None)
    @given(json)
    def test_json_values(self, value):
        self.check(parse_record(value, 5, b''), 5)
        try:
            line = orjson.dumps(value)
        except (TypeError, orjson.JSONEncodeError):
            return
        self.check(parse_line(line, 5), 5)

    @settings(max_examples=300, deadline=None)
    @given(json, json, json)
    def test_hit_shaped(self, hid, when, other):
        record = {'id': hid, 'type': other, 'event': {
            'timestamp': when, 'ip': other, 'user-agent': other,
            'customer-id': other}}
        self.check(parse_record(record, 5, b''), 5)

    @settings(max_examples=200, deadline=None)
    @given(st.binary(max_size=300), st.sampled_from([
        'auto', 'jsonl', 'array']), st.booleans())
    def test_reader(self, data, format, gz):
        if gz:
            data = gzip.compress(data)[:len(data) // 2 + 10]
        try:
            reader = read_hits(io.BytesIO(data), format=format)
        except InputError:
            return
        for got in reader:
            self.assertIs(got.__class__, Hit)
        self.assertIn(reader.broken.__class__, (InputBroken, type(None)))


class FormatTests(unittest.TestCase):

    def ids(self, data, **kw):
        return [h.id for h in read_hits(io.BytesIO(data), **kw)]

    def test_jsonl_whose_first_line_is_an_array(self):
        data = b'[1]\n' + hit(1) + b'\n' + hit(2) + b'\n'
        self.assertEqual(sniff_format(data, True), 'jsonl')
        self.assertEqual(self.ids(data), [1, 2])
        records = read_records(io.BytesIO(data))
        self.assertEqual(records.format, 'jsonl')
        self.assertEqual(len(list(records)), 3)
        # a larger first line, past what one peek gives
        big = orjson.dumps(list(range(30000)))
        self.assertEqual(self.ids(big + b'\n' + hit(1) + b'\n'), [1])

    def test_jsonl_whose_first_line_is_broken(self):
        data = b'[1, 2\n' + hit(1) + b'\n' + hit(2) + b'\n' + hit(3)
        self.assertEqual(sniff_format(data, True), 'jsonl')
        self.assertEqual(self.ids(data), [1, 2, 3])

    def test_arrays(self):
        items = [hit(1), hit(2), hit(3)]
        forms = [
            b'[' + b','.join(items) + b']',
            b'[' + b','.join(items) + b']\n\n',
            b'  \n[' + b', '.join(items) + b']',
            b'[\n' + b',\n'.join(items) + b'\n]\n',
            b'[' + b',\n'.join(items) + b']\n',
            b'[\n' + b'\n,\n'.join(items) + b'\n]\n',
            b'[' + b'\n,'.join(items) + b'\n]\n',
            orjson.dumps([orjson.loads(i) for i in items],
                         option=orjson.OPT_INDENT_2),
            b'[]',
        ]
        for data in forms:
            self.assertEqual(sniff_format(data, True), 'array', data)
            want = [] if data == b'[]' else [1, 2, 3]
            self.assertEqual(self.ids(data), want, data)
            self.assertEqual(self.ids(gzip.compress(data)), want, data)
        self.assertEqual(sniff_format(b'{"id": 1}\n[', True), 'jsonl')
        self.assertEqual(sniff_format(b'', True), 'jsonl')

    def test_a_long_single_line_array(self):
        items = [hit(i, query='q' * 500) for i in range(1, 400)]
        data = b'[' + b','.join(items) + b']'
        self.assertGreater(len(data), 1 << 16)
        self.assertEqual(self.ids(data), list(range(1, 400)))

    def test_the_format_option_settles_it(self):
        data = b'[1]\n' + hit(1) + b'\n'
        self.assertEqual(self.ids(data, format='jsonl'), [1])
        # an array [1], then text after it: a record of its own
        reader = read_hits(io.BytesIO(data), format='array')
        self.assertEqual([h.id for h in reader], [1])
        self.assertEqual((reader.read, reader.rejected), (2, 1))
        array = b'[' + hit(1) + b',\n' + hit(2) + b']'
        self.assertEqual(self.ids(array, format='array'), [1, 2])
        with self.assertRaises(InputError) as c:
            read_records(io.BytesIO(hit(1)), format='array')
        self.assertIn("not a JSON array: it starts with '{'",
                      str(c.exception))
        with self.assertRaises(ValueError):
            read_records(io.BytesIO(b''), format='csv')


class BrokenInputTests(unittest.TestCase):

    def test_truncated_gzip(self):
        data = generated(customers=80, days=2)
        lines = data.splitlines()
        gz = gzip.compress(data)
        for cut in (len(gz) // 3, len(gz) - 9, 30):
            # all that zlib itself can give of the cut stream
            d = zlib.decompressobj(31)
            can = d.decompress(gz[:cut])
            whole = can.count(b'\n')
            records = read_records(io.BytesIO(gz[:cut]))
            got = [raw.rstrip(b'\n') for _, raw in records]
            self.assertEqual(got[:whole], lines[:whole])
            # the line the break cut comes out too (as a record that
            # will not parse)
            self.assertEqual(len(got), whole + (can[-1:] != b'\n'
                                                and len(can) > 0))
            broken = records.broken
            self.assertIsInstance(broken, InputBroken)
            self.assertEqual(broken.lineno, whole + 1)
            self.assertEqual(broken.offset, len(can))
            self.assertIn('truncated', broken.reason)
            self.assertEqual(
                str(broken), 'input broken at line %d (byte %d): %s'
                % (whole + 1, len(can), broken.reason))

    def test_truncated_gzip_array(self):
        items = [hit(i) for i in range(1, 2001)]
        gz = gzip.compress(b'[\n' + b',\n'.join(items) + b'\n]\n')
        reader = read_hits(io.BytesIO(gz[:len(gz) // 2]))
        ids = [h.id for h in reader]
        self.assertEqual(ids, list(range(1, len(ids) + 1)))
        self.assertGreater(len(ids), 100)
        self.assertIsNotNone(reader.broken)
        self.assertEqual(reader.format, 'array')

    def test_corrupt_gzip(self):
        data = generated()
        gz = bytearray(gzip.compress(data))
        gz[len(gz) // 2] ^= 0xff
        records = read_records(io.BytesIO(bytes(gz)))
        n = len(list(records))
        self.assertLessEqual(n, data.count(b'\n'))
        self.assertIsNotNone(records.broken)
        # not a gzip stream past its magic bytes
        records = read_records(io.BytesIO(b'\x1f\x8bnot gzip at all'))
        self.assertEqual(list(records), [])
        self.assertEqual(records.broken.lineno, 1)
        self.assertEqual(records.broken.offset, 0)

    def test_whole_input_is_not_broken(self):
        records = read_records(io.BytesIO(gzip.compress(generated())))
        list(records)
        self.assertIsNone(records.broken)

    def test_a_read_error(self):
        class Failing(io.RawIOBase):
            def __init__(self):
                self.data = io.BytesIO(hit(1) + b'\n' + hit(2) + b'\n')

            def readable(self):
                return True

            def readinto(self, b):
                data = self.data.read(min(len(b), 30))
                if not data:
                    raise OSError(5, 'Input/output error')
                b[:len(data)] = data
                return len(data)

        reader = read_hits(Failing())
        self.assertEqual([h.id for h in reader], [1, 2])
        self.assertEqual(reader.broken.reason, 'Input/output error')
        self.assertEqual(reader.broken.lineno, 3)


class LivePipeTests(unittest.TestCase):

    def test_a_record_is_given_before_more_input_comes(self):
        # trackstore ingest - --follow: sniffing and reading must not
        # wait for a buffer's worth of a live pipe
        import threading
        r, w = os.pipe()
        got = []
        with open(r, 'rb', buffering=0) as fr, open(w, 'wb', 0) as fw:
            fw.write(hit(1) + b'\n')

            def first():
                got.append(iter(read_records(fr)))
                got.append(next(got[0]))

            t = threading.Thread(target=first)
            t.start()
            t.join(10)
            self.assertEqual(got[1:], [(1, hit(1) + b'\n')])
            fw.write(hit(2) + b'\n')
            fw.close()
            self.assertEqual(list(got[0]), [(2, hit(2) + b'\n')])

    def test_an_array_on_a_pipe(self):
        import threading
        r, w = os.pipe()
        data = b'[' + b',\n'.join(hit(i) for i in range(1, 4)) + b']\n'

        def feed():
            with open(w, 'wb', 0) as fw:
                for i in range(0, len(data), 7):
                    fw.write(data[i:i + 7])

        t = threading.Thread(target=feed)
        t.start()
        with open(r, 'rb', buffering=0) as fr:
            self.assertEqual([h.id for h in read_hits(fr)], [1, 2, 3])
        t.join()


def unprivileged(fn):
    """What ``fn()`` raises (``'Type: message'``, or None) when called
    without root's right to read anything: in a forked child that drops
    to the user ``nobody`` when the tests run as root (CI does)."""
    if os.geteuid() != 0:
        try:
            fn()
        except Exception as e:
            return '%s: %s' % (type(e).__name__, e)
        return None
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:                        # pragma: no cover - the child
        os.close(r)
        try:
            os.setgid(NOBODY)
            os.setuid(NOBODY)
            fn()
            told = b''
        except BaseException as e:
            told = ('%s: %s' % (type(e).__name__, e)).encode()
        os.write(w, told)
        os._exit(0)
    os.close(w)
    with os.fdopen(r, 'rb') as f:
        told = f.read().decode()
    os.waitpid(pid, 0)
    return told or None


class SourceTests(unittest.TestCase):

    def test_paths_that_cannot_be_read(self):
        with tempfile.TemporaryDirectory() as tmp:
            for source, reason in (
                    (tmp, 'is a directory, not a file'),
                    (os.path.join(tmp, 'nope.jsonl'), 'no such file')):
                for call in (check_source, open_source, read_records,
                             read_hits):
                    with self.assertRaises(InputError) as c:
                        call(source)
                    self.assertEqual(str(c.exception),
                                     '%s: %s' % (source, reason))
                    self.assertEqual(c.exception.where, source)

    def test_permission_denied(self):
        with tempfile.TemporaryDirectory() as tmp:
            os.chmod(tmp, 0o755)
            path = os.path.join(tmp, 'h.jsonl')
            with open(path, 'wb') as f:
                f.write(hit())
            os.chmod(path, 0)
            self.assertEqual(
                unprivileged(lambda: check_source(path)),
                'InputError: %s: cannot read it: permission denied' % path)

    def test_open_source(self):
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, 'h.jsonl')
            with open(path, 'wb') as f:
                f.write(hit())
            f, size = open_source(path)
            f.close()
            self.assertEqual(size, len(hit()))


class AccountingTests(unittest.TestCase):

    def test_every_reject_has_its_line_and_reason(self):
        lines = [hit(1), hit(1.5), hit(2, timestamp=1651131526290),
                 b'[1]', hit(3, timestamp='2022-04-28T07:38:46Z'),
                 hit(4, query='x' * 300), hit('4'), b'{"id": 5']
        out = io.BytesIO()
        writer = RejectsWriter(out)
        reader = read_hits(io.BytesIO(b'\n'.join(lines)), writer,
                           limits=Limits(max_bytes=200))
        self.assertEqual([h.id for h in reader], [1, 3, 4])
        self.assertEqual((reader.read, reader.hits, reader.rejected),
                         (8, 3, 5))
        rows = [orjson.loads(r) for r in out.getvalue().splitlines()]
        self.assertEqual([r['line'] for r in rows], [2, 3, 4, 6, 8])
        self.assertEqual(dict(writer.reasons), {
            'bad id': 1, 'timestamp outside the window': 1,
            'not a JSON object': 1, 'hit too large': 1, 'not JSON': 1})


class CommandTests(unittest.TestCase):
    """``trackstore ingest`` on bad input: one line, non-zero exit."""

    def run_cli(self, *args, cwd):
        import subprocess
        import sys
        command = os.path.join(os.path.dirname(sys.executable), 'trackstore')
        return subprocess.run(
            [command, 'ingest', '--db', 'memory://', '--no-progress']
            + list(args), cwd=cwd, capture_output=True, text=True,
            timeout=300)

    def test_one_line_each(self):
        with tempfile.TemporaryDirectory() as tmp:
            for name, data in (('empty.jsonl', b''),
                               ('bad.jsonl', b'nothing\n[1]\n')):
                with open(os.path.join(tmp, name), 'wb') as f:
                    f.write(data)
            cases = [
                (tmp, '%s: is a directory, not a file' % tmp),
                ('nope.jsonl', 'nope.jsonl: no such file'),
                ('empty.jsonl', 'empty.jsonl: no hits: the input is empty'),
                ('bad.jsonl', 'bad.jsonl: no valid hit: 2 records, all '
                 'rejected (see %s)' % os.path.join(
                     tmp, 'bad.jsonl.rejects.jsonl')),
            ]
            for n, (source, message) in enumerate(cases):
                proc = self.run_cli(source, cwd=tmp)
                # 2: PATH cannot be read; 1: nothing in it to load
                self.assertEqual(proc.returncode, 2 if n < 2 else 1,
                                 proc.stderr)
                self.assertEqual(proc.stderr, 'Error: %s\n' % message)

    def test_jsonl_after_an_array_line_is_read(self):
        with tempfile.TemporaryDirectory() as tmp:
            with open(os.path.join(tmp, 'h.jsonl'), 'wb') as f:
                f.write(b'[1]\n' + generated())
            proc = self.run_cli('h.jsonl', '--json', cwd=tmp)
            self.assertEqual(proc.returncode, 0, proc.stderr)
            report = orjson.loads(proc.stdout)
            self.assertEqual(report['read'],
                             generated().count(b'\n') + 1)
            self.assertEqual(report['rejected'], 1)

    def test_broken_input_exits_3(self):
        import click

        from trackstore.cli import _check_load

        class Report:
            read = 120
            rejected = 1
            rejects_path = 'r.jsonl'
            broken = InputBroken(121, 50000, 'truncated (...)')

        with self.assertRaises(click.ClickException) as c:
            _check_load('h.jsonl.gz', Report())
        self.assertEqual(c.exception.exit_code, 3)
        self.assertEqual(
            c.exception.message,
            'h.jsonl.gz: input broken at line 121 (byte 50000): '
            'truncated (...); what came before it is loaded (120 records '
            'read)')
        Report.read = Report.rejected = 0
        with self.assertRaises(click.ClickException) as c:
            _check_load('-', Report())
        self.assertEqual(c.exception.exit_code, 1)
        self.assertTrue(c.exception.message.startswith(
            'standard input: input broken at line 121'))


class LargeRecordsTests(unittest.TestCase):

    def test_counted_not_shown(self):
        import contextlib
        import warnings

        from trackstore.cli import _LargeRecords
        err = io.StringIO()
        shown = []
        with contextlib.redirect_stderr(err), \
                warnings.catch_warnings():
            warnings.simplefilter('always')
            warnings.showwarning = lambda *a, **kw: shown.append(a[0])
            with _LargeRecords() as large:
                for size in (17 << 20, 18 << 20):
                    warnings.warn("The <class 'x'>\nobject you're saving "
                                  "is large. (%d bytes.)\n..." % size)
                warnings.warn('something else')
        self.assertEqual(large.count, 2)
        self.assertEqual([str(w) for w in shown], ['something else'])
        self.assertEqual(err.getvalue(), "note: 2 records were larger than"
                         " ZODB's large-record size\n")
