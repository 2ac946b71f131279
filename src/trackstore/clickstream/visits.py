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
from trackstore.sessions import ClosedSession
from trackstore.sessions import Hit
from trackstore.sessions import sessionize
from trackstore.sessions.closers import to_clickstream_records
from trackstore.sessions.hits import US
from trackstore.sessions.identities import MAX_ID


COLLECTING = 'collecting'


def stored_session_id(closed):
    """The id a visit is stored under, e.g.
    ``20220428T073846-000605b44b6324bc`` (see the design notes)."""
    return '%s-%s' % (
        time.strftime('%Y%m%dT%H%M%S', time.gmtime(
            closed.hits[0].us // US)), closed.session_id)


def visit_records(closed):
    """The ``(session, events)`` dicts a ``ClosedSession`` is stored as;
    an event's meta carries the hit's stamp when it is not the visit's.
    """
    data, events = to_clickstream_records(closed, stored_session_id(closed))
    stamp = closed.stamp
    for event, hit in zip(events, closed.hits):
        if hit.stamp != stamp:
            event['meta']['stamp'] = hit.stamp
    return data, events


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
        if client in self._pending_clients:
            # Merged before in this commit: its new visits must be read.
            self.flush()
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
