"""The ``trackstore`` console script, run as a real subprocess."""
import gzip
import os
import shutil
import subprocess
import tempfile
import unittest

import orjson

from trackstore.tests import TRACKSTORE
from trackstore.tests import python_env


class CLI(unittest.TestCase):

    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix='trackstore-cli-')

    def tearDown(self):
        shutil.rmtree(self.dir, ignore_errors=True)

    def run_cli(self, *args, ok=True, **kw):
        proc = subprocess.run(
            TRACKSTORE + list(args), cwd=self.dir, capture_output=True,
            text=True, timeout=600, env=python_env(), **kw)
        if ok:
            self.assertEqual(proc.returncode, 0, proc.stderr)
        return proc

    def test_generate_is_deterministic(self):
        self.run_cli('generate', '--customers', '20', '--days', '2',
                     '--seed', '4', '-o', 'a.jsonl')
        self.run_cli('generate', '--customers', '20', '--days', '2',
                     '--seed', '4', '-o', 'b.jsonl.gz')
        out = self.run_cli('generate', '--customers', '20', '--days', '2',
                           '--seed', '5').stdout
        with open(os.path.join(self.dir, 'a.jsonl')) as f:
            a = f.read()
        with gzip.open(os.path.join(self.dir, 'b.jsonl.gz'), 'rt') as f:
            self.assertEqual(f.read(), a)
        self.assertNotEqual(out, a)
        self.assertGreater(a.count('\n'), 100)
        self.assertIn('"placed_order"', a)

    def test_generate_ingest_metrics(self):
        self.run_cli('generate', '--customers', '60', '--days', '5',
                     '--seed', '8', '-o', 'hits.jsonl')
        first = self.run_cli('ingest', 'hits.jsonl').stdout
        # the default database: ./var/trackstore.fs
        self.assertTrue(os.path.exists(
            os.path.join(self.dir, 'var', 'trackstore.fs')))
        self.assertRegex(
            first, r'^(\d+) hits read: (\d+) stored, 0 duplicates, '
                   r'\d+ rejected( \(see .*var/hits.jsonl.rejects.jsonl\))?,'
                   r' \d+ late; \d+ sessions written, 0 replaced')
        again = orjson.loads(
            self.run_cli('ingest', 'hits.jsonl', '--json').stdout)
        self.assertEqual(again['stored'], 0)
        self.assertGreater(again['duplicates'], 0)
        result = orjson.loads(self.run_cli('metrics', '--json').stdout)
        self.assertIsInstance(result['median_visits_before_order'], float)
        self.assertIsInstance(
            result['median_session_duration_minutes_before_order'], float)
        self.assertGreater(result['ordering_sessions'], 0)
        for key in ('p25', 'p50', 'p75', 'p90'):
            self.assertIn(key, result['visits_before_order'])
        table = self.run_cli('metrics').stdout
        self.assertIn('Order metrics', table)
        self.assertIn('sessions before the order', table)

    def test_ingest_options_and_errors(self):
        self.run_cli('generate', '--customers', '10', '--days', '2',
                     '-o', 'hits.jsonl')
        uri = 'file://' + os.path.join(self.dir, 'Other.fs')
        out = self.run_cli('ingest', 'hits.jsonl', '--db', uri,
                           '--timeout', '10m', '--json').stdout
        self.assertGreater(orjson.loads(out)['stored'], 0)
        # a different timeout after a finished load is fine
        self.run_cli('ingest', 'hits.jsonl', '--db', uri, '--timeout', '1h')
        bad = self.run_cli('ingest', 'nothing.jsonl', ok=False)
        self.assertEqual(bad.returncode, 2)
        self.assertIn('no such file', bad.stderr)
        bad = self.run_cli('ingest', 'hits.jsonl', '--timeout', 'soon',
                           ok=False)
        self.assertEqual(bad.returncode, 2)
        self.assertIn('not a duration', bad.stderr)
        bad = self.run_cli('ingest', 'hits.jsonl', '--db', 'nope://x',
                           ok=False)
        self.assertEqual(bad.returncode, 1)
        self.assertIn('unknown scheme', bad.stderr)

    def test_demo(self):
        proc = self.run_cli('demo', '--customers', '40', '--days', '3',
                            '--no-serve')
        out = proc.stdout
        self.assertTrue(os.path.exists(
            os.path.join(self.dir, 'var', 'trackstore.fs')))
        for title in ('Sessions', 'Batches', 'Order metrics'):
            self.assertIn(title, out)
        self.assertRegex(out, r'\d+ hits read: \d+ stored')
        self.assertIn('collecting', out)
        # a second demo finds everything stored already
        again = self.run_cli('demo', '--customers', '40', '--days', '3',
                             '--no-serve')
        self.assertRegex(again.stdout, r'hits read: 0 stored')

    def test_python_m_trackstore(self):
        out = self.run_cli('--help').stdout
        self.assertIn('Usage: trackstore', out)
        for command in ('generate', 'ingest', 'metrics', 'demo'):
            self.assertIn(command, out)

    def test_metrics_on_a_missing_database_creates_nothing(self):
        for args, words in (
                ((), ['no such file', 'var/trackstore.fs']),
                (('--db', 'Data.fs'), ['no such file', 'Data.fs']),
                (('--db', './var/Data.fs'), ['no such file']),
                (('--db', 'file://' + os.path.join(self.dir, 'D.fs')),
                 ['no such file'])):
            bad = self.run_cli('metrics', *args, ok=False)
            self.assertEqual(bad.returncode, 1, args)
            lines = bad.stderr.strip().splitlines()
            self.assertEqual(len(lines), 1, bad.stderr)
            self.assertTrue(lines[0].startswith('Error: --db: '), lines)
            for word in words:
                self.assertIn(word, lines[0])
        self.assertEqual(os.listdir(self.dir), [])

    def test_a_plain_path_is_a_filestorage(self):
        self.run_cli('generate', '--customers', '10', '--days', '2',
                     '-o', 'hits.jsonl')
        self.run_cli('ingest', 'hits.jsonl', '--db', './Data.fs')
        self.assertTrue(os.path.exists(os.path.join(self.dir, 'Data.fs')))
        result = orjson.loads(
            self.run_cli('metrics', '--db', 'Data.fs', '--json').stdout)
        self.assertIn('ordering_sessions', result)

    def test_failed_connections_are_one_line(self):
        from trackstore.tests.layers import free_port
        port = free_port()
        for uri, words in (
                ('zeo://127.0.0.1:%d' % port, ['no ZEO server reachable']),
                ('postgresql://postgres@127.0.0.1:%d/test' % port,
                 ['PostgreSQL is not reachable', 'refused']),
                ('postgresql://postgres:secret@127.0.0.1:%d/x' % port,
                 ['***'])):
            for command in (['metrics'], ['ingest', '-']):
                bad = self.run_cli(*command, '--db', uri, ok=False,
                                   input='')
                self.assertEqual(bad.returncode, 1, bad.stderr)
                self.assertEqual(bad.stdout, '')
                lines = bad.stderr.strip().splitlines()
                self.assertEqual(len(lines), 1, bad.stderr)
                self.assertTrue(lines[0].startswith('Error: --db: '))
                self.assertNotIn('secret', lines[0])
                self.assertNotIn('Traceback', bad.stderr)
                for word in words:
                    self.assertIn(word, lines[0])

    def test_option_at_fault_is_named(self):
        for value in ('soon', '0s'):
            bad = self.run_cli('ingest', '-', '--timeout', value, ok=False,
                               input='')
            self.assertEqual(bad.returncode, 2)
            self.assertIn("Invalid value for '--timeout'", bad.stderr)
