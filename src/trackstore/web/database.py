"""A connection per read, a transaction per group of writes.

A read opens a connection of the database's pool with its own
transaction manager, works in one transaction and closes it. Writes
that arrive together run in one transaction of one connection and
commit together (``commits.GroupCommit``), retried on conflicts. ZODB
gives every connection a consistent snapshot, so a request never sees
another request's write half done: it sees all of a commit or none of
it.
"""
import transaction

from trackstore.db import get_storage
from trackstore.db import open_db
from trackstore.db import safe_uri
from trackstore.web.commits import GroupCommit


class Database:
    """The app's database and its units of work.

    ``read(fn)`` calls ``fn(storage)`` in a fresh connection; ``write``
    commits, retrying on conflicts. ``commits`` and ``conflicts`` count
    this process's transactions.
    """

    def __init__(self, uri=None, db=None, name='trackstore'):
        self.uri = uri
        self.db = db if db is not None else open_db(uri)
        self.name = name
        self.safe_uri = safe_uri(uri) or 'default'
        self.group = GroupCommit(self.db, name)
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

        Units of work of concurrent requests share a commit
        (``commits.GroupCommit``): they run one after another in one
        transaction, and each request is answered once it has committed.
        """
        return self.group.run(fn, *args)

    @property
    def commits(self):
        return self.group.commits

    @property
    def conflicts(self):
        return self.group.conflicts


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
