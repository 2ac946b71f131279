"""``IClickstreamDao`` for any ``ITrackingStorage``: runs as batches.

The adapter keeps no state: it reads and writes the storage's
``__annotations__`` (see ``records.py``) and the storage's tracks and
runs. The clickstream task's current run is the collecting batch, and a
batch id is its run id as a string. Each session and each event is also
saved as a track (task = the clickstream task, run = the session's
batch, user = the session's ``user_id`` or ``''``), so ``query(...)``
sees them; the records keep the track ids so that moving a session to
another batch moves its tracks too.

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
from trackstore.clickstream.records import BatchRecord
from trackstore.clickstream.records import ClickstreamRecords
from trackstore.clickstream.records import pack_session
from trackstore.clickstream.records import slot
from trackstore.clickstream.records import slot_range
from trackstore.clickstream.records import split_slot
from trackstore.clickstream.records import unpack_session
from trackstore.interfaces import IClickstreamBulkDao
from trackstore.interfaces import ITrackingStorage


ANNOTATION_KEY = 'trackstore.clickstream'
DEFAULT_EVENTS_LIMIT = 100
COLLECTING = SessionBatchStatus.collecting.value
SESSION_FIELDS = tuple(Session.model_fields)
SESSION_FIELD_SET = frozenset(SESSION_FIELDS)
EVENT_FIELDS = tuple(SessionEvent.model_fields)


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
    if isinstance(batch_id, str) and batch_id.isdigit():
        if str(int(batch_id)) == batch_id:
            return int(batch_id)
    return None


def session_fields(session):
    """The ``Session`` fields of a session (or of a subclass instance),
    as values that construct a model without validating again."""
    # A pydantic model keeps its field values in its __dict__.
    values = session.__dict__
    return {name: values[name] for name in SESSION_FIELDS}


def event_fields(event):
    """The fields of a ``SessionEvent`` as a plain dict (what
    ``model_dump()`` gives, without its cost)."""
    values = event.__dict__
    return {name: values[name] for name in EVENT_FIELDS}


def session_track_data(data, number):
    return dict(data, kind='session', session_number=number)


def event_track_data(event):
    """The track data of an event given as a dict of its fields."""
    return {
        'kind': 'event',
        'session_id': event['session_id'],
        'event_id': event['event_id'],
        'object_id': event['object_id'],
        'event_type': event['event_type'],
        'meta': event.get('meta'),
    }


def repack(record):
    return pack_session(record['session'], record['track'],
                        record['events'])


def stored_event(event, track_id):
    return {
        'event_id': event['event_id'],
        'object_id': event['object_id'],
        'event_type': event['event_type'],
        'created_at': event['created_at'],
        'meta': event.get('meta'),
        'track': track_id,
    }


def event_model(session_id, stored):
    return SessionEvent(
        event_id=stored['event_id'], session_id=session_id,
        object_id=stored['object_id'], event_type=stored['event_type'],
        created_at=stored['created_at'], meta=stored['meta'])


def loaded(key, raw):
    """The stored dict of a session (``session``, ``track``, ``events``)
    with its ``batch`` and ``number``."""
    record = unpack_session(raw)
    record['batch'], record['number'] = split_slot(key)
    return record


def registered_from_record(record):
    return RegisteredSession.model_validate(dict(
        record['session'], batch_id=str(record['batch']),
        session_number=record['number']))


def batch_model(batch):
    return SessionBatch(
        batch_id=str(batch.run_id), session_counter=batch.session_counter,
        created_at=batch.created_at, status=batch.status,
        release_id=batch.release_id, released_at=batch.released_at)


@adapter(ITrackingStorage)
@implementer(IClickstreamBulkDao)
class ClickstreamDao:
    """The clickstream contract on top of a tracking storage.

    ``ClickstreamDao(storage, taskId='other')`` keeps a second,
    independent clickstream in the same storage.
    """

    taskId = 'clickstream'

    def __init__(self, storage, taskId=None):
        self.storage = storage
        if taskId is not None:
            self.taskId = taskId

    @property
    def annotation_key(self):
        if self.taskId == ClickstreamDao.taskId:
            return ANNOTATION_KEY
        # Each task gets its own records, so two clickstreams in one
        # storage never share batches.
        return '%s.%s' % (ANNOTATION_KEY, self.taskId)

    # -- records ------------------------------------------------------

    def _records(self, create=False):
        annotations = self.storage.__annotations__
        records = annotations.get(self.annotation_key)
        if records is None and create:
            records = annotations[self.annotation_key] = ClickstreamRecords()
        return records

    @staticmethod
    def _load(records, session_id):
        """``(slot, record)`` of a stored session, or ``(None, None)``.

        The record is the stored dict plus its ``batch`` and ``number``.
        """
        key = records.slots.get(session_id) if records is not None \
            else None
        if key is None:
            return None, None
        return key, loaded(key, records.sessions[key])

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
        """Take ``count`` session numbers of the batch; return the first.

        Writing the batch record here is what makes concurrent
        registrations conflict (see ``BatchRecord``).
        """
        first = batch.last_number + 1
        batch.last_number += count
        batch.session_counter += count
        return first

    def _stop_collecting(self, records, batch):
        records.collecting = None
        self.storage.stopRun(self.taskId, batch.run_id)

    def _remove_track(self, track_id):
        # A track may have been removed through the storage directly;
        # that must not make the session impossible to move.
        if track_id is not None and \
                self.storage.getTrack(track_id) is not None:
            self.storage.removeTrack(track_id)

    # -- sessions -----------------------------------------------------

    def register_session(self, session):
        session = as_model(Session, session)
        records = self._records(create=True)
        key, record = self._load(records, session.session_id)
        if record is not None:
            return registered_from_record(record)
        batch = self._collecting(records)
        number = self._allocate(batch, 1)
        data = session.model_dump(mode='json', include=SESSION_FIELD_SET)
        track_id = self.storage.saveUserTrack(
            self.taskId, batch.run_id, session.user_id or '',
            session_track_data(data, number),
            timeStamp=float(session.created_at))
        key = slot(batch.run_id, number)
        records.sessions[key] = pack_session(data, track_id, [])
        records.slots[session.session_id] = key
        return RegisteredSession.model_construct(
            **session_fields(session), batch_id=str(batch.run_id),
            session_number=number)

    def update_session(self, session):
        session = as_model(Session, session)
        sid = session.session_id
        records = self._records()
        old_key, old = self._load(records, sid)
        if old is None:
            raise SessionNotFound([sid])
        old_batch = records.batches[old['batch']]
        old_batch.session_counter -= 1
        del records.sessions[old_key]
        batch = self._collecting(records)
        number = self._allocate(batch, 1)
        key = slot(batch.run_id, number)
        data = session.model_dump(mode='json', include=SESSION_FIELD_SET)
        user = session.user_id or ''
        self._remove_track(old['track'])
        track_id = self.storage.saveUserTrack(
            self.taskId, batch.run_id, user, session_track_data(data, number),
            timeStamp=float(session.created_at))
        events = old['events']
        old_user = old['session'].get('user_id') or ''
        if events and (batch.run_id != old['batch'] or user != old_user):
            # The events follow the session into its new run (and user),
            # so query(runId=...) shows the batch as get_batch_sessions.
            for event in events:
                self._remove_track(event['track'])
            rows = [{
                'taskId': self.taskId, 'runId': batch.run_id,
                'userName': user,
                'data': event_track_data(dict(event, session_id=sid)),
                'timeStamp': float(event['created_at']),
            } for event in events]
            for event, event_track in zip(events,
                                          self.storage.saveTracks(rows)):
                event['track'] = event_track
        records.sessions[key] = pack_session(data, track_id, events)
        records.slots[sid] = key
        return RegisteredSession.model_construct(
            **session_fields(session), batch_id=str(batch.run_id),
            session_number=number)

    def mark_session_irrelevant(self, session_id):
        records = self._records()
        key, record = self._load(records, session_id)
        if record is None:
            return None
        if not record['session'].get('is_irrelevant'):
            record['session']['is_irrelevant'] = True
            records.sessions[key] = repack(record)
            track = self.storage.getTrack(record['track'])
            if track is not None:
                self.storage.updateTrack(track, {'is_irrelevant': True})
        return registered_from_record(record)

    def get_session(self, session_id, events_limit=DEFAULT_EVENTS_LIMIT):
        records = self._records()
        key, record = self._load(records, session_id)
        if record is None:
            return None
        return self._with_events(records, key, record, events_limit)

    def _with_events(self, records, key, record, events_limit):
        events = record['events']
        if events_limit is not None:
            events = events[:max(events_limit, 0)]
        sid = record['session']['session_id']
        return SessionWithEvents.model_validate(dict(
            record['session'], batch_id=str(record['batch']),
            session_number=record['number'],
            events=[event_model(sid, e) for e in events]))

    # -- events -------------------------------------------------------

    def push_events(self, events):
        events = [as_model(SessionEvent, e) for e in events]
        if not events:
            return []
        records = self._records()
        groups = {}
        # Below the models the events are plain dicts; the models are
        # found again by the id() of their dict.
        fields = [event_fields(e) for e in events]
        for event in fields:
            groups.setdefault(event['session_id'], []).append(event)
        found = {}
        for sid in groups:
            key, record = self._load(records, sid)
            if record is not None:
                found[sid] = (key, record)
        unknown = [sid for sid in groups if sid not in found]
        if unknown:
            # Checked before anything is written: all or nothing.
            raise SessionNotFound(unknown)
        accepted, changed = self._add_events([
            found[sid] + (group,) for sid, group in groups.items()])
        records.sessions.update(sorted(
            (key, repack(record)) for key, record in changed))
        return [e for e, f in zip(events, fields) if id(f) in accepted]

    def _add_events(self, groups):
        """Add new events to session records (in memory).

        ``groups`` holds ``(slot, session record, events)``, the events
        as dicts of their ``SessionEvent`` fields. An event
        whose id the session already has (stored, or earlier in the same
        call) is skipped. The tracks of all new events are saved with one
        ``saveTracks`` call. Returns the ``id()``s of the accepted events
        and the ``(slot, record)`` pairs that changed, for the caller to
        store.
        """
        rows = []
        pending = []
        for key, record, group in groups:
            known = record['events']
            seen = {e['event_id'] for e in known}
            new = []
            user = record['session'].get('user_id') or ''
            for event in group:
                event_id = event['event_id']
                if event_id in seen:
                    continue
                seen.add(event_id)
                new.append(event)
                rows.append({
                    'taskId': self.taskId, 'runId': record['batch'],
                    'userName': user, 'data': event_track_data(event),
                    'timeStamp': float(event['created_at']),
                })
            if new:
                pending.append((key, record, new))
        if not rows:
            return set(), []
        track_ids = iter(self.storage.saveTracks(rows))
        accepted = set()
        changed = []
        for key, record, new in pending:
            known = record['events']
            for event in new:
                known.append(stored_event(event, next(track_ids)))
                accepted.add(id(event))
            # Oldest first; sort is stable, so ties keep arrival order.
            known.sort(key=lambda e: e['created_at'])
            changed.append((key, record))
        return accepted, changed

    def store_sessions(self, items):
        pairs = []
        for session, events in items:
            pairs.append((as_model(Session, session),
                          [as_model(SessionEvent, e) for e in events]))
        if not pairs:
            return []
        known, fresh = self._store_records([
            (session.model_dump(mode='json', include=SESSION_FIELD_SET),
             [event_fields(e) for e in events])
            for session, events in pairs])
        # A session id given twice answers with the first one's session.
        first_seen = {}
        for session, events in pairs:
            first_seen.setdefault(session.session_id, session)
        result = []
        for session, events in pairs:
            sid = session.session_id
            key, record = known[sid]
            if sid in fresh:
                result.append(RegisteredSession.model_construct(
                    **session_fields(first_seen[sid]),
                    batch_id=str(record['batch']),
                    session_number=record['number']))
            else:
                result.append(registered_from_record(record))
        return result

    def store_session_records(self, items):
        """``store_sessions`` for trusted plain values, without pydantic.

        ``items`` holds ``(session, events)`` pairs: ``session`` a dict
        of every ``Session`` field as ``model_dump(mode='json')`` gives
        it, ``events`` dicts of every ``SessionEvent`` field. Nothing is
        validated (the bulk loader builds these itself; validating them
        was almost half of its time); what is stored is what
        ``store_sessions`` stores for the same values. Returns, per
        pair, the stored session's fields with ``batch_id`` and
        ``session_number`` (as ``RegisteredSession`` would dump them).
        """
        items = list(items)
        if not items:
            return []
        known, fresh = self._store_records(items)
        result = []
        for session, events in items:
            key, record = known[session['session_id']]
            result.append(dict(
                record['session'], batch_id=str(record['batch']),
                session_number=record['number']))
        return result

    def _store_records(self, pairs):
        """Store ``(session data, event dicts)`` pairs (see
        ``store_session_records``); the one implementation below both
        bulk methods.

        Returns ``known`` (session id -> ``(slot, record)``) and the set
        of session ids that were new.
        """
        for data, events in pairs:
            sid = data['session_id']
            for event in events:
                if event['session_id'] != sid:
                    # Checked before anything is written.
                    raise ValueError(
                        'event %r belongs to session %r, not %r' % (
                            event['event_id'], event['session_id'], sid))
        records = self._records(create=True)
        slots = records.slots
        known = {}
        new = []
        for data, events in pairs:
            sid = data['session_id']
            if sid in known:
                continue
            key = slots.get(sid)
            if key is None:
                known[sid] = None
                new.append(data)
            else:
                known[sid] = (key, loaded(key, records.sessions[key]))
        fresh = set()
        if new:
            batch = self._collecting(records)
            first = self._allocate(batch, len(new))
            run_id = batch.run_id
            track_ids = self.storage.saveTracks([{
                'taskId': self.taskId, 'runId': run_id,
                'userName': data['user_id'] or '',
                'data': session_track_data(data, first + i),
                'timeStamp': float(data['created_at']),
            } for i, data in enumerate(new)])
            keys = []
            for i, (data, track_id) in enumerate(zip(new, track_ids)):
                number = first + i
                key = slot(run_id, number)
                sid = data['session_id']
                known[sid] = (key, {'session': data, 'track': track_id,
                                    'events': [], 'batch': run_id,
                                    'number': number})
                keys.append((sid, key))
                fresh.add(sid)
            keys.sort()
            slots.update(keys)
        groups = {}
        for data, events in pairs:
            if events:
                groups.setdefault(data['session_id'], []).extend(events)
        accepted, changed = self._add_events([
            known[sid] + (group,) for sid, group in groups.items()])
        # Each changed or new record is packed and stored once, with one
        # sorted update: the new slots are consecutive, so they only
        # append to the end of the tree.
        packed = dict((key, record) for key, record in changed)
        for sid in fresh:
            key, record = known[sid]
            packed[key] = record
        records.sessions.update(sorted(
            (key, repack(record)) for key, record in packed.items()))
        return known, fresh

    def iter_records(self):
        """Yield every stored session as a plain dict: the ``Session``
        fields with ``batch_id``, ``session_number`` and ``events`` (a
        list of event dicts, oldest first). The read path for reports
        (metrics, dashboards) that need no pydantic models."""
        records = self._records()
        if records is None:
            return
        for key, raw in records.sessions.items():
            record = loaded(key, raw)
            sid = record['session']['session_id']
            yield dict(
                record['session'], batch_id=str(record['batch']),
                session_number=record['number'],
                events=[dict(e, session_id=sid) for e in record['events']])

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
            entries = records.sessions.items(low, high, excludemin=True)
        else:
            entries = records.sessions.items(low, high)
        result = []
        for key, raw in entries:
            result.append(self._with_events(
                records, key, loaded(key, raw), events_limit))
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
        batch.status = SessionBatchStatus.released.value
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
                batch.status = status
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
