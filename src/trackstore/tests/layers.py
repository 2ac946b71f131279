"""zope.testrunner layers: the same tests on four real storages.

- ``MemoryLayer``: ``memory://``, a fresh MappingStorage per test;
- ``FileLayer``: a FileStorage file per test in a temporary directory;
- ``ZEOLayer``: a real ZEO server (``python -m ZEO.runzeo``, the test
  runner's Python and paths so that it can import trackstore's conflict
  resolution) on a
  free 127.0.0.1 port, serving a FileStorage in a temporary directory;
- ``PGLayer``: RelStorage (history-free) in a database of its own that
  the layer creates on the PostgreSQL at 127.0.0.1:5432 (trust auth) and
  drops at the end. When that server is not reachable the layer's tests
  are skipped and the reason printed; with ``TRACKSTORE_REQUIRE_PG=1``
  the layer fails instead. ``TRACKSTORE_PG_ADMIN`` may name another
  server as a libpq DSN of a database to connect to for CREATE DATABASE.

Tests on the shared servers (ZEO, PostgreSQL) keep apart by using a root
key of their own (``StorageTestCase.name``).
"""
import itertools
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import unittest
import uuid

from trackstore.db import open_db
from trackstore.tests import python_env


PG_ADMIN_DSN = os.environ.get(
    'TRACKSTORE_PG_ADMIN', 'host=127.0.0.1 port=5432 user=postgres '
    'dbname=test connect_timeout=5')


def free_port():
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(('127.0.0.1', 0))
        return sock.getsockname()[1]


class ZEOServer:
    """A ZEO server in a subprocess, serving one FileStorage.

    The command is the one docs/deployment.txt gives users::

        python -m ZEO.runzeo -a 127.0.0.1:PORT -f PATH/Data.fs
    """

    def __init__(self, path, port=None):
        self.path = path
        self.port = port or free_port()
        self.address = ('127.0.0.1', self.port)
        self.uri = 'zeo://127.0.0.1:%d' % self.port
        self.process = None
        self.log = path + '.log'

    @property
    def command(self):
        return [sys.executable, '-m', 'ZEO.runzeo',
                '-a', '127.0.0.1:%d' % self.port, '-f', self.path]

    def start(self, timeout=30):
        with open(self.log, 'wb') as log:
            self.process = subprocess.Popen(
                self.command, stdout=log, stderr=subprocess.STDOUT,
                env=python_env())
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(
                    'ZEO server exited with %s: %s'
                    % (self.process.returncode, self.read_log()))
            try:
                socket.create_connection(self.address, 1).close()
                return self
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError('ZEO server did not listen on %s:%s within %ss'
                           % (self.address + (timeout,)))

    def read_log(self):
        with open(self.log, 'rb') as f:
            return f.read().decode('utf-8', 'replace')[-3000:]

    def kill(self):
        """SIGKILL the server, as a crash would end it; ``start()``
        serves the same file on the same port again."""
        if self.process is not None:
            self.process.kill()
            self.process.wait()
        self.process = None

    def stop(self):
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None


class PGUnavailable(Exception):
    """The PostgreSQL server for the tests cannot be reached."""


class PGDatabase:
    """A fresh PostgreSQL database for one test run (or benchmark)."""

    def __init__(self, admin_dsn=PG_ADMIN_DSN, prefix='trackstore_test',
                 settings=None):
        self.admin_dsn = admin_dsn
        self.name = '%s_%s' % (prefix, uuid.uuid4().hex[:12])
        # Server settings for this database only (ALTER DATABASE ... SET),
        # e.g. {'synchronous_commit': 'off'} for a benchmark.
        self.settings = dict(settings or {})
        self.params = None
        self.uri = None

    def _admin(self):
        import psycopg2
        try:
            conn = psycopg2.connect(self.admin_dsn)
        except psycopg2.Error as e:
            raise PGUnavailable(
                'PostgreSQL not reachable (%s): %s'
                % (self.admin_dsn, str(e).strip())) from e
        conn.autocommit = True
        return conn

    def create(self):
        conn = self._admin()
        try:
            self.params = conn.get_dsn_parameters()
            with conn.cursor() as cur:
                cur.execute('CREATE DATABASE %s' % self.name)
                for key, value in sorted(self.settings.items()):
                    cur.execute('ALTER DATABASE %s SET %s = %%s'
                                % (self.name, key), (value,))
        finally:
            conn.close()
        p = self.params
        self.uri = 'postgresql://%s@%s:%s/%s' % (
            p.get('user', 'postgres'), p.get('host', '127.0.0.1'),
            p.get('port', '5432'), self.name)
        return self

    def drop(self):
        if self.uri is None:
            return
        conn = self._admin()
        try:
            with conn.cursor() as cur:
                # FORCE: a worker that died may still hold a connection.
                cur.execute('DROP DATABASE IF EXISTS %s WITH (FORCE)'
                            % self.name)
        finally:
            conn.close()
        self.uri = None


def pg_required():
    return os.environ.get('TRACKSTORE_REQUIRE_PG') == '1'


def pg_database_for(test):
    """A fresh PostgreSQL database for one test, dropped at its cleanup;
    the test is skipped when PostgreSQL is unreachable, unless it is
    required."""
    database = PGDatabase()
    try:
        database.create()
    except PGUnavailable as e:
        if pg_required():
            raise
        test.skipTest(str(e))
    test.addCleanup(database.drop)
    return database


class MemoryLayer:
    """Each test gets a fresh ``memory://`` database."""

    skip_reason = None

    @classmethod
    def setUp(cls):
        pass

    @classmethod
    def tearDown(cls):
        pass

    @classmethod
    def new_uri(cls):
        return 'memory://'


class FileLayer:
    """Each test gets a FileStorage file in the layer's temp directory."""

    skip_reason = None
    directory = None
    _counter = itertools.count(1)

    @classmethod
    def setUp(cls):
        cls.directory = tempfile.mkdtemp(prefix='trackstore-fs-')

    @classmethod
    def tearDown(cls):
        shutil.rmtree(cls.directory, ignore_errors=True)
        cls.directory = None

    @classmethod
    def new_uri(cls):
        return 'file://%s/test-%d.fs' % (cls.directory, next(cls._counter))


class ZEOLayer:
    """One ZEO server for the layer's tests, started and stopped here."""

    skip_reason = None
    directory = None
    server = None

    @classmethod
    def setUp(cls):
        cls.directory = tempfile.mkdtemp(prefix='trackstore-zeo-')
        cls.server = ZEOServer(os.path.join(cls.directory, 'Data.fs'))
        cls.server.start()

    @classmethod
    def tearDown(cls):
        cls.server.stop()
        shutil.rmtree(cls.directory, ignore_errors=True)
        cls.server = cls.directory = None

    @classmethod
    def new_uri(cls):
        return cls.server.uri


class PGLayer:
    """A database of its own on the local PostgreSQL, dropped at the end.
    """

    skip_reason = None
    database = None

    @classmethod
    def setUp(cls):
        cls.skip_reason = None
        database = PGDatabase()
        try:
            database.create()
        except PGUnavailable as e:
            if pg_required():
                raise RuntimeError(
                    'TRACKSTORE_REQUIRE_PG=1 but %s' % (e,)) from e
            cls.skip_reason = 'skipped: %s' % (e,)
            print('\n  PGLayer: %s; set TRACKSTORE_REQUIRE_PG=1 to make '
                  'this an error' % (cls.skip_reason,), file=sys.stderr)
            return
        cls.database = database

    @classmethod
    def tearDown(cls):
        if cls.database is not None:
            cls.database.drop()
        cls.database = None

    @classmethod
    def new_uri(cls):
        return cls.database.uri


LAYERS = (MemoryLayer, FileLayer, ZEOLayer, PGLayer)


class StorageTestCase(unittest.TestCase):
    """Base of the tests run on every layer: ``self.db`` is open on the
    layer's storage and ``self.name`` is this test's own root key.

    Subclasses set ``layer``; ``for_layers`` makes one class per layer.
    """

    layer = None

    def setUp(self):
        if self.layer is None:
            self.skipTest('no storage layer')
        if self.layer.skip_reason:
            self.skipTest(self.layer.skip_reason)
        self.uri = self.layer.new_uri()
        self.db = open_db(self.uri)
        self.name = 'test-%s' % uuid.uuid4().hex[:12]

    def tearDown(self):
        self.db.close()


def for_layers(mixin, namespace, layers=LAYERS):
    """Make one test class of ``mixin`` and ``StorageTestCase`` per layer
    in ``namespace`` (a module's globals), named ``<mixin>_<layer>``, so
    the runner finds them and ``-t _ZEO`` or ``--layer PG`` picks one
    storage. The mixin itself is no TestCase, so it does not run alone.
    """
    for layer in layers:
        name = '%s_%s' % (mixin.__name__,
                          layer.__name__.replace('Layer', ''))
        namespace[name] = type(name, (mixin, StorageTestCase), {
            'layer': layer, '__module__': namespace['__name__']})
