"""Export: sessions with their hits out, and back in as the same
sessions and metrics; real file storages, the command as users run it.
"""
import os
import shutil
import subprocess
import tempfile
import unittest

import orjson
from click.testing import CliRunner
from zope.interface.verify import verifyObject

from trackstore.cli import main
from trackstore.db import get_storage
from trackstore.db import open_db
from trackstore.db import transact
from trackstore.export import FORMATS
from trackstore.export import export
from trackstore.export import read_export
from trackstore.interfaces import IExportReport
from trackstore.metrics import compute
from trackstore.privacy import privacy_settings
from trackstore.retention import parse_time
from trackstore.tests import TRACKSTORE
from trackstore.tests import python_env
from trackstore.tests import stored_visits
from trackstore.tests.userdata import erin_hits
from trackstore.tests.userdata import generated_hits
from trackstore.tests.userdata import hit
from trackstore.tests.userdata import minutes
from trackstore.tests.userdata import other_hits
from trackstore.tests.userdata import write_hits


def cookie_hits():
    """A visitor with a cookie id on two addresses (two stamps, one
    client), who logs in later: the owner is the cookie, not a stamp."""
    return [
        hit(700001, 'search', minutes(40), ip='10.4.0.1', query='mug',
            **{'client-id': 'cookie-1'}),
        hit(700002, 'page_view', minutes(45), ip='10.4.0.2', page='/m',
            **{'client-id': 'cookie-1'}),
        hit(700003, 'placed_order', minutes(50), '7100', ip='10.4.0.2',
            order='o-7100'),
    ]


def all_hits():
    return (erin_hits() + other_hits() + cookie_hits()
            + generated_hits(customers=25, days=3))


def state(storage):
    """What a round trip keeps: the sessions and both metrics."""
    return (stored_visits(storage), compute(storage), compute(storage, True))


class Base(unittest.TestCase):

    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix='trackstore-export-')
        self.addCleanup(shutil.rmtree, self.dir, True)
        self.source = write_hits(self.path('hits.jsonl'), all_hits())

    def path(self, name):
        return os.path.join(self.dir, name)

    def cli(self, *args, code=0):
        result = CliRunner().invoke(main, list(args), catch_exceptions=False)
        self.assertEqual(result.exit_code, code, result.output)
        return result

    def read(self, name, fn):
        db = open_db(self.path(name), create=False)
        try:
            conn = db.open()
            try:
                return fn(get_storage(conn, create=False))
            finally:
                conn.close()
        finally:
            db.close()


class RoundTrip(Base):

    def setUp(self):
        super().setUp()
        self.cli('ingest', self.source, '--db', self.path('a.fs'),
                 '--no-progress')
        self.before = self.read('a.fs', state)
        self.assertGreater(len(self.before[0]), 50)

    def test_jsonl_loads_as_it_is(self):
        out = self.path('out.jsonl')
        self.cli('export', '--db', self.path('a.fs'), '-o', out)
        self.cli('ingest', out, '--db', self.path('b.fs'), '--no-progress')
        self.assertEqual(self.read('b.fs', state), self.before)

    def test_every_format(self):
        exported = {}
        for format in FORMATS:
            out = self.path('out.' + format)
            report = self.read('a.fs', lambda s: export(s, out, format))
            self.assertEqual(report.sessions, len(self.before[0]))
            exported[format] = list(read_export(out))
            back = write_hits(self.path(format + '.jsonl'),
                              exported[format])
            self.cli('ingest', back, '--db', self.path(format + '.fs'),
                     '--no-progress')
            self.assertEqual(self.read(format + '.fs', state), self.before,
                             format)
        # the three formats hold the same rows, and every hit once
        self.assertEqual(exported['csv'], exported['jsonl'])
        self.assertEqual(exported['parquet'], exported['jsonl'])
        self.assertEqual(len(exported['jsonl']),
                         sum(len(v[3]) for v in self.before[0]))
        self.assertEqual(report.hits, len(exported['jsonl']))
        verifyObject(IExportReport, report)

    def test_rows_carry_their_session(self):
        out = self.path('out.jsonl')
        self.read('a.fs', lambda s: export(s, out))
        rows = {}
        for record in read_export(out):
            rows.setdefault(record['session']['session_id'], []).append(
                str(record['id']))
        self.assertEqual(
            sorted((sid, tuple(ids)) for sid, ids in rows.items()),
            sorted((v[0], v[3]) for v in self.before[0]))

    def test_since_and_until_split_the_sessions(self):
        cut = parse_time('2022-04-29T12:00')
        parts = {}
        for name, since, until in (('early', None, cut),
                                   ('late', cut, None),
                                   ('all', None, None)):
            out = self.path(name + '.jsonl')
            self.read('a.fs', lambda s: export(s, out, 'jsonl', since,
                                               until))
            parts[name] = {r['session']['session_id']: r
                           for r in read_export(out)}
        self.assertTrue(parts['early'] and parts['late'])
        self.assertFalse(set(parts['early']) & set(parts['late']))
        self.assertEqual(set(parts['early']) | set(parts['late']),
                         set(parts['all']))
        # a session is in by its first hit: its id starts with its time
        for sid in parts['early']:
            self.assertLess(sid, '20220429T120000')
        for sid in parts['late']:
            self.assertGreaterEqual(sid, '20220429T120000')
        self.cli('export', '--db', self.path('a.fs'), '-o', 'x.csv',
                 '--since', '2022-05-01', '--until', '2022-04-01', code=2)

    def test_hashed_addresses_round_trip(self):
        # The export carries the stamps, so a database that hashes its
        # addresses exports the sessions it holds.
        db = open_db(self.path('h.fs'))
        try:
            transact(db, lambda s: privacy_settings(s).set(ip='hash'))
        finally:
            db.close()
        self.cli('ingest', self.source, '--db', self.path('h.fs'),
                 '--no-progress')
        hashed = self.read('h.fs', state)
        self.assertNotEqual(hashed[0], self.before[0])   # other stamps
        out = self.path('h.jsonl')
        self.cli('export', '--db', self.path('h.fs'), '-o', out, '--quiet')
        self.cli('ingest', out, '--db', self.path('h2.fs'), '--no-progress')
        self.assertEqual(self.read('h2.fs', state), hashed)


class Command(Base):
    """The command as a user runs it, in a subprocess."""

    def run_cli(self, *args, code=0):
        proc = subprocess.run(
            TRACKSTORE + list(args), cwd=self.dir, capture_output=True,
            text=True, timeout=600, env=python_env())
        self.assertEqual(proc.returncode, code, proc.stderr)
        return proc

    def test_a_database_that_does_not_exist(self):
        proc = self.run_cli('export', '--db', 'missing.fs', '-o', 'x.jsonl',
                            code=1)
        self.assertIn('no such file', proc.stderr)
        self.assertEqual(len(proc.stderr.strip().splitlines()), 1)
        self.assertFalse(os.path.exists(self.path('missing.fs')))
        self.assertFalse(os.path.exists(self.path('x.jsonl')))
        proc = self.run_cli('config', '--db', 'missing.fs', code=1)
        self.assertIn('no such file', proc.stderr)

    def test_an_output_that_cannot_be_written(self):
        self.run_cli('ingest', 'hits.jsonl', '--db', 'a.fs')
        proc = self.run_cli('export', '--db', 'a.fs', '-o',
                            'no/such/dir/x.csv', code=1)
        self.assertEqual(proc.stderr.splitlines(), [
            "Error: --output: [Errno 2] No such file or directory: "
            "'no/such/dir/x.csv.part'"])

    def test_parquet_by_its_name_and_stdout(self):
        self.run_cli('ingest', 'hits.jsonl', '--db', 'a.fs')
        proc = self.run_cli('export', '--db', 'a.fs', '-o', 'out.parquet')
        self.assertIn('sessions', proc.stderr)
        with open(self.path('out.parquet'), 'rb') as f:
            self.assertEqual(f.read(4), b'PAR1')
        lines = self.run_cli('export', '--db', 'a.fs', '--quiet').stdout
        self.assertEqual(
            [orjson.loads(line) for line in lines.splitlines()],
            list(read_export(self.path('out.parquet'))))
        proc = self.run_cli('export', '--db', 'a.fs', '--format',
                            'parquet', code=2)
        self.assertIn('--output', proc.stderr)

    def test_config(self):
        self.assertEqual(self.run_cli('config', '--db', 'c.fs', '--ip',
                                      'truncate').stdout,
                         'ip: truncate\nbots: drop\n')
        proc = self.run_cli('config', '--db', 'c.fs', '--json')
        self.assertEqual(orjson.loads(proc.stdout),
                         {'ip': 'truncate', 'bots': 'drop'})
        proc = self.run_cli('config', '--db', 'c.fs', '--ip', 'mask',
                            code=2)
        self.assertIn("'mask' is not one of", proc.stderr)


class Failures(Base):

    def test_nothing_is_left_of_a_failed_export(self):
        self.cli('ingest', self.source, '--db', self.path('a.fs'),
                 '--no-progress')
        out = self.path('out.xml')
        with self.assertRaises(ValueError):
            self.read('a.fs', lambda s: export(s, out, 'xml'))

        def broken(done, total):
            if done > 3:
                raise RuntimeError('disk full')
        with self.assertRaises(RuntimeError):
            self.read('a.fs', lambda s: export(s, out, 'csv',
                                               progress=broken))
        self.assertEqual([name for name in os.listdir(self.dir)
                          if name.startswith('out.')], [])
