"""The clickstream routes, at the paths the search product serves them.

Client routes under ``/api/v1/clickstream``, internal ones under
``/api/v1/clickstream/internal`` (see the spec, clickstream.md). Every
route is one DAO call in one unit of work.
"""
import time

from fastapi import APIRouter
from fastapi import HTTPException
from fastapi import Query
from fastapi import Request

from trackstore.clickstream.dao import SessionNotFound
from trackstore.clickstream.models import RegisteredSession
from trackstore.clickstream.models import Session
from trackstore.clickstream.models import SessionEvent
from trackstore.clickstream.models import SessionWithEvents
from trackstore.web.schemas import BatchSessionsOut
from trackstore.web.schemas import EventsIn
from trackstore.web.schemas import EventsOut
from trackstore.web.schemas import ImprovementOut
from trackstore.web.schemas import ReleaseIn
from trackstore.web.schemas import ReleaseOut
from trackstore.web.schemas import SessionIdIn
from trackstore.web.schemas import SessionIn
from trackstore.web.units import answer
from trackstore.web.units import dao
from trackstore.web.units import read
from trackstore.web.units import write


PREFIX = '/api/v1/clickstream'

#: The task whose tracks are the queue of sessions to use for
#: improvement: one track per session, the session id as its user name
#: (so queuing twice updates the one track), in the task's current run.
#: A consumer reads ``query(taskId=IMPROVEMENT_TASK)`` and stops the run
#: when it has taken them, as batches are released.
IMPROVEMENT_TASK = 'clickstream.use-for-improvement'

router = APIRouter(prefix=PREFIX, tags=['clickstream'])
internal = APIRouter(prefix=PREFIX + '/internal',
                     tags=['clickstream (internal)'])


def checked_time(request, created_at, what='created_at'):
    """``created_at`` (the server's now when None), or a 400 when it
    lies further back or ahead than the settings allow."""
    now = int(time.time())
    if created_at is None:
        return now
    settings = request.app.state.settings
    if created_at < now - settings.max_past:
        raise HTTPException(400, '%s %d is more than %d seconds in the '
                            'past' % (what, created_at, settings.max_past))
    if created_at > now + settings.max_future:
        raise HTTPException(400, '%s %d is more than %d seconds in the '
                            'future' % (what, created_at,
                                        settings.max_future))
    return created_at


def not_found(session_id):
    return HTTPException(404, 'unknown session id %r' % (session_id,))


@router.post('/session', response_model=RegisteredSession)
def register_session(body: SessionIn, request: Request):
    """Register a search session in the collecting batch (a session id
    that is stored already answers with the stored session)."""
    values = body.model_dump(exclude={'created_at'})
    session = Session(created_at=checked_time(request, body.created_at),
                      **values)
    return answer(request, write(
        request, lambda storage: dao(storage).register_session(session)))


@router.get('/session', response_model=SessionWithEvents)
def get_session(request: Request, session_id: str = Query(...)):
    """The session with its events (oldest first) and ``is_irrelevant``.
    """
    found = read(request, lambda storage: dao(storage).get_session(
        session_id))
    if found is None:
        raise not_found(session_id)
    return answer(request, found)


@router.post('/session/events', response_model=EventsOut)
def push_events(body: EventsIn, request: Request):
    """Store events of a session; events it has already are skipped."""
    events = [SessionEvent(
        event_id=e.event_id, session_id=body.session_id,
        object_id=e.object_id, event_type=e.event_type,
        created_at=checked_time(request, e.created_at,
                                'the created_at of event %r' % e.event_id),
        meta=e.meta) for e in body.events]
    try:
        stored = write(request,
                       lambda storage: dao(storage).push_events(events))
    except SessionNotFound:
        raise not_found(body.session_id)
    # The DAO hands back the very events it stored; an id given twice
    # in one body is stored once and skipped once.
    taken = {id(e) for e in stored}
    return answer(request, EventsOut(
        session_id=body.session_id,
        stored=[e.event_id for e in events if id(e) in taken],
        skipped=[e.event_id for e in events if id(e) not in taken]))


@router.post('/session/irrelevant', response_model=RegisteredSession)
def mark_irrelevant(body: SessionIdIn, request: Request):
    """Flag a session as irrelevant; 404 when unknown."""
    found = write(request, lambda storage: dao(
        storage).mark_session_irrelevant(body.session_id))
    if found is None:
        raise not_found(body.session_id)
    return answer(request, found)


@internal.get('/batch/sessions', response_model=BatchSessionsOut)
def batch_sessions(request: Request, batch_id: str = Query(...),
                   after_number: int = Query(0, ge=0),
                   limit: int = Query(10, ge=1, le=1000),
                   events_limit: int = Query(100, ge=0)):
    """A page of a batch's sessions with ``session_number >
    after_number``; ``last_number`` is the next page's cursor."""
    sessions = read(request, lambda storage: dao(storage).get_batch_sessions(
        batch_id, after_number=after_number, limit=limit,
        events_limit=events_limit))
    last = sessions[-1].session_number if sessions else None
    return answer(request, BatchSessionsOut(
        batch_id=batch_id, last_number=last, sessions=sessions))


@internal.post('/batch/release', response_model=ReleaseOut)
def release_batch(body: ReleaseIn, request: Request):
    """Release the collecting batch under an idempotency key."""
    batch = write(request, lambda storage: dao(
        storage).release_batch(body.release_id))
    if batch is None:
        raise HTTPException(404, 'no batch is collecting')
    return answer(request, ReleaseOut(
        release_id=batch.release_id, batch_id=batch.batch_id,
        released_at=batch.released_at))


def queue_for_improvement(storage, session_id):
    """Queue the session when it is irrelevant or has events; returns
    None for an unknown session, else whether it was queued."""
    session = dao(storage).get_session(session_id, events_limit=1)
    if session is None:
        return None
    if not (session.is_irrelevant or session.events):
        return False
    storage.saveUserTrack(
        IMPROVEMENT_TASK, 0, session_id,
        {'session_id': session_id, 'batch_id': session.batch_id,
         'is_irrelevant': session.is_irrelevant}, update=True)
    return True


@internal.post('/session/use-for-improvement',
               response_model=ImprovementOut)
def use_for_improvement(body: SessionIdIn, request: Request):
    """Queue a session for the consumer (only when it is irrelevant or
    has events); 404 when unknown."""
    queued = write(request, queue_for_improvement,
                   body.session_id)
    if queued is None:
        raise not_found(body.session_id)
    return answer(request, ImprovementOut(session_id=body.session_id,
                                          queued=queued))
