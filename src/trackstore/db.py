"""Where the storage lives: open a database from one URI.

This is the only module that knows about zodburi, ZEO and RelStorage.
Every entry point (the CLI, the web app, the tests and the benchmarks)
opens its database with ``open_db``, finds the tracking storage with
``get_storage`` and writes through ``transact`` or a ``Writer``, so the
same code runs on all storages:

- no URI: a FileStorage at ``./var/trackstore.fs`` (``./var/`` is made);
- a plain path (``Data.fs``, ``./var/Data.fs``, ``/srv/Data.fs``) or
  ``file:///path/to/Data.fs``: a FileStorage (one process at a time);
- ``memory://``: a MappingStorage, gone when the process ends;
- ``zeo://host:port``: a ZEO server, shared by several processes;
- ``postgresql://user@host/dbname``: RelStorage on PostgreSQL,
  history-free unless the URI says ``?keep_history=true``. The port is
  optional (5432) and the URI is libpq's own: ``user:password@``,
  ``host:port``, several hosts, ``?sslmode=require`` and the other
  libpq parameters work as in ``psql``; RelStorage's options
  (``keep_history``, ``cache_local_mb``, ...) and zodburi's
  (``connection_cache_size``, ...) may be mixed into the query.

A URI that is wrong or whose server cannot be reached raises
``TrackstoreDBError`` at once, with a message that names the URI (without
its password) and what is wrong. ``open_db(uri, create=False)`` is for
commands that only read: it raises ``NoDatabase`` (creating nothing)
where no database was ever written.
"""
import os
import random
import socket
import time
import urllib.parse

import transaction
import transaction.interfaces
import ZODB
import ZODB.POSException
import ZODB.utils
import zodburi

from trackstore import ids


#: Objects kept per connection cache. The indexes are BTrees of many
#: buckets; ZODB's default of 400 objects thrashes once an index has a few
#: thousand buckets. 20,000 keeps a 1M-track load under 250 MB; more
#: buys little speed for much memory (see docs/performance.txt).
DEFAULT_CACHE_SIZE = 20000

#: Where the database lives when no URI is given (relative to the cwd).
DEFAULT_PATH = os.path.join('var', 'trackstore.fs')

#: Seconds to wait for a ZEO or PostgreSQL server before giving up.
CONNECT_TIMEOUT = 5

#: Times a unit of work is tried before its conflict is raised.
DEFAULT_ATTEMPTS = 50
# Seconds a writer waits for a database server that went away.
DEFAULT_WAIT = 60.0

SCHEMES = ('file', 'memory', 'zeo', 'postgresql', 'postgres', 'zconfig')


class TrackstoreDBError(Exception):
    """A database URI is wrong or its database cannot be opened."""

    def __init__(self, uri, problem):
        self.uri = uri
        self.problem = problem
        super().__init__(
            'cannot open database %s: %s' % (safe_uri(uri), problem))


class NoDatabase(TrackstoreDBError):
    """There is no database (or no trackstore data) where a URI points,
    and the caller asked not to create one."""


def safe_uri(uri):
    """The URI with its password (if any) replaced by ``***``."""
    if uri is None:
        return None
    parts = urllib.parse.urlsplit(uri)
    if parts.password:
        netloc = parts.netloc.replace(':' + parts.password + '@', ':***@')
        return urllib.parse.urlunsplit(parts._replace(netloc=netloc))
    return uri


def default_uri():
    """The URI of the embedded default database, ``./var/trackstore.fs``.
    """
    return 'file://' + os.path.abspath(DEFAULT_PATH)


def scheme_of(uri):
    """The URI's scheme, lower case ('' when it has none)."""
    if '://' not in uri:
        return ''
    return uri.split('://', 1)[0].lower()


def as_uri(uri):
    """The URI a user's database argument means.

    None and '' mean the default FileStorage; a plain path (anything
    without ``scheme://``) is a FileStorage file, relative to the
    current directory. Everything else is returned as it is.
    """
    if uri is None or uri == '':
        return default_uri()
    if not isinstance(uri, str):
        raise TrackstoreDBError(repr(uri), 'a database URI must be a string')
    if '://' not in uri:
        return 'file://' + os.path.abspath(os.path.expanduser(uri))
    return uri


def open_db(uri=None, create=True, **kw):
    """Open the ZODB database that ``uri`` names and return a ``ZODB.DB``.

    Keyword arguments go to ``ZODB.DB`` (``cache_size``, ``pool_size``,
    ...); connection parameters in the URI's query (zodburi's
    ``connection_cache_size`` etc.) come next, and ``cache_size``
    defaults to ``DEFAULT_CACHE_SIZE``.

    With ``create=False`` (for commands that only read) a database that
    was never written raises ``NoDatabase`` and nothing is created: no
    file, no directory, no tables, no root object.
    """
    for attempt in range(DEFAULT_ATTEMPTS):
        uri, storage, dbkw = _open_storage(uri, create)
        dbkw.update(kw)
        if not create and storage.lastTransaction() == ZODB.utils.z64:
            storage.close()
            raise NoDatabase(uri, 'the database is empty (nothing was '
                             'ever stored in it)')
        try:
            db = ZODB.DB(storage, **dbkw)
        except Exception as e:
            storage.close()
            # Processes that open a new database at once all try to
            # write its root object: the losers conflict; try again.
            if attempt + 1 < DEFAULT_ATTEMPTS and is_retryable(e):
                _pause(attempt)
                continue
            raise TrackstoreDBError(uri, _explain(scheme_of(uri), e)) from e
        # get_storage names the URI when the storage is missing.
        db.trackstore_uri = uri
        return db


def open_storage(uri=None):
    """Open the ZODB storage (not a database) that ``uri`` names."""
    return _open_storage(uri)[1]


def _open_storage(uri, create=True):
    if (uri is None or uri == '') and create:
        os.makedirs(os.path.dirname(DEFAULT_PATH), exist_ok=True)
    uri = as_uri(uri)
    scheme = scheme_of(uri)
    if scheme not in SCHEMES:
        raise TrackstoreDBError(
            uri, 'unknown scheme %r; use a file path, file://, memory://, '
            'zeo://host:port or postgresql://user@host/dbname'
            % (scheme or uri))
    if scheme == 'memory' and not create:
        raise NoDatabase(uri, 'a memory:// database is new, hence empty')
    if scheme in ('postgresql', 'postgres'):
        factory, dbkw = _relstorage_factory(uri, create)
    else:
        if scheme == 'zeo':
            uri_for_zodburi = _zeo_uri(uri)
        else:
            uri_for_zodburi = uri
        if scheme == 'file':
            _check_file_uri(uri, create)
        try:
            factory, dbkw = zodburi.resolve_uri(uri_for_zodburi)
        except (KeyError, ValueError, TypeError) as e:
            raise TrackstoreDBError(uri, 'bad URI: %s' % (e,)) from e
    if 'connection_cache_size' not in _query(uri):
        dbkw['cache_size'] = DEFAULT_CACHE_SIZE
    if scheme == 'zeo':
        _check_reachable(uri)
    for attempt in range(DEFAULT_ATTEMPTS):
        try:
            storage = factory()
            break
        except NoDatabase:
            raise
        except Exception as e:
            # Processes that open a new PostgreSQL database at once all
            # try to create RelStorage's tables; the losers see them
            # appear under their feet. The next try finds them made.
            if attempt + 1 < DEFAULT_ATTEMPTS and _schema_race(e):
                _pause(attempt)
                continue
            if not create and scheme.startswith('postgres') \
                    and _missing_table(e):
                raise NoDatabase(uri, 'no trackstore database here '
                                 '(RelStorage\'s tables are missing)') from e
            raise TrackstoreDBError(uri, _explain(scheme, e)) from e
    if scheme == 'zeo' and _query(uri).get('server_sync', '1') != '0':
        # A ZEO client learns of other clients' commits asynchronously.
        # Without a round trip at transaction begin, a process may not
        # yet see what another one committed a moment ago (a session
        # registered through another web worker), and a writer retrying
        # after a conflict may still see the old state and conflict
        # again and again. zodburi cannot pass server_sync, so set it as
        # ClientStorage itself does once connected (and on reconnects).
        # ``?server_sync=0`` saves the round trip where that is fine.
        storage.server_sync = True
        storage.sync = storage.ping
    if scheme == 'zeo':
        _forget_oids_on_reconnect(storage)
    return uri, storage, dbkw


def _forget_oids_on_reconnect(storage):
    """Drop the object ids a ZEO client prefetched whenever it
    (re)connects.

    ZEO's client keeps the ids it prefetched from the server across a
    reconnect, but a restarted server only knows the ids that were
    committed and hands the others out again: two new objects of one
    transaction would get one id ("A different object already has the
    same oid"). A writer cannot tell when that happens: the server may
    go and come back between two of its transactions, without any call
    of its failing. So the ids go at every connect (there is no public
    call for it) and every id comes from the server that will store it.
    """
    connected = storage.notify_connected

    def notify_connected(*args, **kw):
        prefetched = getattr(storage, '_oids', None)
        if isinstance(prefetched, list):
            del prefetched[:]
        return connected(*args, **kw)

    storage.notify_connected = notify_connected


def _missing_table(error):
    """True when RelStorage, told not to create its tables, found none.
    """
    while error is not None:
        if type(error).__name__ == 'UndefinedTable' or \
                'Schema mismatch' in str(error):
            return True
        error = error.__cause__ or error.__context__
    return False


def _schema_race(error):
    while error is not None:
        if type(error).__name__ in (
                'UniqueViolation', 'DuplicateTable', 'DuplicateObject',
                'DuplicateFunction', 'DeadlockDetected'):
            return True
        error = error.__cause__ or error.__context__
    return False


def copy_database(source_uri, destination_uri):
    """Copy every transaction of one database into another, empty one.

    This is how an existing FileStorage moves to a ZEO server or to
    PostgreSQL (the same as RelStorage's ``zodbconvert``, without its
    configuration file). The destination must be empty: a database that
    was never opened by ZODB (which writes a root object on first open).
    """
    source = open_storage(source_uri)
    try:
        destination = open_storage(destination_uri)
        try:
            if destination.lastTransaction() != ZODB.utils.z64:
                raise TrackstoreDBError(
                    destination_uri, 'the destination of a copy must be '
                    'empty (never opened), it already holds transactions')
            destination.copyTransactionsFrom(source)
        finally:
            destination.close()
    finally:
        source.close()


def _query(uri):
    query = uri.split('?', 1)[1] if '?' in uri else ''
    return dict(urllib.parse.parse_qsl(query))


def _with_defaults(uri, defaults):
    """Add ``defaults`` to the URI's query where it does not set them."""
    query = _query(uri)
    extra = {k: v for k, v in defaults.items() if k not in query}
    if not extra:
        return uri
    sep = '&' if '?' in uri else '?'
    return uri + sep + urllib.parse.urlencode(extra)


def _relstorage_options():
    from relstorage.zodburi_resolver import RelStorageURIResolver as R
    return frozenset(
        R._bool_args + R._int_args + R._string_args + R._bytesize_args
        + R._float_args + R._tuple_args)


def _postgresql(uri):
    """Split a ``postgresql://`` URI into what each party understands:
    ``(dsn, options, dbkw)``: the libpq connection string (key=value
    form, which RelStorage appends to), RelStorage's options (strings)
    and zodburi's database keywords (strings)."""
    import psycopg2.extensions
    parts = urllib.parse.urlsplit(uri)
    if not parts.path.strip('/'):
        raise TrackstoreDBError(
            uri, 'no database name; use postgresql://user@host/dbname')
    query = urllib.parse.parse_qsl(parts.query, keep_blank_values=True)
    relstorage_names = _relstorage_options()
    dbkw, options, libpq = {}, {}, []
    for key, value in query:
        if key in zodburi.PARAMETERS:
            dbkw[key] = value
        elif key in relstorage_names:
            options[key] = value
        else:
            libpq.append((key, value))
    # History-free is our default: tracks are not edited, so old
    # revisions would only grow the tables.
    options.setdefault('keep_history', 'false')
    options.setdefault('driver', 'psycopg2')
    # libpq waits for a host that does not answer as long as the TCP
    # stack does (minutes); wait a few seconds, then fail.
    if 'connect_timeout' not in dict(libpq):
        libpq.append(('connect_timeout', str(CONNECT_TIMEOUT)))
    # libpq parses its own URI (percent-escapes, several hosts, the
    # default port); RelStorage wants key=value, so convert.
    # (Not urlunsplit: it drops the '//' of 'postgresql:///db', libpq's
    # spelling of "the local socket".)
    libpq_uri = 'postgresql://%s%s?%s' % (
        parts.netloc, parts.path, urllib.parse.urlencode(libpq))
    try:
        params = psycopg2.extensions.parse_dsn(libpq_uri)
    except psycopg2.Error as e:
        raise TrackstoreDBError(uri, 'bad URI: %s' % (
            str(e).strip(),)) from e
    return psycopg2.extensions.make_dsn(**params), options, dbkw


def _relstorage_factory(uri, create=True):
    from relstorage.options import Options
    from relstorage.storage import RelStorage
    from relstorage.zodburi_resolver import RelStorageURIResolver
    dsn, options, dbkw = _postgresql(uri)
    try:
        options, _ = RelStorageURIResolver(None).interpret_kwargs(options)
        options = Options(**options)
        dbkw = zodburi._get_dbkw(dbkw)
    except (KeyError, ValueError, TypeError) as e:
        raise TrackstoreDBError(uri, 'bad URI: %s' % (e,)) from e
    # A reader must not make RelStorage's tables in a database that
    # holds none.
    options.create_schema = create

    def factory():
        from relstorage.adapters.postgresql import PostgreSQLAdapter
        adapter = PostgreSQLAdapter(dsn=dsn, options=options)
        return RelStorage(adapter=adapter, options=options)
    return factory, dbkw


def _zeo_uri(uri):
    # Without a timeout ClientStorage waits forever for a server that is
    # not there; wait a few seconds, then fail.
    uri = _without(uri, 'server_sync')
    return _with_defaults(uri, {'wait_timeout': str(CONNECT_TIMEOUT)})


def _without(uri, name):
    """The URI without the query parameter ``name`` (which zodburi does
    not know and would reject)."""
    if '?' not in uri:
        return uri
    base, query = uri.split('?', 1)
    pairs = [(k, v) for k, v in urllib.parse.parse_qsl(query) if k != name]
    return base + ('?' + urllib.parse.urlencode(pairs) if pairs else '')


def _zeo_address(uri):
    parts = urllib.parse.urlsplit(uri.replace('zeo://', 'http://', 1))
    if parts.netloc:
        try:
            port = parts.port or 9991
        except ValueError as e:
            raise TrackstoreDBError(uri, 'bad port: %s' % (e,)) from e
        return (parts.hostname or '127.0.0.1', port)
    return parts.path


def _check_reachable(uri):
    """Fail fast, with the reason, when nothing listens at a ZEO address.
    """
    address = _zeo_address(uri)
    if isinstance(address, tuple):
        family, where = socket.AF_INET, address
        if ':' in address[0]:
            family = socket.AF_INET6
    else:
        family, where = socket.AF_UNIX, address
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.settimeout(CONNECT_TIMEOUT)
    try:
        sock.connect(where)
    except (OSError, socket.timeout) as e:
        raise TrackstoreDBError(
            uri, 'no ZEO server reachable at %s (%s)'
            % (_address_text(address), e.strerror or e)) from e
    finally:
        sock.close()


def _address_text(address):
    if isinstance(address, tuple):
        return '%s:%s' % address
    return address


def _check_file_uri(uri, create=True):
    path = uri.split('file://', 1)[1].split('?', 1)[0]
    if not path:
        raise TrackstoreDBError(uri, 'no file path')
    directory = os.path.dirname(os.path.abspath(path))
    if not create and not os.path.exists(path):
        raise NoDatabase(uri, 'no such file: %s' % (os.path.abspath(path),))
    if not os.path.isdir(directory):
        raise TrackstoreDBError(
            uri, 'directory %s does not exist' % (directory,))
    if os.path.isdir(path):
        raise TrackstoreDBError(
            uri, '%s is a directory, not a FileStorage file' % (path,))


def _explain(scheme, error):
    name = type(error).__name__
    # One line: libpq's messages come with a second, indented line.
    text = ' '.join(str(error).split()) or name
    if name == 'LockError':
        return ('the file is in use by another process or open database '
                '(%s); several processes need a ZEO server, see '
                'docs/deployment.txt'
                % (text,))
    if name == 'ClientDisconnected':
        return 'the ZEO server did not answer within %s seconds (%s)' % (
            CONNECT_TIMEOUT, text)
    if name == 'OperationalError' and scheme.startswith('postgres'):
        return 'PostgreSQL is not reachable or refused us: %s' % (text,)
    return '%s: %s' % (name, text)


# -- the storage in the database ----------------------------------------


def _default_factory():
    from trackstore.storage import TrackingStorage
    return TrackingStorage()


def get_storage(conn, name='trackstore', factory=None, attempts=None,
                create=True):
    """Return the tracking storage at ``root[name]``, creating it if needed.

    The creation is committed in the connection's transaction manager
    (retried on conflict: two processes may race to create it; the loser
    finds the winner's). ``factory`` makes the storage; the default is a
    ``TrackingStorage()``. An existing storage is returned without
    committing anything. With ``create=False`` a missing storage raises
    ``NoDatabase`` instead (for commands that only read).
    """
    tm = conn.transaction_manager
    root = conn.root()
    if name in root:
        return root[name]
    if not create:
        db = conn.db()
        raise NoDatabase(
            getattr(db, 'trackstore_uri', None) or db.storage.getName(),
            'it holds no trackstore data (no %r in its root)' % (name,))
    factory = factory or _default_factory
    attempts = attempts or DEFAULT_ATTEMPTS
    for attempt in range(attempts):
        try:
            if name not in root:
                root[name] = factory()
            tm.commit()
            return root[name]
        except Exception as e:
            tm.abort()
            if attempt + 1 >= attempts or not is_retryable(e):
                raise
            _pause(attempt)
    raise AssertionError('not reached')  # pragma: no cover


def is_retryable(error):
    """True for errors that a fresh try of the transaction can cure.

    ZODB's ConflictError (and ReadConflictError) are TransientErrors; so
    are RelStorage's row lock timeouts.
    """
    if isinstance(error, (transaction.interfaces.TransientError,
                          ZODB.POSException.ConflictError)):
        return True
    # RelStorage's commit lock timeout is not a TransientError "for
    # historical reasons", but a later try may well get the lock.
    return type(error).__name__ == 'UnableToAcquireCommitLockError'


def is_disconnected(error):
    """True when the storage's server is away (ZEO's ClientDisconnected
    and the like), as opposed to a conflict."""
    return type(error).__name__ in ('ClientDisconnected', 'DisconnectedError')


class DatabaseGone(Exception):
    """The database server stayed away longer than the writer waits."""

    def __init__(self, db, wait):
        self.wait = wait
        name = db.storage.getName() if hasattr(db, 'storage') else db
        super().__init__('the database %s did not answer for %g s'
                         % (name, wait))


def _pause(attempt):
    # A short random backoff so that writers that just collided do not
    # collide again in lock step.
    # The cap keeps a writer that lost many times from sleeping long.
    time.sleep(random.uniform(0, min(0.25, 0.004 * 2 ** attempt)))


class Writer:
    """One connection that runs units of work with conflict retries.

    A writer keeps its connection (and so its partition of the storage,
    its cache and its id allocator) across units of work; open one per
    thread or process. ``commits`` counts committed units, ``conflicts``
    the tries that were retried, ``most_retries`` is the most retries one
    unit needed, ``last_commit_seconds`` is the duration of the last
    successful ``commit()`` call (for the benchmarks).

    >>> db = open_db('memory://')
    >>> with Writer(db, factory=dict) as w:
    ...     w.run(lambda s: s.update(a=1))
    ...     w.commits
    1
    >>> db.close()
    """

    def __init__(self, db, name='trackstore', factory=None,
                 attempts=DEFAULT_ATTEMPTS, wait=DEFAULT_WAIT):
        self.db = db
        self.name = name
        self.attempts = attempts
        self.wait = wait
        self.commits = 0
        self.conflicts = 0
        self.most_retries = 0
        self.last_commit_seconds = 0.0
        self.transaction_manager = transaction.TransactionManager()
        self.connection = db.open(
            transaction_manager=self.transaction_manager)
        self.storage = get_storage(self.connection, name, factory, attempts)

    def run(self, fn, *args, **kw):
        """Call ``fn(storage, *args, **kw)`` in a transaction and commit.

        On a conflict the transaction is aborted and ``fn`` called again
        (up to ``attempts`` times), so ``fn`` must do all of its work
        through the storage it is given. A database that went away (a
        ZEO server restarting) is waited for up to ``wait`` seconds,
        then ``DatabaseGone`` is raised. Returns what ``fn`` returns.
        """
        tm = self.transaction_manager
        attempt = 0
        gone_since = None
        while True:
            try:
                # Beginning syncs with the storage: it fails too when
                # the server is away, so it is inside the retry.
                tm.begin()
                result = fn(self.connection.root()[self.name], *args, **kw)
                started = time.perf_counter()
                tm.commit()
                self.last_commit_seconds = time.perf_counter() - started
            except Exception as e:
                tm.abort()
                if is_disconnected(e):
                    gone_since = gone_since or time.monotonic()
                    if time.monotonic() - gone_since > self.wait:
                        raise DatabaseGone(self.db, self.wait) from e
                    time.sleep(0.5)
                    self._reopen()
                    continue
                attempt += 1
                if attempt >= self.attempts or not is_retryable(e):
                    raise
                self.conflicts += 1
                _pause(attempt - 1)
            else:
                self.commits += 1
                self.most_retries = max(self.most_retries, attempt)
                return result

    def _reopen(self):
        """A new connection after the server went away (the ids the
        client had prefetched are dropped when it reconnects: see
        ``_forget_oids_on_reconnect``)."""
        try:
            self.connection.close()
        except Exception:
            # The old connection may not even close without its server;
            # it is dropped either way.
            pass
        self.connection = self.db.open(
            transaction_manager=self.transaction_manager)

    def close(self, release=True):
        """Close the connection; with ``release``, first give the
        storage's partition lease back (if the storage has one), so the
        next writer reuses the partition instead of waiting for the lease
        to run out."""
        try:
            self.transaction_manager.abort()
            if release and hasattr(self.storage, 'partitions'):
                commits = self.commits
                self.run(ids.release)
                self.commits = commits      # count units of work only
        finally:
            self.transaction_manager.abort()
            self.connection.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def transact(db, fn, *args, name='trackstore', attempts=DEFAULT_ATTEMPTS,
             **kw):
    """Run ``fn(storage, *args, **kw)`` as one unit of work, retrying it on
    conflicts, and return its result.

    It opens (and closes) a connection of ``db``'s pool with its own
    transaction manager. Loops of many units should keep a ``Writer``
    instead, which also counts the retries.
    """
    writer = Writer(db, name=name, attempts=attempts)
    try:
        return writer.run(fn, *args, **kw)
    finally:
        # The connection goes back to the pool and keeps its partition
        # for the next unit of work; releasing it would cost a commit.
        writer.close(release=False)
