"""Load raw hits into the store: read, validate, sort, store by the rule.

A file (or standard input) is a batch::

    input (path or '-', JSON Lines or a JSON array, gzip of either)
      -> records with their line numbers
      -> valid hits (the rest go to the rejects file, with the reason)
      -> sorted by client group and time, in bounded memory
         (``trackstore.sessions.sort``)
      -> in chunks of whole groups, one transaction each:
         ``trackstore.hitstore.store_hits`` (dedupe, identities, merge
         into the stored visits)

A live stream (``follow=True``) goes through the streaming sessionizer
instead, which decides *when* hits are handed on; the hits of the
proto-sessions it closes are stored by the same ``store_hits``, so they
end in the same visits.

Each commit stores the visits and the ids of the hits taken in
together. A load killed at any point therefore stops at the last
commit; loading the same input again skips what that commit holds and
ends with exactly what one clean load stores.
"""
import io
import os
import pickle
import sys
import time

from trackstore import killpoints
from trackstore.db import DEFAULT_WAIT
from trackstore.db import Writer
from trackstore.db import open_db
from trackstore.hitstore import hit_state
from trackstore.hitstore import store_hits
from trackstore.privacy import Policy
from trackstore.retention import apply_retention
from trackstore.sessions import CollectingCloser
from trackstore.sessions import Reject
from trackstore.sessions import RejectsWriter
from trackstore.sessions import Rules
from trackstore.sessions import StreamEngine
from trackstore.sessions import parse_line
from trackstore.sessions import read_records
from trackstore.sessions.hits import check_source
from trackstore.sessions.hits import open_source
from trackstore.sessions.sort import DEFAULT_MEMORY
from trackstore.sessions.sort import HitSorter
from trackstore.sessions.sort import group_of


# Hits per commit: a commit rewrites the buckets its hits touch in the
# client, identity and id maps, so larger commits write each bucket for
# more hits (50,000 loaded 443,000 hits 15% faster than 20,000, at
# 360 MB peak for 1M hits with the default memory budget).
DEFAULT_BATCH_SIZE = 50000
DEFAULT_TIMEOUT = 30 * 60.0
# Tests slow commits down with this variable so that a SIGKILL surely
# lands in the middle of a load; a float of seconds to sleep per commit.
SLOW_COMMIT_ENV = 'TRACKSTORE_INGEST_COMMIT_DELAY'


def _load_libc_trim():
    try:
        import ctypes
        return ctypes.CDLL('libc.so.6').malloc_trim
    except (OSError, AttributeError):
        return None


_MALLOC_TRIM = _load_libc_trim()


def _trim():
    """Give freed memory back to the system after a commit (glibc only):
    a commit's pickles and buckets are large blocks from malloc, which
    would otherwise keep the peak of the largest commit."""
    if _MALLOC_TRIM is not None:
        _MALLOC_TRIM(0)


# -- one load -------------------------------------------------------------


class IngestReport:
    """What one load did.

    ``read`` counts the records read (hits and rejects), ``stored`` the
    new hits taken in, ``duplicates`` the hits whose id was loaded
    before (or earlier in the same input), ``rejected`` the records
    written to ``rejects_path``; ``bots`` the hits of known bots and
    crawlers left out by the database's privacy settings
    (``trackstore.privacy``); ``late`` the hits that would have
    changed a visit of a released batch (stored as visits of their
    own); ``sessions`` the visits written and ``replaced`` the visits
    taken out because they grew, merged or lost hits; ``runs`` the
    sorted runs spilled to disk; ``commits`` the transactions
    committed; ``pruned`` what the database's retention setting pruned
    after the load (a ``trackstore.retention.PruneReport``, None when
    it has none).
    """

    def __init__(self, source):
        self.source = source
        self.read = 0
        self.stored = 0
        self.duplicates = 0
        self.rejected = 0
        self.bots = 0
        self.rejects_path = None
        self.reject_reasons = {}
        self.late = 0
        self.sessions = 0
        self.replaced = 0
        self.runs = 0
        self.commits = 0
        self.conflicts = 0
        self.seconds = 0.0
        self.format = None
        self.broken = None
        self.pruned = None

    def add(self, counts):
        for name in ('stored', 'duplicates', 'late', 'sessions',
                     'replaced'):
            setattr(self, name, getattr(self, name) + counts[name])
        self.commits += 1

    def as_dict(self):
        return {
            'source': self.source, 'read': self.read,
            'stored': self.stored, 'duplicates': self.duplicates,
            'rejected': self.rejected, 'rejects_path': self.rejects_path,
            'bots': self.bots,
            'reject_reasons': dict(self.reject_reasons),
            'late': self.late, 'sessions': self.sessions,
            'replaced': self.replaced, 'runs': self.runs,
            'commits': self.commits, 'conflicts': self.conflicts,
            'format': self.format,
            'broken': None if self.broken is None else str(self.broken),
            'pruned': None if self.pruned is None else
            self.pruned.as_dict(),
            'seconds': round(self.seconds, 3)}

    def summary(self):
        """One line for people."""
        rejected = '%d rejected' % self.rejected
        if self.rejected:
            rejected += ' (see %s)' % self.rejects_path
        if self.bots:
            rejected += ', %d bot hits left out' % self.bots
        rate = ''
        if self.seconds > 0:
            rate = ' in %.1f s (%d hits/s)' % (
                self.seconds, self.read / self.seconds)
        broken = '' if self.broken is None else '; %s' % (self.broken,)
        pruned = '' if self.pruned is None else '; %s' % (
            self.pruned.summary(),)
        return ('%d hits read: %d stored, %d duplicates, %s, %d late; '
                '%d sessions written, %d replaced%s%s%s' % (
                    self.read, self.stored, self.duplicates, rejected,
                    self.late, self.sessions, self.replaced, rate, broken,
                    pruned))

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
    ``batch_size`` the hits per commit (rounded up to whole client
    groups); ``memory`` the bytes of hits held before sorted runs are
    spilled to disk; ``progress`` is called as ``progress(bytes_read,
    size, report)`` while reading and at the end (``size`` is None when
    unknown). ``lateness`` is the live stream's allowed lateness
    (seconds; ``follow`` loads only). A database server that goes away
    is waited for ``wait`` seconds (then ``DatabaseGone``). ``format``
    is ``'jsonl'``, ``'array'`` or ``'auto'``; ``limits`` the hits'
    ``trackstore.sessions.hits.Limits`` (None: the defaults).
    """

    def __init__(self, db, timeout=DEFAULT_TIMEOUT,
                 batch_size=DEFAULT_BATCH_SIZE, rejects=None,
                 progress=None, name='trackstore', lateness=None,
                 memory=DEFAULT_MEMORY, wait=DEFAULT_WAIT, format='auto',
                 limits=None):
        self.db = db
        self.format = format
        self.limits = limits
        self.rules = Rules(timeout=timeout)
        self.lateness = lateness
        self.batch_size = batch_size
        self.memory = memory
        self.rejects = rejects
        self.progress = progress
        self.writer = Writer(db, name=name, wait=wait)
        self._delay = float(os.environ.get(SLOW_COMMIT_ENV) or 0)

    def close(self):
        self.writer.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # -- one commit ------------------------------------------------------

    def _store(self, storage, hits):
        counts = store_hits(storage, hits, self.rules)
        if self._delay:
            time.sleep(self._delay)
        killpoints.join(self.writer.transaction_manager.get())
        killpoints.here('before-commit')
        return counts

    def _commit(self, report, hits):
        counts = self.writer.run(self._store, hits)
        killpoints.here('after-commit')
        report.add(counts)
        # A load writes far more than it reads again: what one commit
        # touched is rarely needed by the next, and left in the cache it
        # made peak RSS grow with the input.
        self.writer.connection.cacheMinimize()
        _trim()

    def _chunks(self, hits):
        """``batch_size`` hits at a time, cut between sort groups."""
        chunk = []
        group = None
        for hit in hits:
            if len(chunk) >= self.batch_size and group_of(hit) != group:
                yield chunk
                chunk = []
            group = group_of(hit)
            chunk.append(hit)
        if chunk:
            yield chunk

    # -- a whole input ---------------------------------------------------

    def _read(self, source, report, rejects, take):
        """Parse every record of ``source``: hits go to ``take(hit)``,
        rejects to ``rejects``; progress is told as bytes go by. An
        input that breaks off (a truncated gzip) gives the records
        before the break, and ``report.broken`` says where."""
        policy = self.writer.run(Policy.of)
        if not policy.changes_nothing:
            take = _through(policy, take)
        raw, size = open_source(source)
        counter = _Counting(raw)
        stream = io.BufferedReader(counter, 1 << 20)
        progress = self.progress
        limits = self.limits
        try:
            records = read_records(stream, format=self.format)
            report.format = records.format
            read = 0
            for lineno, line in records:
                read += 1
                if not read & 1023:
                    killpoints.here('read')
                hit = parse_line(line, lineno, limits)
                if hit.__class__ is Reject:
                    rejects.write(hit)
                else:
                    take(hit)
                if progress is not None and not read % 50000:
                    report.read = read
                    progress(counter.count, size, report)
            report.read = read
            report.broken = records.broken
        finally:
            report.bots = policy.bots
            if raw is not sys.stdin.buffer:
                raw.close()
        return counter.count, size

    def load(self, source, follow=False, stream=None):
        """Load one input (a path, or '-' for standard input) and return
        an ``IngestReport``. A batch load sorts the input first; with
        ``follow`` the input is a live stream (see the module
        docstring), whose open sessions are kept under the name
        ``stream`` (default: the source's absolute path, or '-')."""
        started = time.perf_counter()
        report = IngestReport(source)
        rejects_path = self.rejects or default_rejects_path(
            self.db, source)
        report.rejects_path = os.path.abspath(rejects_path)
        # An input that cannot be read fails here, before the last
        # load's rejects are removed (InputError, one line).
        check_source(source)
        if os.path.exists(rejects_path):
            # The rejects file tells about this load: a load started
            # again reads the whole input again and finds them all.
            os.unlink(rejects_path)
        conflicts = self.writer.conflicts
        rejects = RejectsWriter(rejects_path)
        try:
            if follow:
                done = self._follow(source, report, rejects,
                                    stream or stream_name(source))
            else:
                done = self._batch(source, report, rejects)
        finally:
            rejects.close()
        report.rejected = rejects.count
        report.reject_reasons = dict(rejects.reasons)
        killpoints.here('totals')
        if rejects.count or report.bots:
            # Kept with the other counts over all loads (the dashboard
            # shows them); a load run again counts its rejects and bots
            # again, as it counts its duplicates.
            self.writer.run(lambda storage: hit_state(storage).add_totals(
                {'rejected': rejects.count, 'bots': report.bots}))
        if not rejects.count:
            report.rejects_path = None
        report.pruned = self.writer.run(apply_retention)
        report.conflicts = self.writer.conflicts - conflicts
        report.seconds = time.perf_counter() - started
        if self.progress is not None:
            self.progress(done[0], done[1], report)
        return report

    def _batch(self, source, report, rejects):
        with HitSorter(self.memory) as sorter:
            done = self._read(source, report, rejects, sorter.add)
            report.runs = len(sorter.runs)
            for chunk in self._chunks(sorter.sorted()):
                self._commit(report, chunk)
        return done

    # -- a live stream ----------------------------------------------------

    def _follow(self, source, report, rejects, name):
        stream = _Stream(self, name)
        try:
            return self._read(source, report, rejects,
                              lambda hit: stream.add(hit, report))
        finally:
            stream.finish(report)


def _through(policy, take):
    """``take`` behind the privacy policy: each hit as the policy
    changes it, bots left out (and counted by the policy)."""
    apply = policy.apply

    def taking(hit):
        hit = apply(hit)
        if hit is not None:
            take(hit)
    return taking


def stream_name(source):
    """The name a live stream of ``source`` keeps its state under when
    none is given."""
    return source if source == '-' else os.path.abspath(source)


class _Stream:
    """The streaming sessionizer of a live load: hits go in as they
    come; each ``batch_size`` hits, or each ``COMMIT_EVERY`` seconds
    when hits come slowly, the hits of the proto-sessions it closed are
    stored (``store_hits``) in one transaction with the engine's open
    state (under the stream's ``name``), so a restart loses none."""

    # A live stream's sessions should reach the store within seconds,
    # not when 50,000 more hits have come.
    COMMIT_EVERY = 5.0

    def __init__(self, loader, name):
        self.loader = loader
        self.name = name
        self.pending = 0
        self.engine = None
        self.closer = CollectingCloser()
        self.due = time.monotonic() + self.COMMIT_EVERY

    def add(self, hit, report):
        if self.engine is None:
            self.engine = self.loader.writer.run(self._engine)
        self.engine.add(hit)
        self.pending += 1
        if (self.pending >= self.loader.batch_size
                or time.monotonic() >= self.due):
            self._commit(report)

    def finish(self, report):
        if self.engine is None:
            self.engine = self.loader.writer.run(self._engine)
        self.engine.flush()
        self._commit(report)

    def _engine(self, storage):
        saved = hit_state(storage).engines.get(self.name)
        loader = self.loader
        if saved is None:
            kw = {}
            if loader.lateness is not None:
                kw['lateness'] = loader.lateness
            return StreamEngine(self.closer, rules=loader.rules, **kw)
        engine = StreamEngine.from_state(pickle.loads(saved), self.closer)
        engine.rules = loader.rules
        return engine

    def _store(self, storage, hits):
        counts = self.loader._store(storage, hits)
        hit_state(storage).engines[self.name] = pickle.dumps(
            self.engine.state(), protocol=5)
        killpoints.here('stream-commit')
        return counts

    def _commit(self, report):
        hits = [h for s in self.closer.sessions for h in s.hits]
        try:
            report.add(self.loader.writer.run(self._store, hits))
        except Exception:
            # The engine is ahead of the database: read it again.
            self.engine = None
            raise
        self.closer.sessions = []
        self.pending = 0
        self.due = time.monotonic() + self.COMMIT_EVERY


def ingest(source, db, timeout=DEFAULT_TIMEOUT,
           batch_size=DEFAULT_BATCH_SIZE, rejects=None, progress=None,
           memory=DEFAULT_MEMORY, follow=False, lateness=None,
           wait=DEFAULT_WAIT, format='auto', limits=None, stream=None):
    """Load the hits of ``source`` (a path or '-') into the storage of
    ``db`` (a ``ZODB.DB``, or a database URI: None is the default
    FileStorage under ./var/). Returns an ``IngestReport``."""
    own = not hasattr(db, 'open')
    if own:
        db = open_db(db)
    try:
        with Loader(db, timeout=timeout, batch_size=batch_size,
                    rejects=rejects, progress=progress, memory=memory,
                    lateness=lateness, wait=wait, format=format,
                    limits=limits) as loader:
            return loader.load(source, follow=follow, stream=stream)
    finally:
        if own:
            db.close()
