"""What the clickstream keeps in a storage.

Everything lives under one annotation of the storage
(``storage.__annotations__['trackstore.clickstream']``), a
``ClickstreamRecords``. Sessions and events are stored as compact
orjson bytes, not as pickled value models: bytes cost the pickler one
hook call instead of one per nested object, and a stored record does not
depend on the pydantic classes, so changing a model does not break data.

The events of a session are one record (a list, oldest first), so a
session costs a fixed, small number of persistent writes however many
events it has.
"""
import orjson
from BTrees.LOBTree import LOBTree
from BTrees.OLBTree import OLBTree
from BTrees.OOBTree import OOBTree
from persistent import Persistent


RECORD_VERSION = 1

# The keys a stored event keeps. The session id is the record's key, so
# it is not repeated per event; ``track`` is the event's track id.
EVENT_FIELDS = ('event_id', 'object_id', 'event_type', 'created_at',
                'meta', 'track')


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
        # session number -> session id
        self.numbers = LOBTree()

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
        # session id -> session record (bytes)
        self.sessions = OOBTree()
        # session id -> the session's events (bytes), oldest first
        self.events = OOBTree()
        # run id -> BatchRecord
        self.batches = LOBTree()
        # release id -> run id
        self.releases = OLBTree()


def pack_session(data, run_id, number, track_id):
    """Return the stored bytes of a session.

    ``data`` is the session's fields as JSON-ready values (what
    ``Session.model_dump(mode='json')`` gives).
    """
    return orjson.dumps({
        'v': RECORD_VERSION,
        'session': data,
        'batch': run_id,
        'number': number,
        'track': track_id,
    })


def unpack_session(raw):
    """Return the dict stored by ``pack_session``."""
    return orjson.loads(raw)


def pack_events(events):
    """Return the stored bytes of a session's events.

    ``events`` is a list of dicts with the keys of ``EVENT_FIELDS``,
    oldest first.
    """
    return orjson.dumps(events)


def unpack_events(raw):
    """Return the list of event dicts stored by ``pack_events``."""
    if raw is None:
        return []
    return orjson.loads(raw)
