"""Check a whole store: do its parts agree with each other?

``check_store(storage)`` reads everything and changes nothing. It asks

- the tracking storage (``checkIndexes``): every index entry points at
  a record and every record is in each index it belongs to;
- each clickstream (``trackstore.clickstream.records``): every session
  id and every batch slot points at a session track that says the same,
  every session track of the clickstream is found by both, no session
  is in two batches, and each batch's counter equals the sessions it
  holds;
- the hits (``trackstore.hitstore``): no hit is in two sessions, and
  every hit in a session has its id among the ids taken in (else a load
  would store it again). Ids taken in whose hits are in no session are
  not a problem: erasure and retention take sessions out and keep the
  ids, so that loading the same input again does not bring them back.

The answer is a ``StoreCheck``: ``problems``, a list of sentences (empty
when the store is sound), and ``counts`` of what was looked at.
``trackstore check`` prints it and exits non-zero on problems.
"""
from trackstore.clickstream.records import ANNOTATION_KEY
from trackstore.clickstream.records import DEFAULT_TASK
from trackstore.clickstream.records import NUMBER_BITS
from trackstore.clickstream.records import NUMBER_MASK
from trackstore.clickstream.records import clickstream_records
from trackstore.clickstream.records import slot_range
from trackstore.hitstore import hit_state
from trackstore.hitstore import id_key


class StoreCheck:
    """The outcome of ``check_store``: ``problems`` (sentences) and
    ``counts`` (``tracks``, ``sessions``, ``batches``, ``hits``)."""

    def __init__(self):
        self.problems = []
        self.counts = {'tracks': 0, 'sessions': 0, 'batches': 0,
                       'hits': 0}

    @property
    def ok(self):
        return not self.problems

    def summary(self):
        """One line for people."""
        counts = self.counts
        looked = ('%(tracks)d tracks, %(sessions)d sessions in '
                  '%(batches)d batches, %(hits)d hits' % counts)
        if self.ok:
            return 'ok: %s checked' % looked
        return '%d problem%s in %s' % (
            len(self.problems), '' if len(self.problems) == 1 else 's',
            looked)

    def as_dict(self):
        return {'ok': self.ok, 'problems': list(self.problems),
                'counts': dict(self.counts)}


def check_store(storage):
    """Check ``storage`` (an ``ITrackingStorage``); a ``StoreCheck``."""
    result = StoreCheck()
    result.counts['tracks'] = len(storage)
    result.problems.extend(storage.checkIndexes())
    hits = {}
    for task in clickstream_tasks(storage):
        _check_clickstream(storage, task, result, hits)
    _check_hits(storage, hits, result)
    return result


def clickstream_tasks(storage):
    """The task ids of the clickstreams kept in ``storage``."""
    tasks = []
    for key in storage.__annotations__.keys():
        if key == ANNOTATION_KEY:
            tasks.append(DEFAULT_TASK)
        elif key.startswith(ANNOTATION_KEY + '.'):
            tasks.append(key[len(ANNOTATION_KEY) + 1:])
    return tasks


def _check_clickstream(storage, task, result, hits):
    """The session ids, slots, clients and batches of one clickstream;
    the hits of its visits go into ``hits`` (id -> session ids)."""
    records = clickstream_records(storage, task)
    problems = result.problems
    where = 'clickstream %r' % (task,)
    tracks = {int(t.__name__): t for t in storage.query(taskId=task)}
    result.counts['sessions'] += len(tracks)
    result.counts['batches'] += len(records.batches)
    for sid, track_id in records.ids.items():
        track = tracks.get(track_id)
        if track is None:
            problems.append('%s: session %r points at track %07d, which '
                            'is not a session of it' % (where, sid, track_id))
        elif track.data.get('session_id') != sid:
            problems.append('%s: session %r points at track %07d, which '
                            'is session %r' % (
                                where, sid, track_id,
                                track.data.get('session_id')))
    batches_of = _check_slots(records, tracks, where, problems)
    known = set(records.ids.values())
    for track_id, track in sorted(tracks.items()):
        sid = track.data.get('session_id')
        runs = batches_of.get(track_id, [])
        if track_id not in known:
            problems.append('%s: session %r (track %07d) has no entry in '
                            'the session ids' % (where, sid, track_id))
        if not runs:
            problems.append('%s: session %r (track %07d) is in no batch'
                            % (where, sid, track_id))
        elif len(runs) > 1:
            problems.append('%s: session %r is in %d batches: %s' % (
                where, sid, len(runs), ', '.join(map(str, runs))))
        _collect_hits(track, hits)
    for run_id, batch in records.batches.items():
        low, high = slot_range(run_id)
        held = len(records.numbers.keys(low, high))
        if batch.session_counter != held:
            problems.append('%s: batch %s counts %d sessions but holds %d'
                            % (where, run_id, batch.session_counter, held))
    for client, sids in records.clients.items():
        for sid in sids:
            track = tracks.get(records.ids.get(sid))
            if track is None or _client(track) != client:
                problems.append('%s: client %r lists session %r, which is '
                                'not a session of that client' % (
                                    where, client, sid))


def _check_slots(records, tracks, where, problems):
    """Each batch slot points at a session of that batch and number;
    returns track id -> the batches whose slots point at it."""
    batches_of = {}
    for key, track_id in records.numbers.items():
        run_id, number = key >> NUMBER_BITS, key & NUMBER_MASK
        if run_id not in records.batches:
            problems.append('%s: session number %d of batch %s is in no '
                            'known batch' % (where, number, run_id))
        track = tracks.get(track_id)
        if track is None:
            problems.append('%s: session number %d of batch %s points at '
                            'track %07d, which is not a session of it' % (
                                where, number, run_id, track_id))
            continue
        batches_of.setdefault(track_id, []).append(run_id)
        if (track.runId != run_id
                or track.data.get('session_number') != number):
            problems.append(
                '%s: session number %d of batch %s points at session %r, '
                'which is number %s of batch %s' % (
                    where, number, run_id, track.data.get('session_id'),
                    track.data.get('session_number'), track.runId))
    return batches_of


def _client(track):
    meta = track.data.get('search_meta')
    return meta.get('client') if isinstance(meta, dict) else None


def _collect_hits(track, hits):
    """The hit ids of a visit (a session made from hits, which names its
    client); events pushed to other sessions are no hits."""
    if _client(track) is None:
        return
    sid = track.data.get('session_id')
    for event in track.data.get('events') or ():
        hits.setdefault(event['event_id'], []).append(sid)


def _check_hits(storage, hits, result):
    """No hit in two sessions; the hits in sessions are among the ids
    taken in."""
    problems = result.problems
    result.counts['hits'] = len(hits)
    for hit_id, sids in sorted(hits.items()):
        if len(sids) > 1:
            problems.append('hit %s is in %d sessions: %s' % (
                hit_id, len(sids), ', '.join(sids)))
    state = hit_state(storage, create=False)
    if state is None:
        if hits:
            problems.append('%d hits are in sessions but no hit ids were '
                            'recorded' % len(hits))
        return
    taken = state.ids
    for hit_id in sorted(hits):
        if id_key(hit_id) not in taken:
            problems.append('hit %s is in session %s but its id is not '
                            'among the hits taken in (a load would store '
                            'it again)' % (hit_id, hits[hit_id][0]))
