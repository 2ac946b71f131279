"""``IClickstreamDao`` for any ``ITrackingStorage``: runs as batches.

The adapter keeps no state. A session and its events are one track of
the clickstream task (see ``records.py``): run = the session's batch,
user = its ``user_id`` (or ``''``), data = the session's fields, its
``session_number`` and its ``events``. So ``storage.query(taskId=...,
userName=...)`` finds a user's sessions, and there is no second copy of
anything. The clickstream task's current run is the collecting batch,
and a batch id is its run id as a string.

The DAO never commits: the caller owns the transaction and retries it on
``ConflictError`` (``transaction.manager.attempts()``).
"""
import time

from zope.component import adapter
from zope.interface import implementer

from trackstore.clickstream.models import RegisteredSession
from trackstore.clickstream.models import Session
from trackstore.clickstream.models import SessionBatch
from trackstore.clickstream.models import SessionBatchStatus
from trackstore.clickstream.models import SessionEvent
from trackstore.clickstream.models import SessionWithEvents
from trackstore.clickstream.records import DEFAULT_TASK
from trackstore.clickstream.records import BatchRecord
from trackstore.clickstream.records import clickstream_records
from trackstore.clickstream.records import slot
from trackstore.clickstream.records import slot_range
from trackstore.ids import ownerToken
from trackstore.interfaces import IClickstreamBulkDao
from trackstore.interfaces import ITrackingStorage


DEFAULT_EVENTS_LIMIT = 100
COLLECTING = SessionBatchStatus.collecting.value
SESSION_FIELDS = tuple(Session.model_fields)
SESSION_FIELD_SET = frozenset(SESSION_FIELDS)
# What a stored event keeps: its session is the track it lives in.
EVENT_FIELDS = ('event_id', 'object_id', 'event_type', 'created_at',
                'meta')


class SessionNotFound(KeyError):
    """No session is stored under (one of) the given id(s)."""

    def __init__(self, session_ids):
        self.session_ids = tuple(session_ids)
        super().__init__(*self.session_ids)

    def __str__(self):
        # KeyError's own str() is the repr of its argument; say what
        # went wrong instead.
        return 'unknown session id(s): %s' % ', '.join(
            repr(i) for i in self.session_ids)


def now():
    """The current time as integer UTC seconds."""
    return int(time.time())


def as_model(cls, value):
    """``value`` as an instance of ``cls`` (a dict is validated)."""
    if isinstance(value, cls):
        return value
    return cls.model_validate(value)


def run_id_of(batch_id):
    """The run id a batch id names, or None when it names none.

    Only the canonical spelling ``str(run id)`` counts, so ``'007'`` and
    ``'7'`` do not both name batch 7.
    """
    if isinstance(batch_id, int) and not isinstance(batch_id, bool):
        return batch_id
    # isascii: int() fails on digits like '\u00b2' that isdigit takes.
    if isinstance(batch_id, str) and batch_id.isascii() \
            and batch_id.isdigit():
        if str(int(batch_id)) == batch_id:
            return int(batch_id)
    return None


def session_fields(session):
    """The ``Session`` fields of a session (or of a subclass instance),
    as values that construct a model without validating again."""
    # A pydantic model keeps its field values in its __dict__.
    values = session.__dict__
    return {name: values[name] for name in SESSION_FIELDS}


def stored_event(event):
    """The stored form of an event given as a dict of its fields."""
    return {name: event.get(name) for name in EVENT_FIELDS}


def event_dict(event):
    """The fields of a ``SessionEvent`` as a plain dict (what
    ``model_dump()`` gives, without its cost)."""
    values = event.__dict__
    return {name: values[name] for name in SessionEvent.model_fields}


def session_data(track):
    """The session fields of a session track."""
    data = track.data
    return {name: data.get(name) for name in SESSION_FIELDS}


def registered(track):
    return RegisteredSession.model_validate(dict(
        session_data(track), batch_id=str(track.runId),
        session_number=track.data['session_number']))


def with_events(track, events_limit):
    events = track.data['events']
    if events_limit is not None:
        events = events[:max(events_limit, 0)]
    sid = track.data['session_id']
    return SessionWithEvents.model_validate(dict(
        session_data(track), batch_id=str(track.runId),
        session_number=track.data['session_number'],
        events=[dict(e, session_id=sid) for e in events]))


def batch_model(batch):
    return SessionBatch(
        batch_id=str(batch.run_id), session_counter=batch.session_counter,
        created_at=batch.created_at, status=batch.status,
        release_id=batch.release_id, released_at=batch.released_at)


def add_events(known, new):
    """Add the event dicts ``new`` to the stored list ``known`` (in
    place), skipping ids it has; return the ones added."""
    seen = {e['event_id'] for e in known}
    added = []
    for event in new:
        if event['event_id'] in seen:
            continue
        seen.add(event['event_id'])
        known.append(stored_event(event))
        added.append(event)
    if added:
        # Oldest first; sort is stable, so ties keep arrival order.
        known.sort(key=lambda e: e['created_at'])
    return added


def client_of(data):
    """The client key of a visit (a session made from hits), or None."""
    meta = data.get('search_meta')
    return meta.get('client') if isinstance(meta, dict) else None


@adapter(ITrackingStorage)
@implementer(IClickstreamBulkDao)
class ClickstreamDao:
    """The clickstream contract on top of a tracking storage.

    ``ClickstreamDao(storage, taskId='other')`` keeps a second,
    independent clickstream in the same storage.
    """

    taskId = DEFAULT_TASK

    def __init__(self, storage, taskId=None):
        self.storage = storage
        if taskId is not None:
            self.taskId = taskId

    # -- records ------------------------------------------------------

    def _records(self, create=False):
        return clickstream_records(self.storage, self.taskId, create)

    def _track(self, records, session_id):
        """The track of a stored session, or None."""
        if records is None:
            return None
        track_id = records.ids.get(session_id)
        if track_id is None:
            return None
        return self.storage.getTrack(track_id)

    def _collecting(self, records):
        """The collecting batch, opened (a new run) when there is none."""
        run_id = records.collecting
        if run_id is not None:
            return records.batches[run_id]
        run_id = self.storage.startRun(self.taskId)
        batch = records.batches[run_id] = BatchRecord(run_id, now())
        records.collecting = run_id
        return batch

    def _allocate(self, batch, count):
        """Take ``count`` session numbers of the batch; return the first
        (from this writer's block, see ``BatchRecord``)."""
        jar = getattr(self.storage, '_p_jar', None)
        return batch.take('' if jar is None else ownerToken(jar), count)

    def _stop_collecting(self, records, batch):
        records.collecting = None
        self.storage.stopRun(self.taskId, batch.run_id)

    def _save(self, records, items):
        """Save new sessions into the collecting batch with consecutive
        numbers: ``items`` holds ``(session data, stored events)``.
        Returns the batch's run id and the first number."""
        batch = self._collecting(records)
        first = self._allocate(batch, len(items))
        run_id = batch.run_id
        track_ids = self.storage.saveTracks([{
            'taskId': self.taskId, 'runId': run_id,
            'userName': data['user_id'] or '',
            'data': dict(data, session_number=first + i, events=events),
            'timeStamp': float(data['created_at']),
        } for i, (data, events) in enumerate(items)])
        ids = []
        numbers = []
        for i, ((data, events), track_id) in enumerate(
                zip(items, track_ids)):
            track_id = int(track_id)
            ids.append((data['session_id'], track_id))
            numbers.append((slot(run_id, first + i), track_id))
            client = client_of(data)
            if client is not None:
                known = records.clients.get(client, ())
                records.clients[client] = known + (data['session_id'],)
                records.visit_changed()
        ids.sort()
        records.ids.update(ids)
        records.numbers.update(numbers)
        return run_id, first

    def _remove(self, records, track):
        """Take a stored session out of its batch and the storage."""
        self._forget(records, track)
        self.storage.removeTrack(track)

    def _forget(self, records, track):
        """Take a session out of the records (ids, numbers, its batch's
        counter, its client's visits); its track stays."""
        data = track.data
        sid = data['session_id']
        del records.ids[sid]
        del records.numbers[slot(track.runId, data['session_number'])]
        records.batches[track.runId].counter.change(-1)
        client = client_of(data)
        if client is not None:
            records.visit_changed()
            kept = tuple(
                s for s in records.clients.get(client, ()) if s != sid)
            if kept:
                records.clients[client] = kept
            else:
                records.clients.pop(client, None)

    def remove_session(self, session_id):
        """Remove a stored session and its events; return its track, or
        None when the id is unknown (see ``IClickstreamBulkDao``)."""
        records = self._records()
        track = self._track(records, session_id)
        if track is None:
            return None
        self._remove(records, track)
        # A removed session is a changed report whether or not it was
        # a visit: keep the cached reports honest.
        records.visit_changed()
        return track

    def remove_batch(self, batch_id):
        """Remove a batch that is not collecting, with its sessions and
        its run; return the number of sessions removed, or None when
        there is no such batch (see ``IClickstreamBulkDao``)."""
        records = self._records()
        run_id = run_id_of(batch_id)
        if records is None or run_id not in records.batches:
            return None
        batch = records.batches[run_id]
        if run_id == records.collecting:
            raise ValueError('batch %s is collecting and cannot be '
                             'removed' % (batch_id,))
        low, high = slot_range(run_id)
        get = self.storage.getTrack
        for track_id in list(records.numbers.values(low, high)):
            # Each session leaves the ids, the clients and the numbers;
            # the run takes the tracks with it.
            self._forget(records, get(track_id))
        removed = self.storage.removeRun(self.taskId, run_id)
        if batch.release_id is not None:
            records.releases.pop(batch.release_id, None)
        del records.batches[run_id]
        records.visit_changed()
        return removed

    # -- sessions -----------------------------------------------------

    def register_session(self, session):
        session = as_model(Session, session)
        records = self._records(create=True)
        track = self._track(records, session.session_id)
        if track is not None:
            return registered(track)
        data = session.model_dump(mode='json', include=SESSION_FIELD_SET)
        run_id, number = self._save(records, [(data, [])])
        return RegisteredSession.model_construct(
            **session_fields(session), batch_id=str(run_id),
            session_number=number)

    def update_session(self, session):
        session = as_model(Session, session)
        records = self._records()
        old = self._track(records, session.session_id)
        if old is None:
            raise SessionNotFound([session.session_id])
        events = old.data['events']
        self._remove(records, old)
        data = session.model_dump(mode='json', include=SESSION_FIELD_SET)
        run_id, number = self._save(records, [(data, events)])
        return RegisteredSession.model_construct(
            **session_fields(session), batch_id=str(run_id),
            session_number=number)

    def mark_session_irrelevant(self, session_id):
        records = self._records()
        track = self._track(records, session_id)
        if track is None:
            return None
        if not track.data.get('is_irrelevant'):
            track = self.storage.updateTrack(track, {'is_irrelevant': True})
        return registered(track)

    def get_session(self, session_id, events_limit=DEFAULT_EVENTS_LIMIT):
        track = self._track(self._records(), session_id)
        if track is None:
            return None
        return with_events(track, events_limit)

    def iter_records(self):
        """Yield every stored session as a plain dict: the ``Session``
        fields with ``batch_id``, ``session_number`` and ``events`` (a
        list of event dicts, oldest first), by batch and number. The
        read path for reports (metrics, dashboards) that need no
        pydantic models."""
        records = self._records()
        if records is None:
            return
        get = self.storage.getTrack
        for track_id in records.numbers.values():
            track = get(track_id)
            data = track.data
            sid = data['session_id']
            yield dict(
                session_data(track), batch_id=str(track.runId),
                session_number=data['session_number'],
                events=[dict(e, session_id=sid) for e in data['events']])

    # -- events -------------------------------------------------------

    def push_events(self, events):
        events = [as_model(SessionEvent, e) for e in events]
        if not events:
            return []
        records = self._records()
        groups = {}
        fields = [event_dict(e) for e in events]
        for event in fields:
            groups.setdefault(event['session_id'], []).append(event)
        tracks = {sid: self._track(records, sid) for sid in groups}
        unknown = [sid for sid, track in tracks.items() if track is None]
        if unknown:
            # Checked before anything is written: all or nothing.
            raise SessionNotFound(unknown)
        accepted = set()
        for sid, group in groups.items():
            accepted.update(id(e) for e in self._push(tracks[sid], group))
        # The models are found again by the id() of their dict.
        return [e for e, f in zip(events, fields) if id(f) in accepted]

    def _push(self, track, group):
        """Add event dicts to a session track; return the new ones."""
        known = list(track.data['events'])
        added = add_events(known, group)
        if added:
            self.storage.updateTrack(track, {'events': known})
        return added

    def store_sessions(self, items):
        pairs = [(as_model(Session, session),
                  [as_model(SessionEvent, e) for e in events])
                 for session, events in items]
        stored = self.store_session_records([
            (session.model_dump(mode='json', include=SESSION_FIELD_SET),
             [event_dict(e) for e in events])
            for session, events in pairs])
        # Validated, not constructed: the stored fields are plain JSON
        # values, and ``search_results`` must come back as models.
        return [RegisteredSession.model_validate(fields)
                for fields in stored]

    def store_session_records(self, items):
        """``store_sessions`` for trusted plain values, without pydantic.

        ``items`` holds ``(session, events)`` pairs: ``session`` a dict
        of every ``Session`` field as ``model_dump(mode='json')`` gives
        it, ``events`` dicts of every ``SessionEvent`` field. Nothing is
        validated (the bulk loader builds these itself); what is stored
        is what ``store_sessions`` stores for the same values. Returns,
        per pair, the stored session's fields with ``batch_id`` and
        ``session_number`` (as ``RegisteredSession`` would dump them).
        """
        items = list(items)
        for data, events in items:
            sid = data['session_id']
            for event in events:
                if event['session_id'] != sid:
                    # Checked before anything is written.
                    raise ValueError(
                        'event %r belongs to session %r, not %r' % (
                            event['event_id'], event['session_id'], sid))
        if not items:
            return []
        records = self._records(create=True)
        fresh = {}
        for data, events in items:
            sid = data['session_id']
            if sid in fresh:
                add_events(fresh[sid][1], events)
            elif sid not in records.ids:
                fresh[sid] = (data, [])
                add_events(fresh[sid][1], events)
            else:
                self._push(self._track(records, sid), events)
        if fresh:
            self._save(records, list(fresh.values()))
        return [self._stored_fields(records, data['session_id'])
                for data, events in items]

    def _stored_fields(self, records, session_id):
        track = self._track(records, session_id)
        return dict(session_data(track), batch_id=str(track.runId),
                    session_number=track.data['session_number'])

    # -- batches ------------------------------------------------------

    def get_batch_sessions(self, batch_id, after_number=None, limit=None,
                           events_limit=None):
        records = self._records()
        run_id = run_id_of(batch_id)
        if records is None or run_id is None:
            return []
        if run_id not in records.batches or (
                limit is not None and limit <= 0):
            return []
        low, high = slot_range(run_id)
        if after_number is not None and after_number > 0:
            low = low + min(after_number, high - low)
            entries = records.numbers.values(low, high, excludemin=True)
        else:
            entries = records.numbers.values(low, high)
        result = []
        for track_id in entries:
            result.append(with_events(
                self.storage.getTrack(track_id), events_limit))
            if limit is not None and len(result) >= limit:
                break
        return result

    def get_batch(self, batch_id):
        records = self._records()
        run_id = run_id_of(batch_id)
        if records is None or run_id is None:
            return None
        batch = records.batches.get(run_id)
        return None if batch is None else batch_model(batch)

    def release_batch(self, release_id):
        if not isinstance(release_id, str):
            raise TypeError('release_id must be a str, not %r' % (
                type(release_id).__name__,))
        records = self._records()
        if records is None:
            return None
        run_id = records.releases.get(release_id)
        if run_id is not None:
            # The key was used: answer as the first time, release nothing.
            return batch_model(records.batches[run_id])
        if records.collecting is None:
            return None
        batch = records.batches[records.collecting]
        batch.close(SessionBatchStatus.released.value)
        batch.release_id = release_id
        batch.released_at = now()
        records.releases[release_id] = batch.run_id
        self._stop_collecting(records, batch)
        return batch_model(batch)

    def update_batch_status(self, batch_id, status):
        status = SessionBatchStatus(status).value
        records = self._records()
        run_id = run_id_of(batch_id)
        if records is None or run_id is None:
            return None
        batch = records.batches.get(run_id)
        if batch is None:
            return None
        if run_id == records.collecting:
            if status != COLLECTING:
                batch.close(status)
                self._stop_collecting(records, batch)
        elif status == COLLECTING:
            # Its run is stopped and another batch may be collecting:
            # reopening it would break "at most one collecting batch".
            raise ValueError(
                'batch %s is %s and cannot collect again' % (
                    batch_id, batch.status))
        elif batch.status != status:
            batch.status = status
        return batch_model(batch)
