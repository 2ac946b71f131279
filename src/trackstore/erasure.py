"""Erasure: take what a user did out of a storage, everywhere.

``erase_user(storage, user_id)`` removes, in the caller's transaction,

- every session of the user in every clickstream task (through
  ``ClickstreamDao.remove_session``, so batch counters stay exact and
  cached reports are computed again): the visits of the customer and
  the anonymous visits stitched to them (whose ``user_id`` is the
  customer), with all their hits (a visit's hits are its events);
- every other track whose user is ``user_id`` (any task, any run), and
  the tracks that name an erased session as their user (the queue of
  sessions to improve on);
- the customer's entries in the identity map of the hit path (stamp ->
  first customer hit), so no later load stitches to them again.

``after`` and ``before`` (epoch seconds) erase a time range only: the
sessions and tracks that started at or after ``after`` and before
``before``.

What is kept, on purpose: the ids of the erased hits stay in the hit
path's set of loaded ids, so an erased hit loaded again (an old export
imported anew) is a duplicate and does NOT come back; the ids are
opaque numbers that say nothing about the user. The stamp -> visitor
map (pseudonymous keys of the identity rule) stays too, so later hits
of other visitors are keyed as before. After an erasure the data is
unreachable; ``trackstore.retention.pack`` then removes the old
revisions from the storage file itself.
"""
from dataclasses import asdict
from dataclasses import dataclass

from trackstore.clickstream.dao import ClickstreamDao
from trackstore.clickstream.records import clickstream_records
from trackstore.hitstore import hit_state


US = 1000000


@dataclass
class ErasureReport:
    """What one erasure removed: ``sessions`` (clickstream sessions),
    ``hits`` (their events), ``tracks`` (other tracks) and
    ``identities`` (stamps no longer stitched to the user)."""

    user_id: str
    sessions: int = 0
    hits: int = 0
    tracks: int = 0
    identities: int = 0

    def as_dict(self):
        return asdict(self)

    def summary(self):
        """One line for people."""
        return ('user %r: %d sessions (%d hits), %d other tracks and %d '
                'identity links erased' % (
                    self.user_id, self.sessions, self.hits, self.tracks,
                    self.identities))


def in_range(seconds, after=None, before=None):
    """Whether ``seconds`` lies in ``[after, before)`` (None: open)."""
    return ((after is None or seconds >= after)
            and (before is None or seconds < before))


def session_of(storage, track):
    """``(dao, session id)`` when ``track`` is a clickstream session of
    its task, else None."""
    records = clickstream_records(storage, track.taskId)
    sid = track.data.get('session_id')
    if records is None or not isinstance(sid, str):
        return None
    if records.ids.get(sid) != int(track.__name__):
        return None
    return ClickstreamDao(storage, track.taskId), sid


def erase_user(storage, user_id, after=None, before=None):
    """Erase the user's sessions, hits, tracks and identity links (see
    the module docstring); return an ``ErasureReport``. The caller
    commits."""
    if not isinstance(user_id, str) or not user_id:
        raise ValueError('a user id is a non-empty string, not %r'
                         % (user_id,))
    report = ErasureReport(user_id)
    erased = []
    for track in storage.query(userName=user_id):
        if not in_range(float(track.timeStamp), after, before):
            continue
        found = session_of(storage, track)
        if found is None:
            storage.removeTrack(track)
            report.tracks += 1
            continue
        dao, sid = found
        dao.remove_session(sid)
        report.sessions += 1
        report.hits += len(track.data.get('events') or ())
        erased.append(sid)
    for sid in erased:
        # Tracks keyed by the session (the improvement queue).
        for track in storage.query(userName=sid):
            storage.removeTrack(track)
            report.tracks += 1
    report.identities = forget_customer(storage, user_id, after, before)
    return report


def forget_customer(storage, user_id, after=None, before=None):
    """Drop the stamps whose first customer hit is the user's (in the
    range); return how many."""
    state = hit_state(storage, create=False)
    if state is None:
        return 0
    stamps = [stamp for stamp, (customer, us, _) in state.customers.items()
              if customer == user_id and in_range(us / US, after, before)]
    for stamp in stamps:
        del state.customers[stamp]
    return len(stamps)
