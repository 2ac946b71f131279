"""Named points where a load can be killed on purpose, for fault tests.

With ``TRACKSTORE_KILL_AT=name`` (or ``name:n``) in its environment, a
process sends itself SIGKILL the first (or the ``n``-th) time it passes
the point ``name``: no ``finally``, no ``atexit``, no flush, as when a
machine loses power or the OOM killer strikes. Without the variable a
point costs one attribute lookup and a comparison.

The points of a load (``trackstore.ingest``, ``trackstore.hitstore``,
``trackstore.sessions.sort``), in the order a load passes them:

``read``
    every 1,024th record read, before it is parsed;
``spill``
    while a sorted run is written to disk, after each block of it;
``store``
    in ``store_hits``, the new hit ids noted but no visit merged yet;
``before-commit``
    a commit's work done, the transaction not yet committed;
``mid-commit``
    in the two-phase commit, after the storages voted and before they
    finish (the data is written, not yet committed);
``after-commit``
    a commit done, before the load takes note of it (its counts, the
    progress it reports);
``stream-commit``
    a live stream's hits and its open sessions stored, not committed;
``totals``
    every hit stored, before the count of rejects is committed.

Whatever the point, loading the same input again must end with exactly
what one clean load stores (tests/test_ingest_faults.py).
"""
import os
import signal


ENV = 'TRACKSTORE_KILL_AT'
POINTS = ('read', 'spill', 'store', 'before-commit', 'mid-commit',
          'after-commit', 'stream-commit', 'totals')


def parse(value):
    """``(name, n)`` of a ``TRACKSTORE_KILL_AT`` value, or None."""
    if not value:
        return None
    name, _, count = value.partition(':')
    if name not in POINTS:
        raise ValueError('%s: no kill point %r (the points: %s)'
                         % (ENV, name, ', '.join(POINTS)))
    try:
        n = int(count) if count else 1
    except ValueError:
        n = 0
    if n < 1:
        raise ValueError('%s: %r is no count (name:n, n >= 1)'
                         % (ENV, count))
    return name, n


#: The point this process dies at (a name), or None: most processes.
ARMED = None
_left = 0


def arm(value):
    """Arm the point of a ``TRACKSTORE_KILL_AT`` value (None disarms)."""
    global ARMED, _left
    parsed = parse(value)
    ARMED, _left = parsed if parsed else (None, 0)


def here(name):
    """Pass the point ``name``: die now when it is the armed one and
    this is the n-th time."""
    global _left
    if name != ARMED:
        return
    _left -= 1
    if _left <= 0:
        kill()


def kill():
    os.kill(os.getpid(), signal.SIGKILL)


class _DieInVote:
    """A data manager that joins a transaction only to be last to vote,
    and dies there (``mid-commit``)."""

    transaction_manager = None

    def abort(self, txn):
        pass

    def tpc_begin(self, txn):
        pass

    def commit(self, txn):
        pass

    def tpc_vote(self, txn):
        here('mid-commit')

    def tpc_finish(self, txn):
        pass

    def tpc_abort(self, txn):
        pass

    def sortKey(self):
        # After every storage's key, so that they all voted already.
        return '\uffff'


def join(transaction):
    """Have ``transaction`` pass ``mid-commit`` in its vote, when that
    point is armed."""
    if ARMED == 'mid-commit':
        transaction.join(_DieInVote())


arm(os.environ.get(ENV))
