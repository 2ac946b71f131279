"""What the clickstream keeps in a storage.

Everything lives under one annotation of the storage
(``storage.__annotations__['trackstore.clickstream']``), a
``ClickstreamRecords``. Sessions and events are stored as compact
orjson bytes, not as pickled value models: bytes cost the pickler one
hook call instead of one per nested object, and a stored record does not
depend on the pydantic classes, so changing a model does not break data.

A session and its events (a list, oldest first) are one record, so a
session costs a fixed, small number of persistent writes however many
events it has, and every change to a session's events rewrites the
record that moving the session deletes: a push racing an update of the
same session conflicts instead of leaving events behind.
"""
import orjson
from BTrees.LOBTree import LOBTree
from BTrees.OLBTree import OLBTree
from persistent import Persistent


RECORD_VERSION = 1

# A session's *slot* is its batch (run id) and number in one 64-bit key:
# the records of a batch are contiguous and in number order, so paging is
# a range scan, and new sessions are appended at the end of the trees
# instead of dirtying buckets all over them.
NUMBER_BITS = 32
NUMBER_MASK = (1 << NUMBER_BITS) - 1

# The keys a stored event keeps. The session is the record's key, so it
# is not repeated per event; ``track`` is the event's track id.
EVENT_FIELDS = ('event_id', 'object_id', 'event_type', 'created_at',
                'meta', 'track')


def slot(run_id, number):
    """The key of session ``number`` of the batch ``run_id``."""
    if not 0 < number <= NUMBER_MASK:
        raise OverflowError('session number %r out of range' % (number,))
    return (run_id << NUMBER_BITS) | number


def slot_range(run_id):
    """The lowest and highest slot of a batch."""
    return run_id << NUMBER_BITS, (run_id << NUMBER_BITS) | NUMBER_MASK


def split_slot(key):
    """``(run_id, number)`` of a slot."""
    return key >> NUMBER_BITS, key & NUMBER_MASK


class RecordTree(LOBTree):
    """Slot -> bytes, with small buckets.

    A transaction that registers one session rewrites the last bucket of
    the tree; at ~1 KB a session with a few events, the default 60-entry
    buckets would make that ~45 KB per session, buckets of 10 ~7 KB.
    """

    max_leaf_size = 10
    max_internal_size = 500


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
        # when update_session moves a session out of the batch.
        self.last_number = 0
        # The number of sessions in the batch now.
        self.session_counter = 0

    def __repr__(self):
        return '<BatchRecord %s %s, %s sessions>' % (
            self.run_id, self.status, self.session_counter)


class ClickstreamRecords(Persistent):
    """The clickstream's state: sessions, events, batches, releases.

    ``collecting`` (the run id of the collecting batch, or None) is only
    written when a batch is opened or leaves ``collecting``, so two
    transactions that both open a batch conflict here and at most one
    batch is ever collecting.
    """

    collecting = None

    def __init__(self):
        # session id -> slot
        self.slots = OLBTree()
        # slot -> session record with its events (bytes)
        self.sessions = RecordTree()
        # run id -> BatchRecord
        self.batches = LOBTree()
        # release id -> run id
        self.releases = OLBTree()


def pack_session(data, track_id, events):
    """Return the stored bytes of a session and its events.

    ``data`` is the session's fields as JSON-ready values (what
    ``Session.model_dump(mode='json')`` gives); ``events`` is a list of
    dicts with the keys of ``EVENT_FIELDS``, oldest first.
    """
    return orjson.dumps({
        'v': RECORD_VERSION,
        'session': data,
        'track': track_id,
        'events': events,
    })


def unpack_session(raw):
    """Return the dict stored by ``pack_session``."""
    return orjson.loads(raw)
