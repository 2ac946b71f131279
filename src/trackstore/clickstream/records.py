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
  run id.

There is one ``ClickstreamRecords`` per clickstream task in a storage,
found with ``clickstream_records(storage, taskId)``: the one place that
knows its annotation key.
"""
from BTrees.LLBTree import LLBTree
from BTrees.LOBTree import LOBTree
from BTrees.OLBTree import OLBTree
from BTrees.OOBTree import OOBTree
from persistent import Persistent


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


class BatchRecord(Persistent):
    """A batch of sessions; its id is the run id of the clickstream task.

    There is deliberately no ``_p_resolveConflict``: every registration
    writes ``last_number`` and ``session_counter`` here, so two
    transactions registering into the same batch conflict and one of them
    is retried. That makes session numbers unique and the counter exact,
    and it makes a registration that races a release (which writes
    ``status`` here too) land in exactly one batch.
    """

    status = 'collecting'
    release_id = None
    released_at = None

    def __init__(self, run_id, created_at):
        self.run_id = run_id
        self.created_at = created_at
        # The highest number handed out; numbers are never reused, even
        # when a session leaves the batch.
        self.last_number = 0
        # The number of sessions in the batch now.
        self.session_counter = 0

    def __repr__(self):
        return '<BatchRecord %s %s, %s sessions>' % (
            self.run_id, self.status, self.session_counter)


class ClickstreamRecords(Persistent):
    """The clickstream's indexes and batches (see the module docstring).

    ``collecting`` (the run id of the collecting batch, or None) is only
    written when a batch is opened or leaves ``collecting``, so two
    transactions that both open a batch conflict here and at most one
    batch is ever collecting.
    """

    collecting = None

    def __init__(self):
        self.ids = OLBTree()
        self.numbers = LLBTree()
        self.clients = OOBTree()
        self.batches = LOBTree()
        self.releases = OLBTree()


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
