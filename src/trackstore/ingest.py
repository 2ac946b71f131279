"""Load raw hits into the store: read, validate, dedupe, sessionize, commit.

The pipeline for one load::

    input (path or '-', JSON Lines or a JSON array, gzip of either)
      -> records with their line numbers
      -> valid hits (the rest go to the rejects file, with the reason)
      -> new hits (hit ids already loaded are skipped)
      -> the streaming sessionizer -> the storing closer -> the store

Every ``batch_size`` hits one transaction commits the stored sessions,
the sessionizer's open state, the ids of the hits taken in and the load
counts together. A load killed at any point therefore stops at the last
commit; loading the same input again skips what that commit holds and
ends with exactly what one clean load stores.
"""
import io
import os
import pickle
import stat
import sys
import time

from BTrees.LLBTree import LLTreeSet
from BTrees.OOBTree import OOBTree
from BTrees.OOBTree import OOTreeSet
from persistent import Persistent

from trackstore.clickstream.dao import ClickstreamDao
from trackstore.db import Writer
from trackstore.db import open_db
from trackstore.sessions import Identities
from trackstore.sessions import Reject
from trackstore.sessions import RejectsWriter
from trackstore.sessions import Rules
from trackstore.sessions import StreamEngine
from trackstore.sessions import parse_line
from trackstore.sessions import read_records
from trackstore.sessions.closers import to_clickstream
from trackstore.sessions.closers import to_clickstream_records


ANNOTATION_KEY = 'trackstore.ingest'
DEFAULT_BATCH_SIZE = 20000
DEFAULT_TIMEOUT = 30 * 60.0
# Tests slow commits down with this variable so that a SIGKILL surely
# lands in the middle of a load; a float of seconds to sleep per commit.
SLOW_COMMIT_ENV = 'TRACKSTORE_INGEST_COMMIT_DELAY'

_INT64_MIN = -2 ** 63
_INT64_MAX = 2 ** 63 - 1


def _load_libc_trim():
    try:
        import ctypes
        return ctypes.CDLL('libc.so.6').malloc_trim
    except (OSError, AttributeError):
        return None


_MALLOC_TRIM = _load_libc_trim()


def _trim():
    """Give freed memory back to the system (glibc only; see
    ``PLAIN_MALLOC_ENV`` in cli.py for why)."""
    if _MALLOC_TRIM is not None:
        _MALLOC_TRIM(0)


# -- the persistent state of loads ----------------------------------------


class IngestState(Persistent):
    """What loads keep in a storage (``__annotations__`` under
    ``trackstore.ingest``).

    - ``ids``: the integer hit ids taken in (an ``LLTreeSet``; ids are
      added sorted, once per commit, so each commit touches few buckets);
    - ``other_ids``: every other hit id (strings, integers beyond 64
      bits) as text, in an ``OOTreeSet``;
    - ``engine``: the streaming sessionizer's state without its identity
      maps (a pickle of plain values: the open proto-sessions, the held
      hits, the clock), replaced at each commit;
    - ``owners``, ``customers``: the identity maps, updated with what
      changed in each commit (they grow with the visitors, so they are
      not rewritten every time);
    - ``totals``: counts over all loads (hits stored, duplicates,
      rejected, late, sessions closed, loads).
    """

    engine = None
    # Bumped by every commit of a load: a loader whose engine was read
    # at another generation must read it again (another process loaded
    # in between).
    generation = 0

    def __init__(self):
        self.ids = LLTreeSet()
        self.other_ids = OOTreeSet()
        self.owners = OOBTree()
        self.customers = OOBTree()
        self.totals = OOBTree()

    def add_totals(self, counts):
        for key, value in counts.items():
            if value:
                self.totals[key] = self.totals.get(key, 0) + value


def ingest_state(storage, create=True):
    """The storage's ``IngestState`` (created when asked), or None."""
    annotations = storage.__annotations__
    state = annotations.get(ANNOTATION_KEY)
    if state is None and create:
        state = annotations[ANNOTATION_KEY] = IngestState()
    return state


def _int_id(hid):
    """The hit id as an int for the LLTreeSet, or None."""
    if hid.__class__ is int and _INT64_MIN <= hid <= _INT64_MAX:
        return hid
    return None


# -- closed sessions into the clickstream ---------------------------------


class _Gathering:
    """A closer that gathers the sessions closed during one commit, so
    they are stored with one bulk ``store_session_records`` call."""

    def __init__(self):
        self.sessions = []

    def close(self, session):
        self.sessions.append(session)


def stored_session_id(closed):
    """The id a closed session is stored under: its first hit's time
    (UTC, to the second) before the sessionizer's id, e.g.
    ``20220428T073846-000605b44b6324bc``.

    Still deterministic (batch and stream give the same), and it makes
    the ids of the sessions closed in one commit neighbours in the
    clickstream's BTrees: with the bare hash ids every commit inserted
    at random places and rewrote nearly every bucket of those trees
    (measured: twice the bytes written to FileStorage per hit).
    """
    return '%s-%s' % (
        time.strftime('%Y%m%dT%H%M%S', time.gmtime(
            closed.hits[0].us // 1000000)), closed.session_id)


def session_models(closed):
    """The clickstream ``Session`` and ``SessionEvent`` values of a
    ``ClosedSession`` (the sessions package's mapping: the visit is the
    session, each hit an event, exact times in ``search_meta``), stored
    under ``stored_session_id``."""
    session, events = to_clickstream(closed)
    sid = stored_session_id(closed)
    session.session_id = sid
    for event in events:
        event.session_id = sid
    return session, events


def session_records(closed):
    """``session_models`` as plain dicts (``to_clickstream_records``),
    for ``ClickstreamDao.store_session_records``: the loader's path,
    which builds and validates no pydantic models."""
    return to_clickstream_records(closed, stored_session_id(closed))


# -- one load -------------------------------------------------------------


class IngestReport:
    """What one load did.

    ``read`` counts the records read (hits and rejects), ``stored`` the
    new hits taken in, ``duplicates`` the hits whose id was loaded
    before (or earlier in the same input), ``rejected`` the records
    written to ``rejects_path``; ``late`` the hits that came after
    their time was closed (stored as sessions of their own);
    ``opened``/``closed`` the sessions opened and closed (and stored)
    by this load; ``commits`` the transactions committed.
    """

    def __init__(self, source):
        self.source = source
        self.read = 0
        self.stored = 0
        self.duplicates = 0
        self.rejected = 0
        self.rejects_path = None
        self.reject_reasons = {}
        self.late = 0
        self.opened = 0
        self.closed = 0
        self.open = 0
        self.commits = 0
        self.conflicts = 0
        self.seconds = 0.0
        self.format = None

    def as_dict(self):
        return {
            'source': self.source, 'read': self.read,
            'stored': self.stored, 'duplicates': self.duplicates,
            'rejected': self.rejected, 'rejects_path': self.rejects_path,
            'reject_reasons': dict(self.reject_reasons),
            'late': self.late, 'sessions_opened': self.opened,
            'sessions_closed': self.closed, 'commits': self.commits,
            'conflicts': self.conflicts,
            'seconds': round(self.seconds, 3)}

    def summary(self):
        """One line for people."""
        rejected = '%d rejected' % self.rejected
        if self.rejected:
            rejected += ' (see %s)' % self.rejects_path
        rate = ''
        if self.seconds > 0:
            rate = ' in %.1f s (%d hits/s)' % (
                self.seconds, self.read / self.seconds)
        return ('%d hits read: %d stored, %d duplicates, %s, %d late; '
                '%d sessions opened, %d closed%s' % (
                    self.read, self.stored, self.duplicates, rejected,
                    self.late, self.opened, self.closed, rate))

    def __repr__(self):
        return '<IngestReport %s>' % self.summary()


def default_rejects_path(db, source):
    """Where the rejects of a load go: beside the database file (or in
    the working directory for databases that are not files), named for
    the input."""
    directory = '.'
    storage = getattr(db, 'storage', None)
    name = storage.getName() if storage is not None else ''
    if isinstance(name, str) and os.path.isfile(name):
        directory = os.path.dirname(os.path.abspath(name))
    if source == '-':
        base = 'stdin'
    else:
        base = os.path.basename(os.fspath(source)) or 'input'
    return os.path.join(directory, base + '.rejects.jsonl')


class _Counting(io.RawIOBase):
    """A raw stream that counts the bytes read through it (for progress;
    compressed bytes for gzip input, like the file's size)."""

    def __init__(self, raw):
        self._raw = raw
        self.count = 0

    def readable(self):
        return True

    def readinto(self, buffer):
        data = self._raw.read(len(buffer))
        n = len(data)
        buffer[:n] = data
        self.count += n
        return n


class Loader:
    """Loads hit inputs into the storage of ``db`` (a ``ZODB.DB``).

    ``timeout`` (seconds or text like ``'30m'``) is the session timeout;
    ``batch_size`` the hits per commit; ``progress`` is called as
    ``progress(bytes_read, size, report)`` after each commit and at the
    end (``size`` is None when unknown).
    """

    def __init__(self, db, timeout=DEFAULT_TIMEOUT,
                 batch_size=DEFAULT_BATCH_SIZE, rejects=None,
                 progress=None, name='trackstore', lateness=None):
        self.db = db
        self.rules = Rules(timeout=timeout)
        self.lateness = lateness
        self.batch_size = batch_size
        self.rejects = rejects
        self.progress = progress
        self.writer = Writer(db, name=name)
        self.engine = None
        self.closer = _Gathering()
        self._stale = True       # the engine must be read from the db
        self._generation = self._next_generation = None
        self._delay = float(os.environ.get(SLOW_COMMIT_ENV) or 0)

    def close(self):
        self.writer.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # -- the engine and its saved state --------------------------------

    def _load_engine(self, state):
        closer = self.closer = _Gathering()
        if state.engine is None:
            kw = {}
            if self.lateness is not None:
                kw['lateness'] = self.lateness
            return StreamEngine(closer, rules=self.rules, **kw)
        identities = Identities.from_state({
            'owners': dict(state.owners.items()),
            'customers': dict(state.customers.items())})
        engine = StreamEngine.from_state(
            pickle.loads(state.engine), closer, identities)
        if engine.rules != self.rules:
            if engine.open_count or engine.held:
                raise ValueError(
                    'open sessions in this database were built with '
                    '%r; load with the same timeout to finish them'
                    % (engine.rules,))
            # Nothing is open: the new rules apply from here on.
            engine.rules = self.rules
        return engine

    def _save_engine(self, state, engine):
        state.engine = pickle.dumps(
            engine.state(identities=False), protocol=5)
        changes = engine.identities.take_changes()
        if changes['owners']:
            state.owners.update(sorted(changes['owners'].items()))
        if changes['customers']:
            state.customers.update(sorted(
                (k, tuple(v)) for k, v in changes['customers'].items()))

    # -- one commit ------------------------------------------------------

    def _apply(self, storage, hits, final):
        """Take a list of hits in (one transaction): dedupe, sessionize,
        store closed sessions, save the engine. Returns the counts."""
        state = ingest_state(storage)
        if (self._stale or self.engine is None
                or state.generation != self._generation):
            # First use, the last attempt was aborted (the engine in
            # memory is ahead of the database), or another load committed
            # since: start over from what the database holds.
            self.engine = self._load_engine(state)
        self._stale = True
        state.generation += 1
        self._next_generation = state.generation
        engine = self.engine
        seen = state.ids
        other = state.other_ids
        new_ints = []
        new_other = []
        batch_ints = set()
        batch_other = set()
        duplicates = 0
        add = engine.add
        before = engine.stats()
        for hit in hits:
            hid = hit.id
            if hid.__class__ is int and _INT64_MIN <= hid <= _INT64_MAX:
                if hid in batch_ints or hid in seen:
                    duplicates += 1
                    continue
                batch_ints.add(hid)
                new_ints.append(hid)
            else:
                key = hit.idkey
                if key in batch_other or key in other:
                    duplicates += 1
                    continue
                batch_other.add(key)
                new_other.append(key)
            add(hit)
        if final:
            engine.flush()
        if new_ints:
            new_ints.sort()
            seen.update(new_ints)
        if new_other:
            new_other.sort()
            other.update(new_other)
        closed = self.closer.sessions
        if closed:
            self._store(storage, closed)
            self.closer.sessions = []
        self._save_engine(state, engine)
        after = engine.stats()
        counts = {
            'stored': len(new_ints) + len(new_other),
            'duplicates': duplicates,
            'late': after['late'] - before['late'],
            'opened': after['opened'] - before['opened'],
            'closed': after['closed'] - before['closed'],
        }
        state.add_totals(counts)
        if self._delay:
            time.sleep(self._delay)
        return counts, after['open']

    def _store(self, storage, closed):
        # The plain-dict path: it stores what store_sessions would
        # (test_ingest compares them) without pydantic, which was
        # almost half of the load's time.
        ClickstreamDao(storage).store_session_records(
            [session_records(s) for s in closed])

    def _commit(self, report, hits, final=False):
        counts, still_open = self.writer.run(self._apply, hits, final)
        self._stale = False
        self._generation = self._next_generation
        # A load writes far more than it reads again: the index buckets
        # and records of one commit are rarely touched by the next. Left
        # in the connection cache (100,000 objects, many of them large
        # buckets) they made peak RSS grow with the input (1.4 GB for 1M
        # hits); dropping them after each commit keeps it flat and was
        # faster too (less for the cache and the GC to walk).
        self.writer.connection.cacheMinimize()
        _trim()
        report.stored += counts['stored']
        report.duplicates += counts['duplicates']
        report.late += counts['late']
        report.opened += counts['opened']
        report.closed += counts['closed']
        report.open = still_open
        report.commits += 1

    # -- a whole input ---------------------------------------------------

    def load(self, source):
        """Load one input (a path, or '-' for standard input) and return
        an ``IngestReport``. At the end of the input every open session
        is closed and stored."""
        started = time.perf_counter()
        report = IngestReport(source)
        rejects_path = self.rejects or default_rejects_path(
            self.db, source)
        report.rejects_path = os.path.abspath(rejects_path)
        if os.path.exists(rejects_path):
            # The rejects file tells about this load: a load started
            # again reads the whole input again and finds them all.
            os.unlink(rejects_path)
        conflicts = self.writer.conflicts
        if source == '-':
            raw = sys.stdin.buffer
            size = None
        else:
            raw = open(source, 'rb')
            st = os.fstat(raw.fileno())
            size = st.st_size if stat.S_ISREG(st.st_mode) else None
        counter = _Counting(raw)
        stream = io.BufferedReader(counter, 1 << 20)
        progress = self.progress
        batch_size = self.batch_size
        rejects = RejectsWriter(rejects_path)
        try:
            hits = []
            read = 0
            for lineno, line in read_records(stream):
                read += 1
                hit = parse_line(line, lineno)
                if hit.__class__ is Reject:
                    rejects.write(hit)
                    continue
                hits.append(hit)
                if len(hits) >= batch_size:
                    report.read = read
                    self._commit(report, hits)
                    hits = []
                    if progress is not None:
                        progress(counter.count, size, report)
            report.read = read
            self._commit(report, hits, final=True)
        finally:
            rejects.close()
            if raw is not sys.stdin.buffer:
                raw.close()
        report.rejected = rejects.count
        report.reject_reasons = dict(rejects.reasons)
        if not rejects.count:
            report.rejects_path = None
        report.conflicts = self.writer.conflicts - conflicts
        report.seconds = time.perf_counter() - started
        if progress is not None:
            progress(counter.count, size, report)
        return report


def ingest(source, db, timeout=DEFAULT_TIMEOUT,
           batch_size=DEFAULT_BATCH_SIZE, rejects=None, progress=None):
    """Load the hits of ``source`` (a path or '-') into the storage of
    ``db`` (a ``ZODB.DB``, or a database URI: None is the default
    FileStorage under ./var/). Returns an ``IngestReport``."""
    own = not hasattr(db, 'open')
    if own:
        db = open_db(db)
    try:
        with Loader(db, timeout=timeout, batch_size=batch_size,
                    rejects=rejects, progress=progress) as loader:
            return loader.load(source)
    finally:
        if own:
            db.close()
