"""A closed session: what an engine hands to a closer."""
import hashlib

from trackstore.sessions.hits import US
from trackstore.sessions.hits import format_us


def session_id(client, first_idkey):
    """The deterministic id of a session: a hash of its client key and
    its first hit's id (hit ids are unique, the client keeps ids of
    different data sets apart). Batch and stream give the same."""
    text = '%s\x00%s' % (client, first_idkey)
    return hashlib.blake2b(
        text.encode('utf-8', 'surrogatepass'), digest_size=8).hexdigest()


class ClosedSession:
    """A finished session (value object).

    - ``session_id``: see ``session_id()``;
    - ``client``: the client key (``'c:<customer>'`` or ``'a:<owner>'``);
    - ``customer``: the customer id of a customer session, else None;
    - ``user_id``: the customer, or for an anonymous session the customer
      stitched to it, or None;
    - ``hits``: the ``Hit`` objects, sorted by time (then id);
    - ``late``: True for a hit that came after its time was closed,
      handed on as a session of its own;
    - ``reason``: why it closed: ``'timeout'``, ``'max_events'``,
      ``'max_length'``, ``'late'``, ``'flush'`` (end of input) or
      ``'batch'``.
    """

    __slots__ = ('session_id', 'client', 'customer', 'user_id', 'hits',
                 'late', 'reason', 'stamp')

    def __init__(self, client, hits, user_id=None, late=False,
                 reason='timeout', stamp=None):
        self.client = client
        self.hits = hits
        self.customer = client[2:] if client.startswith('c:') else None
        self.user_id = user_id
        self.late = late
        self.reason = reason
        self.stamp = stamp
        self.session_id = session_id(client, hits[0].idkey)

    @property
    def first_us(self):
        return self.hits[0].us

    @property
    def last_us(self):
        return self.hits[-1].us

    @property
    def first_ts(self):
        return self.hits[0].us / US

    @property
    def last_ts(self):
        return self.hits[-1].us / US

    @property
    def duration(self):
        """Seconds from the first to the last hit (0.0 for one hit)."""
        return (self.hits[-1].us - self.hits[0].us) / US

    @property
    def anonymous(self):
        return self.customer is None

    @property
    def stitched(self):
        """An anonymous session linked to a customer."""
        return self.customer is None and self.user_id is not None

    @property
    def has_order(self):
        return any(h.type == 'placed_order' for h in self.hits)

    def __len__(self):
        return len(self.hits)

    def signature(self):
        """What makes two sessions the same: id, client, user, late flag
        and the hit ids in order (the reason is how it closed, not what
        it is)."""
        return (self.session_id, self.client, self.user_id, self.late,
                tuple(h.idkey for h in self.hits))

    def __eq__(self, other):
        return (isinstance(other, ClosedSession)
                and self.signature() == other.signature())

    def __hash__(self):
        return hash(self.session_id)

    def __repr__(self):
        return '<ClosedSession %s %s user=%s hits=%d %s..%s%s>' % (
            self.session_id, self.client, self.user_id, len(self.hits),
            format_us(self.first_us), format_us(self.last_us),
            ' late' if self.late else '')
