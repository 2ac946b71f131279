"""Closers: where closed sessions go."""
import sys

from zope.interface import implementer

from trackstore.interfaces import ICloser
from trackstore.sessions.hits import format_us


@implementer(ICloser)
class CollectingCloser:
    """Keeps the closed sessions in ``sessions`` (a list)."""

    def __init__(self):
        self.sessions = []

    def close(self, session):
        self.sessions.append(session)


@implementer(ICloser)
class PrintingCloser:
    """Writes one line per closed session to ``stream`` (stdout)."""

    def __init__(self, stream=None):
        self.stream = stream
        self.count = 0

    def close(self, session):
        stream = self.stream if self.stream is not None else sys.stdout
        self.count += 1
        types = {}
        for hit in session.hits:
            types[hit.type] = types.get(hit.type, 0) + 1
        stream.write('session %s %s %s..%s %d hits (%s)%s%s\n' % (
            session.session_id,
            'customer=%s' % session.customer if session.customer
            else 'anonymous' + (
                ' user=%s' % session.user_id if session.user_id else ''),
            format_us(session.first_us), format_us(session.last_us)[11:],
            len(session.hits),
            ', '.join('%s %d' % kv for kv in sorted(types.items())),
            ' late' if session.late else '',
            '' if session.reason in ('timeout', 'flush', 'batch', 'late')
            else ' [%s]' % session.reason))
