"""trackstore.db: URIs, errors that name them, get_storage, Writer, copy.

Real storages throughout: FileStorage files in temp dirs, ZEO servers in
subprocesses, databases of their own on the local PostgreSQL.
"""
import os
import shutil
import subprocess
import sys
import tempfile
import time
import unittest

import transaction
from persistent.mapping import PersistentMapping
from ZODB.FileStorage import FileStorage
from ZODB.MappingStorage import MappingStorage

from trackstore import TrackingStorage
from trackstore.db import DEFAULT_CACHE_SIZE
from trackstore.db import NoDatabase
from trackstore.db import TrackstoreDBError
from trackstore.db import Writer
from trackstore.db import _postgresql
from trackstore.db import _zeo_uri
from trackstore.db import copy_database
from trackstore.db import get_storage
from trackstore.db import open_db
from trackstore.db import safe_uri
from trackstore.db import transact
from trackstore.tests import python_env
from trackstore.tests.layers import ZEOServer
from trackstore.tests.layers import free_port
from trackstore.tests.layers import pg_database_for


class TempDirTestCase(unittest.TestCase):

    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix='trackstore-dbtest-')
        self.addCleanup(shutil.rmtree, self.tmp, True)

    def path(self, name):
        return os.path.join(self.tmp, name)


class URITests(TempDirTestCase):

    def test_memory(self):
        db = open_db('memory://')
        self.addCleanup(db.close)
        self.assertIsInstance(db.storage, MappingStorage)

    def test_file(self):
        db = open_db('file://' + self.path('Data.fs'))
        self.addCleanup(db.close)
        self.assertIsInstance(db.storage, FileStorage)
        self.assertEqual(db.storage.getName(), self.path('Data.fs'))

    def test_default_is_a_filestorage_under_var(self):
        old = os.getcwd()
        os.chdir(self.tmp)
        self.addCleanup(os.chdir, old)
        db = open_db()
        self.addCleanup(db.close)
        self.assertIsInstance(db.storage, FileStorage)
        self.assertEqual(
            os.path.realpath(db.storage.getName()),
            os.path.realpath(self.path(os.path.join('var',
                                                    'trackstore.fs'))))
        self.assertTrue(os.path.exists(self.path('var/trackstore.fs')))

    def test_large_cache_by_default(self):
        db = open_db('memory://')
        self.addCleanup(db.close)
        self.assertEqual(db.getCacheSize(), DEFAULT_CACHE_SIZE)

    def test_cache_size_from_uri_or_keyword(self):
        db = open_db('memory://?connection_cache_size=1234')
        self.addCleanup(db.close)
        self.assertEqual(db.getCacheSize(), 1234)
        db2 = open_db('memory://', cache_size=77)
        self.addCleanup(db2.close)
        self.assertEqual(db2.getCacheSize(), 77)

    def test_postgresql_is_history_free_with_a_timeout(self):
        dsn, options, dbkw = _postgresql('postgresql://u@h:5432/db')
        self.assertEqual(
            dsn, 'user=u connect_timeout=5 dbname=db host=h port=5432')
        self.assertEqual(options,
                         {'keep_history': 'false', 'driver': 'psycopg2'})
        self.assertEqual(dbkw, {})
        # What the user says wins.
        dsn, options, _ = _postgresql(
            'postgresql://u@h/db?keep_history=true&connect_timeout=9')
        self.assertEqual(options['keep_history'], 'true')
        self.assertIn('connect_timeout=9', dsn)
        self.assertNotIn('connect_timeout=5', dsn)

    def test_postgresql_uri_as_libpq_reads_it(self):
        # No port (libpq's default), a password with an escaped '@',
        # libpq parameters, RelStorage's and zodburi's options mixed in.
        dsn, options, dbkw = _postgresql(
            'postgres://ann:p%40ss@db.example.com/tracks?sslmode=require'
            '&application_name=loader&cache_local_mb=50'
            '&connection_cache_size=777')
        self.assertEqual(
            sorted(dsn.split()),
            ["application_name=loader", "connect_timeout=5",
             "dbname=tracks", "host=db.example.com", "password=p@ss",
             "sslmode=require", "user=ann"])
        self.assertEqual(options['cache_local_mb'], '50')
        self.assertEqual(dbkw, {'connection_cache_size': '777'})
        # The local socket, libpq's way.
        dsn, _, _ = _postgresql('postgresql:///tracks')
        self.assertEqual(dsn, 'connect_timeout=5 dbname=tracks')

    def test_postgresql_without_port_opens(self):
        database = pg_database_for(self)
        p = database.params
        uri = 'postgresql://%s@%s/%s?connection_cache_size=1234' % (
            p.get('user', 'postgres'), p.get('host', '127.0.0.1'),
            database.name)
        if p.get('port', '5432') != '5432':
            self.skipTest('the test server is not on the default port')
        db = open_db(uri)
        self.addCleanup(db.close)
        self.assertEqual(db.getCacheSize(), 1234)
        self.assertEqual(transact(db, lambda s: s.saveUserTrack(
            't', 0, 'u', {})), '0000001')

    def test_plain_paths_are_filestorages(self):
        old = os.getcwd()
        os.chdir(self.tmp)
        self.addCleanup(os.chdir, old)
        for given, name in (('Data.fs', 'Data.fs'),
                            ('./Other.fs', 'Other.fs'),
                            (self.path('Abs.fs'), 'Abs.fs')):
            db = open_db(given)
            self.addCleanup(db.close)
            self.assertIsInstance(db.storage, FileStorage)
            self.assertEqual(os.path.realpath(db.storage.getName()),
                             os.path.realpath(self.path(name)))

    def test_zeo_does_not_wait_forever(self):
        self.assertIn('wait_timeout=', _zeo_uri('zeo://h:1'))
        self.assertEqual(_zeo_uri('zeo://h:1?wait_timeout=9'),
                         'zeo://h:1?wait_timeout=9')

    def test_zeo_server_sync_is_ours_not_zodburis(self):
        self.assertEqual(_zeo_uri('zeo://h:1?server_sync=0&wait_timeout=2'),
                         'zeo://h:1?wait_timeout=2')
        server = ZEOServer(self.path('zeo.fs')).start()
        self.addCleanup(server.stop)
        db = open_db(server.uri)
        self.addCleanup(db.close)
        self.assertTrue(db.storage.server_sync)
        db2 = open_db(server.uri + '?server_sync=0')
        self.addCleanup(db2.close)
        self.assertFalse(db2.storage.server_sync)

    def test_safe_uri_hides_the_password(self):
        self.assertEqual(safe_uri('postgresql://u:secret@h:5/db'),
                         'postgresql://u:***@h:5/db')
        self.assertEqual(safe_uri('zeo://h:5'), 'zeo://h:5')


class URIErrorTests(TempDirTestCase):
    """Each bad URI fails at once, naming the URI and the problem."""

    def assertFails(self, uri, *words):
        with self.assertRaises(TrackstoreDBError) as caught:
            db = open_db(uri)
            db.close()
        message = str(caught.exception)
        self.assertIn(safe_uri(uri), message)
        for word in words:
            self.assertIn(word, message)
        return message

    def test_unknown_scheme(self):
        self.assertFails('mongodb://127.0.0.1/x', "unknown scheme 'mongodb'")
        self.assertFails('mysql://u@h/db', "unknown scheme 'mysql'")

    def test_plain_path_in_a_missing_directory(self):
        self.assertFails(self.path('var/Data.fs'), 'does not exist')

    def test_bad_libpq_parameter(self):
        self.assertFails('postgresql://u@h/db?colour=blue', 'bad URI',
                         'colour')

    def test_one_line(self):
        port = free_port()
        message = self.assertFails(
            'postgresql://postgres@127.0.0.1:%d/test' % port)
        self.assertNotIn('\n', message)

    def test_not_a_string(self):
        with self.assertRaises(TrackstoreDBError):
            open_db(42)

    def test_missing_directory(self):
        missing = self.path('nowhere/Data.fs')
        self.assertFails('file://' + missing,
                         self.path('nowhere'), 'does not exist')
        self.assertFalse(os.path.exists(self.path('nowhere')))

    def test_directory_instead_of_file(self):
        self.assertFails('file://' + self.tmp, 'is a directory')

    def test_file_in_use(self):
        uri = 'file://' + self.path('Data.fs')
        db = open_db(uri)
        self.addCleanup(db.close)
        self.assertFails(uri, 'in use', 'ZEO')

    def test_unreachable_zeo(self):
        port = free_port()
        self.assertFails('zeo://127.0.0.1:%d' % port,
                         'no ZEO server reachable at 127.0.0.1:%d' % port)

    def test_bad_zeo_port(self):
        self.assertFails('zeo://127.0.0.1:notaport', 'bad')

    def test_unreachable_postgresql(self):
        port = free_port()
        self.assertFails('postgresql://postgres@127.0.0.1:%d/test' % port,
                         'PostgreSQL is not reachable')

    def test_postgresql_without_database_name(self):
        self.assertFails('postgresql://postgres@127.0.0.1:5432',
                         'no database name')

    def test_postgresql_password_not_shown(self):
        port = free_port()
        message = self.assertFails(
            'postgresql://postgres:hunter2@127.0.0.1:%d/test' % port)
        self.assertNotIn('hunter2', message)


class ReadOnlyOpenTests(TempDirTestCase):
    """``open_db(uri, create=False)``: where no database was written, it
    says so and creates nothing."""

    def assertNoDatabase(self, uri, *words):
        with self.assertRaises(NoDatabase) as caught:
            open_db(uri, create=False).close()
        for word in (safe_uri(uri),) + words:
            self.assertIn(word, str(caught.exception))

    def test_file(self):
        self.assertNoDatabase(self.path('Data.fs'), 'no such file')
        self.assertNoDatabase(self.path('var/Data.fs'), 'no such file')
        self.assertEqual(os.listdir(self.tmp), [])

    def test_default(self):
        old = os.getcwd()
        os.chdir(self.tmp)
        self.addCleanup(os.chdir, old)
        with self.assertRaises(NoDatabase):
            open_db(create=False)
        self.assertEqual(os.listdir(self.tmp), [])

    def test_memory(self):
        self.assertNoDatabase('memory://', 'empty')

    def test_existing_file_but_no_storage(self):
        uri = self.path('Data.fs')
        open_db(uri).close()        # a root object, no trackstore
        db = open_db(uri, create=False)
        self.addCleanup(db.close)
        conn = db.open()
        self.addCleanup(conn.close)
        with self.assertRaises(NoDatabase) as caught:
            get_storage(conn, create=False)
        self.assertIn('no trackstore data', str(caught.exception))
        self.assertEqual(list(conn.root()), [])
        get_storage(conn)
        self.assertIsInstance(get_storage(conn, create=False),
                              TrackingStorage)

    def test_empty_zeo_server(self):
        server = ZEOServer(self.path('zeo.fs')).start()
        self.addCleanup(server.stop)
        self.assertNoDatabase(server.uri, 'empty')
        db = open_db(server.uri)
        self.addCleanup(db.close)
        self.assertEqual(list(transact(db, lambda s: s.getTaskIds())), [])
        open_db(server.uri, create=False).close()

    def test_postgresql_without_tables(self):
        database = pg_database_for(self)
        self.assertNoDatabase(database.uri, 'tables are missing')
        import psycopg2
        conn = psycopg2.connect(database.uri)
        self.addCleanup(conn.close)
        with conn.cursor() as cur:
            cur.execute("SELECT count(*) FROM pg_tables "
                        "WHERE schemaname = 'public'")
            self.assertEqual(cur.fetchone()[0], 0)
        open_db(database.uri).close()
        open_db(database.uri, create=False).close()


class GetStorageTests(TempDirTestCase):

    def setUp(self):
        super().setUp()
        self.db = open_db('file://' + self.path('Data.fs'))
        self.addCleanup(self.db.close)

    def test_created_once_and_found_again(self):
        conn = self.db.open()
        storage = get_storage(conn)
        self.assertIsInstance(storage, TrackingStorage)
        oid = storage._p_oid
        self.assertIsNotNone(oid, 'creation was committed')
        self.assertIs(get_storage(conn), storage)
        conn.close()
        conn2 = self.db.open(transaction.TransactionManager())
        self.assertEqual(get_storage(conn2)._p_oid, oid)
        self.assertEqual(list(conn2.root().keys()), ['trackstore'])
        conn2.close()

    def test_names_and_factories(self):
        conn = self.db.open()
        self.addCleanup(conn.close)
        a = get_storage(conn, 'a')
        b = get_storage(conn, 'b', factory=PersistentMapping)
        self.assertIsInstance(a, TrackingStorage)
        self.assertIsInstance(b, PersistentMapping)
        self.assertEqual(sorted(conn.root().keys()), ['a', 'b'])

    def test_two_connections_race_to_create(self):
        # Both look before either commits; the loser's commit conflicts
        # on the root, it retries and finds the winner's storage.
        tm1 = transaction.TransactionManager()
        tm2 = transaction.TransactionManager()
        c1 = self.db.open(tm1)
        c2 = self.db.open(tm2)
        self.addCleanup(c1.close)
        self.addCleanup(c2.close)
        self.assertNotIn('trackstore', c2.root())
        s1 = get_storage(c1)
        s2 = get_storage(c2)
        self.assertEqual(s1._p_oid, s2._p_oid)


class WriterTests(TempDirTestCase):

    def setUp(self):
        super().setUp()
        self.db = open_db('file://' + self.path('Data.fs'))
        self.addCleanup(self.db.close)

    def test_conflict_is_retried_and_counted(self):
        w1 = Writer(self.db, factory=PersistentMapping)
        w2 = Writer(self.db, factory=PersistentMapping)
        self.addCleanup(w1.close)
        self.addCleanup(w2.close)
        calls = []

        def add(mapping, key):
            mapping[key] = len(mapping)

        def add_after_a_rival(mapping):
            calls.append(1)
            mapping['two'] = True
            if len(calls) == 1:
                # A rival commits a change to the same mapping while this
                # transaction is open: this commit must conflict.
                w1.run(add, 'one')
        w2.run(add_after_a_rival)
        self.assertEqual(len(calls), 2)
        self.assertEqual(w2.conflicts, 1)
        self.assertEqual(w2.commits, 1)
        self.assertEqual(w1.conflicts, 0)
        with Writer(self.db) as w3:
            self.assertEqual(sorted(w3.storage), ['one', 'two'])

    def test_other_errors_are_raised_and_nothing_committed(self):
        with Writer(self.db, factory=PersistentMapping) as w:
            def fail(mapping):
                mapping['half'] = 1
                raise ValueError('bad row')
            with self.assertRaises(ValueError):
                w.run(fail)
            self.assertEqual(w.conflicts, 0)
            self.assertEqual(w.commits, 0)
            self.assertNotIn('half', w.storage)

    def test_gives_up_after_its_attempts(self):
        from ZODB.POSException import ConflictError
        tries = []

        def always_conflicts(mapping):
            tries.append(1)
            raise ConflictError('always')
        with Writer(self.db, factory=PersistentMapping, attempts=3) as w:
            with self.assertRaises(ConflictError):
                w.run(always_conflicts)
            self.assertEqual(len(tries), 3)
            self.assertEqual(w.conflicts, 2)

    def test_transact_saves_tracks(self):
        tid = transact(self.db, lambda s: s.saveUserTrack(
            'a001', 0, 'u1', {'x': 1}))
        found = transact(self.db, lambda s: s.getTrack(tid).data)
        self.assertEqual(found, {'x': 1})


class ZEORestartTests(TempDirTestCase):
    """A ZEO server killed and restarted between two transactions of a
    client: the client reconnects on its own, no call of it fails."""

    def test_new_objects_get_ids_the_new_server_knows(self):
        server = ZEOServer(os.path.join(self.tmp, 'zeo.fs')).start()
        self.addCleanup(server.stop)
        db = open_db(server.uri)
        self.addCleanup(db.close)
        with db.transaction() as conn:
            # The first new object makes the client prefetch ids.
            conn.root()['first'] = PersistentMapping()
        server.kill()
        server.start()
        deadline = time.monotonic() + 30
        while not db.storage.is_connected():
            self.assertLess(time.monotonic(), deadline)
            time.sleep(0.05)
        # More new objects than the client had prefetched: without
        # dropping them, the restarted server hands some out again and
        # two objects of this transaction get one id.
        with db.transaction() as conn:
            conn.root()['many'] = [PersistentMapping(n=n)
                                   for n in range(300)]
        with db.transaction() as conn:
            self.assertEqual([m['n'] for m in conn.root()['many']],
                             list(range(300)))


OPEN_AND_SAVE = """
import sys
from trackstore.db import open_db, transact
db = open_db(sys.argv[1])
print(transact(db, lambda s: s.saveUserTrack('t', 0, sys.argv[2], {})))
db.close()
"""


class ConcurrentFirstOpenTests(TempDirTestCase):
    """Processes that open a brand-new database at the same moment race
    to create its root object (and, on PostgreSQL, RelStorage's tables);
    every one of them must get going."""

    def open_at_once(self, uri, processes=4):
        procs = [subprocess.Popen(
            [sys.executable, '-c', OPEN_AND_SAVE, uri, 'user%d' % i],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            env=python_env())
            for i in range(processes)]
        outputs = [p.communicate(timeout=300) for p in procs]
        for proc, (out, err) in zip(procs, outputs):
            self.assertEqual(proc.returncode, 0, err[-2000:])
        db = open_db(uri)
        self.addCleanup(db.close)
        self.assertEqual(transact(db, len), processes)
        self.assertEqual(
            transact(db, lambda s: s.getUserNames('t')),
            ['user%d' % i for i in range(processes)])

    def test_zeo(self):
        server = ZEOServer(self.path('zeo.fs')).start()
        self.addCleanup(server.stop)
        self.open_at_once(server.uri)

    def test_postgresql(self):
        database = pg_database_for(self)
        self.open_at_once(database.uri)


def save_sample(uri, count=300):
    """Save ``count`` tracks of 3 tasks, 7 users and 2 runs per task in
    several transactions; return {id: (task, run, user, data)}."""
    db = open_db(uri)
    saved = {}
    try:
        with Writer(db) as w:
            for start in range(0, count, 50):
                def save(storage):
                    out = {}
                    for i in range(start, min(start + 50, count)):
                        task = 'task%d' % (i % 3)
                        if count // 2 <= i < count // 2 + 3:
                            storage.stopRun(task)      # a second run
                        user = 'user%d' % (i % 7)
                        data = {'i': i, 'text': 'n\u00e4me %d' % i}
                        tid = storage.saveUserTrack(task, 0, user, data)
                        out[tid] = (task, storage.getRun(task).id, user,
                                    data)
                    return out
                saved.update(w.run(save))
    finally:
        db.close()
    return saved


class CopyTests(TempDirTestCase):
    """An existing FileStorage copied into ZEO and into PostgreSQL."""

    def setUp(self):
        super().setUp()
        self.source = 'file://' + self.path('Data.fs')
        self.saved = save_sample(self.source)

    def assertEverythingThere(self, uri):
        db = open_db(uri)
        self.addCleanup(db.close)
        with Writer(db) as w:
            s = w.storage
            self.assertEqual(len(s), len(self.saved))
            self.assertEqual(
                sorted(t.__name__ for t in s.values()), sorted(self.saved))
            for tid, (task, run, user, data) in self.saved.items():
                track = s.getTrack(tid)
                self.assertEqual(
                    (track.taskId, track.runId, track.userName, track.data),
                    (task, run, user, data))
            for task in ('task0', 'task1', 'task2'):
                expected = sorted(t for t, v in self.saved.items()
                                  if v[0] == task)
                self.assertEqual(
                    sorted(t.__name__ for t in s.query(taskId=task)),
                    expected)
            runs = {(v[0], v[1]) for v in self.saved.values()}
            self.assertEqual(len(runs), 6)
            self.assertEqual(
                sorted((r.taskId, r.id) for r in s.getRuns()), sorted(runs))

    def test_copy_into_zeo(self):
        server = ZEOServer(self.path('zeo.fs')).start()
        self.addCleanup(server.stop)
        copy_database(self.source, server.uri)
        self.assertEverythingThere(server.uri)

    def test_copy_into_postgresql(self):
        database = pg_database_for(self)
        copy_database(self.source, database.uri)
        self.assertEverythingThere(database.uri)

    def test_copy_into_a_used_database_is_refused(self):
        target = 'file://' + self.path('used.fs')
        open_db(target).close()      # writes the root object
        with self.assertRaises(TrackstoreDBError) as caught:
            copy_database(self.source, target)
        self.assertIn('must be empty', str(caught.exception))
        self.assertIn(target, str(caught.exception))
