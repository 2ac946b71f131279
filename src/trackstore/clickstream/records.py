"""What the clickstream keeps in a storage besides its tracks.

A session and its events are one track of the clickstream task: run =
the session's batch, user = its ``user_id`` (or ``''``), time stamp =
its ``created_at``, data = the session's fields with its
``session_number`` and its ``events`` (a list of dicts, oldest first).
That track is the one copy of the session: the tracks API and the DAO
read the same record.

What is kept here is only what finds a track again, and the batches:

- ``ids``: session id -> track id;
- ``numbers``: *slot* -> track id. A slot is a batch (run id) and a
  session number in one 64-bit key, so the sessions of a batch are one
  contiguous range in number order: paging is a range scan, and new
  sessions append at the end of the tree;
- ``clients``: client key -> the ids of the visits of that client (the
  sessions that ingestion made from hits; ``search_meta['client']``),
  so that a new hit finds the sessions it may extend or bridge;
- ``batches``: run id -> ``BatchRecord``; ``releases``: release id ->
  run id;
- ``visits_version``: a ``Length`` that every write adding, changing or
  removing a visit moves (``visit_changed``), so that reports over the
  visits (the order metrics) are kept until it moves, whatever else is
  written meanwhile (registrations, events, releases).

There is one ``ClickstreamRecords`` per clickstream task in a storage,
found with ``clickstream_records(storage, taskId)``: the one place that
knows its annotation key.
"""
from BTrees.Length import Length
from BTrees.LLBTree import LLBTree
from BTrees.LOBTree import LOBTree
from BTrees.OLBTree import OLBTree
from BTrees.OOBTree import OOBTree
from persistent import Persistent
from ZODB.POSException import ConflictError


ANNOTATION_KEY = 'trackstore.clickstream'
DEFAULT_TASK = 'clickstream'

NUMBER_BITS = 32
NUMBER_MASK = (1 << NUMBER_BITS) - 1


def slot(run_id, number):
    """The key of session ``number`` of the batch ``run_id``."""
    if not 0 < number <= NUMBER_MASK:
        raise OverflowError('session number %r out of range' % (number,))
    return (run_id << NUMBER_BITS) | number


def slot_range(run_id):
    """The lowest and highest slot of a batch."""
    return run_id << NUMBER_BITS, (run_id << NUMBER_BITS) | NUMBER_MASK


# Session numbers a writer takes from its batch at once. Writers
# registering into one batch then write their own ``NumberBlock`` per
# session and the batch itself once per block: four server workers
# registering at once conflicted on 234-616 commits in 1,000 when each
# registration wrote the batch.
BLOCK_SIZE = 64


class NumberBlock(Persistent):
    """The session numbers ``next`` .. ``end - 1`` of a batch, handed
    out by one writer (a connection: ``ids.ownerToken``).

    Two transactions write a block: its writer's registrations, which
    advance ``next``, and the end of its batch's collecting, which sets
    ``closed`` (see ``BatchRecord.close``); two registrations of one
    writer never run at once. So a conflict here is a registration
    racing the close, and only one order of the two is sound: a close
    may land on a block whose writer registered meanwhile (that session
    committed first, it is in the batch), but a registration may not
    land on a closed block (its batch has left ``collecting``): it
    retries and goes to the batch collecting then.
    """

    closed = False

    def __init__(self, first, end):
        self.next = first
        self.end = end

    def _p_resolveConflict(self, old, committed, new):
        if (new.get('closed') and not old.get('closed')
                and not committed.get('closed')
                and new['next'] == old['next']):
            return dict(committed, closed=True)
        raise ConflictError


class BatchRecord(Persistent):
    """A batch of sessions; its id is the run id of the clickstream task.

    Numbers are handed out in blocks (``NumberBlock``, one per writer
    in ``blocks``): they are unique in the batch and grow in the order
    each writer registers, but two writers' sessions interleave their
    blocks, so numbers may skip. ``next_number`` is the first number no
    block has. ``counter`` (a ``Length``, whose concurrent changes
    merge) is the number of sessions in the batch now.

    Leaving ``collecting`` (``close``) writes every block, so a
    registration committing after it conflicts on its own block and
    retries into the next batch: a session lands in exactly one batch,
    while the close itself never waits for registrations (they would
    starve it: writers commit every few milliseconds). Registrations
    of different writers write different blocks and merge. There is
    deliberately no ``_p_resolveConflict`` here: two writers taking
    blocks at once both write ``next_number`` and one retries.
    """

    status = 'collecting'
    release_id = None
    released_at = None

    def __init__(self, run_id, created_at):
        self.run_id = run_id
        self.created_at = created_at
        self.next_number = 1
        self.counter = Length()
        self.blocks = OOBTree()

    @property
    def session_counter(self):
        return self.counter()

    def take(self, writer, count):
        """``count`` consecutive numbers for ``writer``; the first."""
        block = self.blocks.get(writer)
        if block is None or block.end - block.next < count:
            first = self.next_number
            self.next_number = first + max(count, BLOCK_SIZE)
            block = self.blocks[writer] = NumberBlock(
                first, self.next_number)
        first = block.next
        block.next += count
        self.counter.change(count)
        return first

    def close(self, status):
        """Leave ``collecting`` for ``status``."""
        self.status = status
        for block in self.blocks.values():
            block.closed = True

    def __repr__(self):
        return '<BatchRecord %s %s, %s sessions>' % (
            self.run_id, self.status, self.session_counter)


class SessionIds(OLBTree):
    """Session id -> track id. Concurrent inserts into one bucket merge
    (BTrees resolve them) unless the bucket splits, and a split is a
    conflict: larger leaves split less often (ids of ~40 bytes, so a
    bucket rewrite stays near 10 KB)."""
    max_leaf_size = 250


class Slots(LLBTree):
    """Slot -> track id; 16 bytes an entry, so large leaves are cheap
    to rewrite and rarely split under concurrent writers."""
    max_leaf_size = 500


class ClickstreamRecords(Persistent):
    """The clickstream's indexes and batches (see the module docstring).

    ``collecting`` (the run id of the collecting batch, or None) is only
    written when a batch is opened or leaves ``collecting``, so two
    transactions that both open a batch conflict here and at most one
    batch is ever collecting.
    """

    collecting = None

    def __init__(self):
        self.ids = SessionIds()
        self.numbers = Slots()
        self.clients = OOBTree()
        self.batches = LOBTree()
        self.releases = OLBTree()
        # A Length: concurrent loads move it without conflicting.
        self.visits_version = Length()

    def visit_changed(self):
        """Note that a visit was added, changed or removed."""
        self.visits_version.change(1)


def clickstream_records(storage, taskId=DEFAULT_TASK, create=False):
    """The ``ClickstreamRecords`` of ``taskId`` in ``storage`` (made when
    ``create``), or None."""
    key = ANNOTATION_KEY if taskId == DEFAULT_TASK else '%s.%s' % (
        ANNOTATION_KEY, taskId)
    annotations = storage.__annotations__
    records = annotations.get(key)
    if records is None and create:
        records = annotations[key] = ClickstreamRecords()
    return records


def visits_version(storage, taskId=DEFAULT_TASK):
    """A number that changes whenever a stored visit of ``taskId``
    changes (and only grows), or -1 when none was ever stored."""
    records = clickstream_records(storage, taskId)
    return -1 if records is None else records.visits_version()
