"""One ZODB connection per request, writes retried on conflicts.

Each request opens a connection of the database's pool with its own
transaction manager, works in one transaction and closes it. ZODB gives
every connection a consistent snapshot, so a request never sees another
request's write half done: it sees all of a commit or none of it.
"""
import threading

import transaction

from trackstore.db import Writer
from trackstore.db import get_storage
from trackstore.db import open_db
from trackstore.db import safe_uri


class Database:
    """The app's database and its units of work.

    ``read(fn)`` and ``write(fn)`` call ``fn(storage)`` in a fresh
    connection; ``write`` commits, retrying on conflicts (``Writer``).
    ``commits`` and ``conflicts`` count this process's writes.
    """

    def __init__(self, uri=None, db=None, name='trackstore'):
        self.uri = uri
        self.db = db if db is not None else open_db(uri)
        self.name = name
        self.safe_uri = safe_uri(uri) or 'default'
        self.commits = 0
        self.conflicts = 0
        self._lock = threading.Lock()
        self._lane = threading.Lock()
        # Create the storage now, so that a read never has to write.
        self.write(lambda storage: None)

    def close(self):
        self.db.close()

    def read(self, fn, *args):
        """``fn(storage, snapshot, *args)`` in a transaction that is
        aborted at the end; ``snapshot`` names what the connection sees
        (see ``snapshot_of``)."""
        tm = transaction.TransactionManager()
        conn = self.db.open(transaction_manager=tm)
        try:
            tm.begin()
            storage = get_storage(conn, self.name)
            return fn(storage, snapshot_of(conn), *args)
        finally:
            tm.abort()
            conn.close()

    def write(self, fn, *args):
        """``fn(storage, *args)`` as one unit of work, committed and
        retried on conflicts; returns ``(result, conflicts retried)``.

        The writes of one process take turns (``_lane``): two
        registrations write the same buckets of the session-id map, so
        two threads writing at once would make one of them conflict,
        abort and do its work again (without the lane: 7 retries per
        1,000 commits in ``benchmarks/api.py``, and no more requests a
        second). The storage serializes commits anyway; the parsing and
        answering of requests still overlap.
        """
        writer = Writer(self.db, name=self.name)
        try:
            with self._lane:
                result = writer.run(fn, *args)
            with self._lock:
                self.commits += writer.commits
                self.conflicts += writer.conflicts
            return result, writer.conflicts
        finally:
            # Keep the connection's partition for the next request that
            # gets this connection from the pool (releasing costs a
            # commit).
            writer.close(release=False)


def snapshot_of(conn):
    """A key for the state a connection sees: it changes whenever a
    transaction was committed before the connection's snapshot.

    ZODB's MVCC adapter knows the snapshot as ``_start`` (the last
    transaction's id plus one); RelStorage's per-connection storage
    instance answers ``lastTransaction()`` from its last poll.
    """
    inner = conn._storage
    start = getattr(inner, '_start', None)
    if start is not None:
        return start
    return inner.lastTransaction()
