"""Closers: where closed sessions go."""
import sys

from zope.interface import implementer

from trackstore.interfaces import ICloser
from trackstore.sessions.hits import COMMON
from trackstore.sessions.hits import US
from trackstore.sessions.hits import format_us


@implementer(ICloser)
class CollectingCloser:
    """Keeps the closed sessions in ``sessions`` (a list)."""

    def __init__(self):
        self.sessions = []

    def close(self, session):
        self.sessions.append(session)


@implementer(ICloser)
class PrintingCloser:
    """Writes one line per closed session to ``stream`` (stdout)."""

    def __init__(self, stream=None):
        self.stream = stream
        self.count = 0

    def close(self, session):
        stream = self.stream if self.stream is not None else sys.stdout
        self.count += 1
        types = {}
        for hit in session.hits:
            types[hit.type] = types.get(hit.type, 0) + 1
        stream.write('session %s %s %s..%s %d hits (%s)%s%s\n' % (
            session.session_id,
            'customer=%s' % session.customer if session.customer
            else 'anonymous' + (
                ' user=%s' % session.user_id if session.user_id else ''),
            format_us(session.first_us), format_us(session.last_us)[11:],
            len(session.hits),
            ', '.join('%s %d' % kv for kv in sorted(types.items())),
            ' late' if session.late else '',
            '' if session.reason in ('timeout', 'flush', 'batch', 'late')
            else ' [%s]' % session.reason))


def _object_id(hit):
    """What a hit is about: its product, page or order (or '')."""
    event = hit.event
    for name in ('product', 'page', 'order'):
        value = event.get(name)
        if value is not None:
            return value if value.__class__ is str else str(value)
    return ''


def _meta(hit):
    meta = {'ts': hit.us / US}
    for k, v in hit.event.items():
        if k not in COMMON:
            meta[k] = v
    return meta


def to_clickstream_records(session, session_id=None):
    """The clickstream values of a closed session as plain dicts:
    ``(session, [event, ...])``, the session as
    ``Session.model_dump(mode='json')`` gives it and each event as
    ``SessionEvent.model_dump()`` does, without building the models.

    ``session_id`` replaces the sessionizer's id (in the session and
    its events). This is what ``to_clickstream`` validates, so the two
    cannot differ; the bulk loader stores these directly
    (``ClickstreamDao.store_session_records``).
    """
    hits = session.hits
    sid = session.session_id if session_id is None else session_id
    query = None
    orders = 0
    for hit in hits:
        if hit.type == 'search' and query is None:
            query = hit.event.get('query')
        elif hit.type == 'placed_order':
            orders += 1
    first = hits[0].us
    # In the order of the Session model's fields, like its dump.
    data = {
        'session_id': sid, 'search_query': query,
        'created_at': first // US, 'search_results': [],
        'search_meta': {
            'client': session.client, 'customer': session.customer,
            'stamp': session.stamp, 'first_ts': first / US,
            'last_ts': hits[-1].us / US, 'hits': len(hits),
            'orders': orders, 'late': session.late},
        'payload_filter': None, 'sort_by': None,
        'user_id': session.user_id, 'is_irrelevant': False,
        'is_payload_search': False,
    }
    events = [{
        'event_id': hit.idkey, 'session_id': sid,
        'object_id': _object_id(hit), 'event_type': hit.type,
        'created_at': hit.us // US, 'meta': _meta(hit),
    } for hit in hits]
    return data, events


def to_clickstream(session):
    """The clickstream ``(Session, [SessionEvent, ...])`` of a closed
    session.

    ``search_query`` is the first search's query (or None),
    ``created_at`` the first hit's whole second, ``user_id`` the
    customer (or the stitched customer of an anonymous session);
    ``search_meta`` keeps what the clickstream model has no field for:
    the client key, the customer (None for anonymous sessions: the
    metrics count customer sessions only), precise first and last
    times, the hit count, the order count and the late flag. Each hit is
    an event: ``event_id`` the hit id, ``object_id`` its product, page or
    order, ``event_type`` its type, ``meta`` the precise time (``ts``)
    and the type's own fields. The models are validated from
    ``to_clickstream_records``.
    """
    from trackstore.clickstream.models import Session
    from trackstore.clickstream.models import SessionEvent
    data, events = to_clickstream_records(session)
    # the validating constructor is faster than model_construct here
    return Session(**data), [SessionEvent(**e) for e in events]


@implementer(ICloser)
class StoringCloser:
    """Stores closed sessions through the clickstream DAO.

    Sessions are collected and stored ``batch_size`` at a time with the
    DAO's bulk ``store_sessions``; call ``flush()`` before committing
    so the transaction holds every session closed so far. ``dao`` is an
    ``IClickstreamBulkDao``; by default the adapter of ``storage``.
    Storing is idempotent (session ids are deterministic and events are
    deduplicated by the DAO), so a load that is run again stores nothing
    new. ``stored`` counts sessions handed to the DAO, ``events`` their
    hits.
    """

    def __init__(self, storage=None, dao=None, batch_size=500):
        if dao is None:
            from trackstore.clickstream.dao import ClickstreamDao
            from trackstore.interfaces import IClickstreamBulkDao
            dao = IClickstreamBulkDao(storage, None)
            if dao is None:
                dao = ClickstreamDao(storage)
        self.dao = dao
        self.batch_size = batch_size
        self.pending = []
        self.stored = 0
        self.events = 0

    def close(self, session):
        self.pending.append(to_clickstream(session))
        if len(self.pending) >= self.batch_size:
            self.flush()

    def flush(self):
        """Store the sessions collected so far; return how many."""
        pending = self.pending
        if not pending:
            return 0
        self.pending = []
        self.dao.store_sessions(pending)
        self.stored += len(pending)
        self.events += sum(len(events) for _, events in pending)
        return len(pending)
