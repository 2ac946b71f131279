"""Loads that are killed, that race, and whose server goes away.

Real subprocesses of the command, a real ZEO server of the test's own
and the real PostgreSQL; the answer is always the one of one clean,
sequential load, and ``check_store`` finds nothing wrong with what a
killed load left behind.
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

from trackstore import killpoints
from trackstore.check import check_store
from trackstore.db import get_storage
from trackstore.db import open_db
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


def problems_at(uri):
    """What ``check_store`` finds wrong with the database at ``uri``."""
    db = open_db(uri)
    try:
        conn = db.open()
        try:
            return check_store(get_storage(conn)).problems
        finally:
            conn.close()
    finally:
        db.close()


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


class KillPoints(Base):
    """SIGKILL at each named point of a load (``trackstore.killpoints``),
    one load after the other into one database: each leaves a sound
    store, and the load that finally runs through stores every hit
    exactly once."""

    ARGS = ('--memory', '64K', '--batch-size', '300')

    def kill_at(self, uri, point, *args):
        code, out, err = self.finish(self.start(
            uri, *(self.ARGS + args),
            env={killpoints.ENV: point, 'TMPDIR': self.dir}))
        self.assertEqual(code, -signal.SIGKILL, (point, err[-2000:]))
        self.assertEqual(problems_at(uri), [], point)

    def resume(self, uri, *args):
        code, out, err = self.finish(self.start(uri, *(self.ARGS + args)))
        self.assertEqual(code, 0, err)
        self.assertEqual(problems_at(uri), [])
        return orjson.loads(out)

    def test_every_point_of_a_batch_load(self):
        uri = 'file://' + os.path.join(self.dir, 'Data.fs')
        # The early points first, then commits further and further in.
        for point in ('read:2', 'spill:3', 'store:2', 'before-commit:3',
                      'mid-commit:5', 'after-commit:8', 'totals'):
            self.kill_at(uri, point)
        report = self.resume(uri)
        self.assertEqual(report['stored'], 0)
        self.assertEqual(report['duplicates'],
                         report['read'] - report['rejected'])
        self.assertEqual(visits_at(uri), visits_at(self.clean))

    def test_a_live_stream(self):
        uri = 'file://' + os.path.join(self.dir, 'Data.fs')
        for point in ('stream-commit:2', 'mid-commit:4', 'store:9'):
            self.kill_at(uri, point, '--follow')
        self.resume(uri, '--follow')
        self.assertEqual(visits_at(uri), visits_at(self.clean))

    def test_a_zeo_client_killed_mid_transaction(self):
        # The server sees a client vanish before it sent its commit,
        # and one vanish between its vote and the end of the commit.
        path = os.path.join(self.dir, 'zeo.fs')
        server = ZEOServer(path).start()
        self.addCleanup(server.stop)
        for point in ('before-commit:2', 'mid-commit:4'):
            self.kill_at(server.uri, point)
        self.resume(server.uri)
        self.assertEqual(visits_at(server.uri), visits_at(self.clean))
        server.stop()
        self.assertEqual(visits_at('file://' + path),
                         visits_at(self.clean))

    def test_a_bad_kill_point_is_named(self):
        for value in ('nowhere', 'store:0', 'store:x'):
            with self.assertRaises(ValueError) as caught:
                killpoints.parse(value)
            self.assertIn(killpoints.ENV, str(caught.exception))
        self.assertEqual(killpoints.parse('store'), ('store', 1))
        self.assertEqual(killpoints.parse('spill:3'), ('spill', 3))
        self.assertIsNone(killpoints.parse(''))


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

    def test_killed_server(self):
        # SIGKILL, not a shutdown: the server may die in the middle of
        # a commit, and the restarted one finds its file as it was.
        path = os.path.join(self.dir, 'zeo.fs')
        server = ZEOServer(path).start()
        self.addCleanup(lambda: server.stop())
        proc = self.start(server.uri, '--batch-size', '300',
                          env={SLOW_COMMIT_ENV: '0.1'})
        for grown in (300000, 600000):
            wait_for(lambda: os.path.getsize(path) > grown, proc)
            server.kill()
            time.sleep(1)
            server.start()
        code, out, err = self.finish(proc)
        self.assertEqual(code, 0, err)
        self.assertEqual(problems_at(server.uri), [])
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
