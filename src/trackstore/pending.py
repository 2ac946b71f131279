"""Per-call saves, batched until the transaction needs them.

A Zope application saves one track per request, many per transaction.
Written one at a time, each track's index keys would go into the
indexes' segments one key at a time: a user key lands anywhere in its
index, so nearly every call would start a segment (see
``index.Segmented``). Here ``saveUserTrack`` only allocates the id,
moves the run along and pickles the record; the records and index keys
wait in a ``Pending`` that belongs to the transaction, and go into the
trees in one sorted batch, as ``saveTracks`` writes them:

- before the transaction commits (a before-commit hook);
- before any read of the storage in the transaction (the storage calls
  ``flush``), so a read sees every earlier save.

``Pending`` joins the transaction as a data manager so that an abort
forgets what is waiting, and a savepoint remembers how far the rows had
got: rolled back, the trees are back where they were (ZODB's savepoint)
and the rows that were waiting then wait again.
"""
import transaction.interfaces
from zope.interface import implementer

from trackstore.ids import formatId


@implementer(transaction.interfaces.ISavepointDataManager)
class Pending:
    """The waiting saves of one storage in one transaction."""

    def __init__(self, storage, txn):
        self.storage = storage
        self.transaction_manager = storage._p_jar.transaction_manager
        # (partition, id, taskId, runId, userName, timeStamp, record)
        self.rows = []
        # rows[:flushed] are in the trees already
        self.flushed = 0
        self.clearCaches()
        txn.join(self)
        txn.addBeforeCommitHook(self.flush)

    def clearCaches(self):
        # Within a transaction the writer's partition and the runs that
        # runId=0 resolves to hold until a run is started, stopped or
        # removed (``runsChanged``) or a savepoint is rolled back.
        self.partition = None
        self.runs = {}

    @classmethod
    def of(cls, storage, create=True):
        """The storage's ``Pending`` in the current transaction (made
        when ``create``), or None outside a database."""
        jar = storage._p_jar
        if jar is None:
            return None
        txn = jar.transaction_manager.get()
        try:
            pending = txn.data(storage)
        except KeyError:
            pending = None
        if pending is not None or not create:
            return pending
        pending = cls(storage, txn)
        txn.set_data(storage, pending)
        return pending

    def save(self, taskId, runId, userName, data, timeStamp):
        """Take a track; return its id."""
        storage = self.storage
        run = self.runs.get((taskId, runId))
        if run is None:
            run = self.runs[taskId, runId] = storage._resolveRun(
                taskId, runId, start=timeStamp)
        partition = self.partition
        if partition is None:
            partition = self.partition = storage._writerPartition()
        trackId = partition.nextIds(1)[0]
        self.rows.append(storage._row(partition, trackId, taskId, run,
                                      userName, timeStamp, data))
        return formatId(trackId)

    def flush(self):
        """Write the waiting rows into the trees."""
        if self.flushed == len(self.rows):
            return
        rows = self.rows[self.flushed:]
        self.flushed = len(self.rows)
        self.storage._writeRows(rows)

    def runsChanged(self):
        self.runs = {}

    # the data manager

    def savepoint(self):
        return _Savepoint(self)

    def abort(self, txn):
        # Also called when a savepoint taken before this joined is
        # rolled back; the transaction then drops this data manager, so
        # the next save makes a new one, which joins again.
        self.rows = []
        self.flushed = 0
        self.clearCaches()
        txn.set_data(self.storage, None)

    def tpc_begin(self, txn):
        pass

    def commit(self, txn):
        pass

    def tpc_vote(self, txn):
        pass

    def tpc_finish(self, txn):
        self.abort(txn)

    def tpc_abort(self, txn):
        self.abort(txn)

    def sortKey(self):
        return 'trackstore.pending:%x' % id(self)


@implementer(transaction.interfaces.IDataManagerSavepoint)
class _Savepoint:

    def __init__(self, pending):
        self.pending = pending
        self.length = len(pending.rows)
        self.flushed = pending.flushed

    def rollback(self):
        # ZODB rolls the trees back to where they were; the rows that
        # had been written since wait again, the later ones are gone.
        pending = self.pending
        del pending.rows[self.length:]
        pending.flushed = self.flushed
        pending.clearCaches()
