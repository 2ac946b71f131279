"""Visits: the sessions made from hits, kept by the 30-minute rule.

A visit is a clickstream session whose ``search_meta`` names the client
it belongs to; each hit is one of its events. ``VisitStore.merge(client,
hits)`` adds hits of one client to what is stored by exactly the rule
of ``trackstore.sessions.sessionize``: the client's open visits (those
of the collecting batch) and the new hits are sessionized together and
the visits that changed are written back, so a new hit extends a visit,
bridges two or starts one, whatever order the hits came in.

A visit of a batch that is no longer collecting was read by a consumer
and never changes: a hit that would join it (within the timeout of its
first or last hit) is stored as a visit of its own, flagged ``late``.
Late visits are frozen too.

Design notes:

- A visit is stored under ``stored_session_id``: the first hit's time
  to the second before the sessionizer's id, so every path (batch load,
  stream, HTTP) gives the same id, and the visits of one commit are
  neighbours in the id tree.
- A visit that keeps its id (it grew at its end) is rewritten in place
  and keeps its batch number; one whose first hit changed gets a new id
  and a new number, and the old one leaves the batch.
- The hits are rebuilt from the stored events (``hits_of``): the event
  meta keeps the exact time and the type's own fields, and the session
  stamp where it differs from the visit's, which is what the rule needs.
"""
import time

from trackstore.clickstream.dao import ClickstreamDao
from trackstore.clickstream.models import Session
from trackstore.clickstream.models import SessionEvent
from trackstore.sessions import ClosedSession
from trackstore.sessions import Hit
from trackstore.sessions import sessionize
from trackstore.sessions.hits import COMMON
from trackstore.sessions.hits import US
from trackstore.sessions.identities import MAX_ID


COLLECTING = 'collecting'


def stored_events(hits, stamp=None):
    """The events of a session's hits as the DAO stores them: the hit
    id, its product, page or order (or ''), its type and second, and a
    meta of the exact time (``ts``), the type's own fields and the hit's
    session stamp where it is not ``stamp``. One loop over each event's
    fields: this runs once for every hit loaded."""
    events = []
    for hit in hits:
        us = hit.us
        meta = {'ts': us / US}
        for key, value in hit.event.items():
            if key not in COMMON:
                meta[key] = value
        if stamp is not None and hit.stamp != stamp:
            meta['stamp'] = hit.stamp
        about = meta.get('product')
        if about is None:
            about = meta.get('page')
            if about is None:
                about = meta.get('order')
        events.append({
            'event_id': hit.idkey,
            'object_id': '' if about is None else (
                about if about.__class__ is str else str(about)),
            'event_type': hit.type, 'created_at': us // US, 'meta': meta})
    return events


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
    sid = session.session_id if session_id is None else session_id
    data = session_fields(session, sid)
    events = stored_events(session.hits)
    for event in events:
        event['session_id'] = sid
    return data, events


def session_fields(session, sid):
    """The ``Session`` fields of a closed session, stored as ``sid``."""
    hits = session.hits
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
    return data


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
    data, events = to_clickstream_records(session)
    # the validating constructor is faster than model_construct here
    return Session(**data), [SessionEvent(**e) for e in events]


def stored_session_id(closed):
    """The id a visit is stored under, e.g.
    ``20220428T073846-000605b44b6324bc`` (see the design notes)."""
    return '%s-%s' % (
        time.strftime('%Y%m%dT%H%M%S', time.gmtime(
            closed.hits[0].us // US)), closed.session_id)


def visit_records(closed):
    """The ``(session fields, stored events)`` a ``ClosedSession`` is
    stored as."""
    data = session_fields(closed, stored_session_id(closed))
    return data, stored_events(closed.hits, closed.stamp)


def hits_of(data):
    """The hits of a stored visit (its fields with ``events``)."""
    meta = data['search_meta']
    customer = meta['customer']
    stamp = meta['stamp']
    hits = []
    for event in data['events']:
        fields = dict(event['meta'])
        us = int(round(fields.pop('ts') * US))
        hit_stamp = fields.pop('stamp', stamp)
        hits.append(Hit(event['event_id'], event['event_type'], us,
                        customer, hit_stamp, None, fields))
    return hits


class VisitStore:
    """Merges hits into the stored visits of a clickstream (see the
    module docstring). ``rules`` are the sessionizer's ``Rules``.

    ``identities`` answers the rule's identity questions for the hits it
    is given (``trackstore.sessions.Identities``: the stamp owners and
    the first customer of each stamp, as the caller knows them over all
    hits loaded). ``added``, ``replaced`` and ``late`` count visits
    stored, visits taken out (merged or rewritten) and late hits.
    """

    def __init__(self, storage, rules, taskId=None):
        self.dao = ClickstreamDao(storage, taskId)
        self.storage = storage
        self.rules = rules
        self.added = self.replaced = self.late = 0
        # New visits are saved together by ``flush()``: one
        # ``saveTracks`` (one sorted insert per index) for all the
        # clients of a commit instead of one per client.
        self._pending = []
        self._pending_clients = set()

    def flush(self):
        """Save the new visits merged so far; call it before commit."""
        if self._pending:
            self._pending.sort(key=lambda item: item[0]['session_id'])
            self.dao._save(self._records(), self._pending)
            self.added += len(self._pending)
            self._pending = []
            self._pending_clients = set()

    def _records(self):
        return self.dao._records(create=True)

    def visits(self, client):
        """The stored visit tracks of ``client``."""
        if client in self._pending_clients:
            # Merged before in this commit: its new visits must be read.
            self.flush()
        records = self._records()
        return [self.dao._track(records, sid)
                for sid in records.clients.get(client, ())]

    def _frozen(self, records, track):
        batch = records.batches[track.runId]
        return (batch.status != COLLECTING
                or track.data['search_meta'].get('late'))

    def take(self, client, predicate, identities):
        """Take the hits for which ``predicate(hit)`` holds out of the
        open visits of ``client`` and return them; the visits left are
        sessionized again."""
        records = self._records()
        taken = []
        for track in self.visits(client):
            if not self._frozen(records, track):
                taken.extend(h for h in hits_of(track.data)
                             if predicate(h))
        if taken:
            self.merge(client, [], identities, drop=predicate)
        return taken

    def merge(self, client, hits, identities, drop=None):
        """Add ``hits`` (of ``client``) to its stored visits."""
        records = self._records()
        open_visits = []
        frozen = []
        for track in self.visits(client):
            (frozen if self._frozen(records, track) else
             open_visits).append(track)
        late, hits = self._split_late(frozen, hits)
        pool = list(hits)
        for track in open_visits:
            pool.extend(h for h in hits_of(track.data)
                        if drop is None or not drop(h))
        wanted = sessionize(pool, rules=self.rules, identities=identities)
        wanted.extend(self._late_session(client, h, identities)
                      for h in late)
        self._write(records, open_visits, wanted, client)

    def _split_late(self, frozen, hits):
        """(late hits, the others): a hit is late when it would join a
        frozen visit that is not late itself."""
        if not frozen or not hits:
            return [], hits
        timeout = self.rules.timeout_us
        spans = []
        for track in frozen:
            meta = track.data['search_meta']
            if not meta.get('late'):
                spans.append((int(round(meta['first_ts'] * US)) - timeout,
                              int(round(meta['last_ts'] * US)) + timeout))
        late = []
        kept = []
        for hit in hits:
            if any(low <= hit.us <= high for low, high in spans):
                late.append(hit)
            else:
                kept.append(hit)
        self.late += len(late)
        return late, kept

    def _late_session(self, client, hit, identities):
        user = client[2:] if client.startswith('c:') else \
            identities.user_of(hit.stamp, (
                hit.us + self.rules.timeout_us, MAX_ID))
        return ClosedSession(client, [hit], user_id=user, late=True,
                             reason='late', stamp=hit.stamp)

    def _write(self, records, open_visits, wanted, client):
        """Make the open visits what ``wanted`` (``ClosedSession``s)
        says: unchanged ones stay, grown ones are rewritten in place,
        the rest leave and the new ones are added."""
        stored = {t.data['session_id']: t for t in open_visits}
        fresh = []
        for closed in wanted:
            data, events = visit_records(closed)
            sid = data['session_id']
            track = stored.pop(sid, None)
            if track is None:
                fresh.append((data, events))
            elif (track.data['events'] != events
                    or track.data['user_id'] != data['user_id']
                    or track.data['search_meta'] != data['search_meta']):
                self._rewrite(track, data, events)
        for track in stored.values():
            self.dao._remove(records, track)
            self.replaced += 1
        if fresh:
            self._pending.extend(fresh)
            self._pending_clients.add(client)

    def _rewrite(self, track, data, events):
        if track.data['user_id'] != data['user_id']:
            # The user is the track's user index entry: move the track.
            records = self._records()
            self.dao._remove(records, track)
            self.dao._save(records, [(data, events)])
            self.replaced += 1
            self.added += 1
            return
        self.storage.updateTrack(track, dict(data, events=events))
        self._records().visit_changed()
