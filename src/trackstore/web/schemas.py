"""The shapes of the HTTP bodies (request and answer models).

Requests take the fields the search product's clients already send;
``created_at`` may be left out (the server's now). The answers reuse the
clickstream's value models where the DAO hands them out.
"""
from typing import Any

from pydantic import BaseModel
from pydantic import Field

from trackstore.clickstream.models import SearchResultItem
from trackstore.clickstream.models import SessionWithEvents


class SessionIn(BaseModel):
    """POST /api/v1/clickstream/session."""

    session_id: str = Field(min_length=1)
    search_query: Any
    search_results: list[SearchResultItem]
    search_meta: dict | None = None
    payload_filter: Any | None = None
    sort_by: Any | None = None
    user_id: str | None = None
    created_at: int | None = None


class EventIn(BaseModel):
    """One event of POST /api/v1/clickstream/session/events."""

    event_id: str = Field(min_length=1)
    object_id: str
    event_type: str = 'click'
    created_at: int | None = None
    meta: dict | None = None


class EventsIn(BaseModel):
    session_id: str
    events: list[EventIn]


class EventsOut(BaseModel):
    """Which events were stored and which were known already."""

    session_id: str
    stored: list[str]
    skipped: list[str]


class SessionIdIn(BaseModel):
    session_id: str


class ReleaseIn(BaseModel):
    release_id: str = Field(min_length=1)


class ReleaseOut(BaseModel):
    release_id: str
    batch_id: str
    released_at: int


class BatchSessionsOut(BaseModel):
    """A page of a batch; ``last_number`` is the cursor for the next."""

    batch_id: str
    last_number: int | None
    sessions: list[SessionWithEvents]


class ImprovementOut(BaseModel):
    """Whether the session was queued for the consumer (only sessions
    that are irrelevant or have events are)."""

    session_id: str
    queued: bool


class Rejected(BaseModel):
    line: int
    reason: str


class HitsOut(BaseModel):
    """What POST /hits did with the hits of its body."""

    read: int
    stored: int
    skipped: int
    rejected: int
    rejects: list[Rejected]
    #: hits of known bots and crawlers, left out of sessions
    bots: int
    late: int
    #: sessions written (new, or moved to a new id) and taken out
    sessions: int
    replaced: int


class Percentiles(BaseModel):
    p25: float | None
    p50: float | None
    p75: float | None
    p90: float | None
    mean: float | None


class OrderMetrics(BaseModel):
    """GET /metrics/orders: the two median keys, minutes in minutes."""

    median_visits_before_order: float | None
    median_session_duration_minutes_before_order: float | None
    ordering_sessions: int
    customers_with_orders: int
    visits_before_order: Percentiles
    session_duration_minutes_before_order: Percentiles
    include_anonymous: bool


class Health(BaseModel):
    """The worker that answered: its writes, the conflicts they
    retried and how often it computed a report (not per request: the
    reports are cached until the next commit)."""

    status: str
    database: str
    pid: int
    commits: int
    conflicts: int
    reports_computed: int
