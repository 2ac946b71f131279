"""The clickstream contract (sessions, events, batches) on a storage.

``IClickstreamDao(storage)`` gives a ``ClickstreamDao``; the value models
are those of the MongoDB implementation's clients.
"""
from trackstore.clickstream.dao import ClickstreamDao
from trackstore.clickstream.dao import SessionNotFound
from trackstore.clickstream.models import RegisteredSession
from trackstore.clickstream.models import SearchResultItem
from trackstore.clickstream.models import Session
from trackstore.clickstream.models import SessionBatch
from trackstore.clickstream.models import SessionBatchStatus
from trackstore.clickstream.models import SessionEvent
from trackstore.clickstream.models import SessionWithEvents


__all__ = [
    'ClickstreamDao',
    'RegisteredSession',
    'SearchResultItem',
    'Session',
    'SessionBatch',
    'SessionBatchStatus',
    'SessionEvent',
    'SessionNotFound',
    'SessionWithEvents',
]
