"""The clickstream's value models.

These are the pydantic (v2) models that clients of the MongoDB
implementation already use: same class names, field names, types and
enum values. They are values handed in and out of the DAO; the storage
never pickles them (see ``records.py``), so a change here does not break
stored data.

Time stamps are integer UTC seconds. Every ``| None`` field defaults to
None and may be left out.
"""
import enum
from typing import Any

from pydantic import BaseModel


class SearchResultItem(BaseModel):
    """One result shown for a search query."""

    object_id: str
    rank: float | None = None
    meta: dict | None = None


class Session(BaseModel):
    """A search: the query, the results shown and who asked."""

    session_id: str
    search_query: Any
    created_at: int
    search_results: list[SearchResultItem]
    search_meta: dict | None = None
    payload_filter: Any | None = None
    sort_by: Any | None = None
    user_id: str | None = None
    is_irrelevant: bool = False
    is_payload_search: bool = False


class RegisteredSession(Session):
    """A session as stored: with its batch and its number in the batch."""

    batch_id: str
    session_number: int


class SessionEvent(BaseModel):
    """Something the user did with a result of a session (a click)."""

    event_id: str
    session_id: str
    object_id: str
    event_type: str
    created_at: int
    meta: dict | None = None


class SessionWithEvents(RegisteredSession):
    """A registered session with its events, oldest first."""

    events: list[SessionEvent]


class SessionBatchStatus(str, enum.Enum):
    """Where a batch of sessions is in its life."""

    collecting = 'collecting'
    released = 'released'
    fine_tuning = 'fine_tuning'
    archiving = 'archiving'
    archived = 'archived'


class SessionBatch(BaseModel):
    """A batch of sessions: a run of the clickstream task."""

    batch_id: str
    session_counter: int
    created_at: int
    status: SessionBatchStatus
    release_id: str | None = None
    released_at: int | None = None
