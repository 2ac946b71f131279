"""Loads that are killed, that race, and whose server goes away.

Real subprocesses of the command, a real ZEO server of the test's own
and the real PostgreSQL; the answer is always the one of one clean,
sequential load.
"""
import glob
import os
import shutil
import signal
import subprocess
import tempfile
import time
import unittest

import orjson

from trackstore.ingest import SLOW_COMMIT_ENV
from trackstore.ingest import ingest
from trackstore.sessions.generate import generate
from trackstore.tests import TRACKSTORE
from trackstore.tests import python_env
from trackstore.tests import visits_at
from trackstore.tests.layers import ZEOServer
from trackstore.tests.layers import pg_database_for


def wait_for(condition, process=None, timeout=120):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        if process is not None and process.poll() is not None:
            raise AssertionError('the load ended first: %s' % (
                process.stderr.read().decode()[-2000:],))
        time.sleep(0.02)
    raise AssertionError('timed out')


class Base(unittest.TestCase):

    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix='trackstore-faults-')
        self.addCleanup(shutil.rmtree, self.dir, True)
        self.hits = os.path.join(self.dir, 'hits.jsonl')
        generate(300, 5, 21, self.hits)
        self.clean = 'file://' + os.path.join(self.dir, 'clean.fs')
        ingest(self.hits, self.clean,
               rejects=os.path.join(self.dir, 'clean.rejects'))

    def start(self, uri, *args, env=None, source=None):
        return subprocess.Popen(
            TRACKSTORE + ['ingest', source or self.hits, '--db', uri,
                          '--json'] + list(args),
            env=python_env(**(env or {})), stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, cwd=self.dir)

    def finish(self, process, timeout=600):
        out, err = process.communicate(timeout=timeout)
        return process.returncode, out, err


class Kills(Base):
    """SIGKILL while the input is sorted and spilled, and at several
    points while it is stored; the same command again finishes it."""

    def test_kill_at_many_points(self):
        path = os.path.join(self.dir, 'Data.fs')
        uri = 'file://' + path
        tmp = os.path.join(self.dir, 'tmp')
        os.mkdir(tmp)
        slow = {SLOW_COMMIT_ENV: '0.15', 'TMPDIR': tmp}
        args = ('--memory', '64K', '--batch-size', '300')
        # In the sort phase: the first run is spilled, nothing stored.
        proc = self.start(uri, *args, env=slow)
        wait_for(lambda: glob.glob(os.path.join(tmp, '*', 'run-1')), proc)
        proc.send_signal(signal.SIGKILL)
        self.finish(proc)
        # While storing: each time the file grew by a few commits.
        for step in range(4):
            size = os.path.getsize(path) if os.path.exists(path) else 0
            proc = self.start(uri, *args, env=slow)
            wait_for(lambda: os.path.exists(path)
                     and os.path.getsize(path) > size + 200000, proc)
            proc.send_signal(signal.SIGKILL)
            self.assertEqual(self.finish(proc)[0], -signal.SIGKILL)
        code, out, err = self.finish(self.start(uri, *args))
        self.assertEqual(code, 0, err)
        self.assertGreater(orjson.loads(out)['duplicates'], 0)
        self.assertEqual(visits_at(uri), visits_at(self.clean))


class Racing(Base):
    """Two loads at once into one server database (two halves, or the
    same file twice) end with the visits of one sequential load."""

    def halves(self):
        with open(self.hits, 'rb') as f:
            lines = f.read().splitlines(True)
        names = []
        for n, part in enumerate((lines[0::2], lines[1::2])):
            names.append(os.path.join(self.dir, 'half%d.jsonl' % n))
            with open(names[-1], 'wb') as f:
                f.writelines(part)
        return names

    def race(self, uri, sources):
        procs = [self.start(uri, '--batch-size', '400', source=source)
                 for source in sources]
        reports = []
        for proc in procs:
            code, out, err = self.finish(proc)
            self.assertEqual(code, 0, err)
            reports.append(orjson.loads(out))
        return reports

    def check(self, uri):
        self.race(uri, self.halves())
        self.assertEqual(visits_at(uri), visits_at(self.clean))
        first, second = self.race(uri, [self.hits, self.hits])
        self.assertEqual(first['stored'] + second['stored'], 0)
        self.assertEqual(visits_at(uri), visits_at(self.clean))

    def test_zeo(self):
        server = ZEOServer(os.path.join(self.dir, 'zeo.fs')).start()
        self.addCleanup(server.stop)
        self.check(server.uri)

    def test_postgresql(self):
        self.check(pg_database_for(self).uri)


class ServerAway(Base):
    """A ZEO server that goes away during a load is waited for; one that
    stays away is reported in one line."""

    def test_restarted_server(self):
        path = os.path.join(self.dir, 'zeo.fs')
        server = ZEOServer(path).start()
        self.addCleanup(lambda: server.stop())
        proc = self.start(server.uri, '--batch-size', '300',
                          env={SLOW_COMMIT_ENV: '0.1'})
        wait_for(lambda: os.path.getsize(path) > 300000, proc)
        server.stop()
        time.sleep(2)
        server = ZEOServer(path, port=server.port).start()
        code, out, err = self.finish(proc)
        self.assertEqual(code, 0, err)
        server.stop()
        self.assertEqual(visits_at('file://' + path), visits_at(self.clean))

    def test_server_that_stays_away(self):
        path = os.path.join(self.dir, 'zeo.fs')
        server = ZEOServer(path).start()
        proc = self.start(server.uri, '--batch-size', '300', '--wait', '2s',
                          env={SLOW_COMMIT_ENV: '0.1'})
        wait_for(lambda: os.path.getsize(path) > 200000, proc)
        server.stop()
        code, out, err = self.finish(proc, timeout=300)
        self.assertEqual(code, 1)
        lines = err.decode().strip().splitlines()
        self.assertEqual(len(lines), 1, err)
        self.assertIn('did not answer', lines[0])
        self.assertNotIn(b'Traceback', err)
