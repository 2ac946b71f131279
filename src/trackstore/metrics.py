"""Order metrics over stored sessions: visits and time before an order.

For every session of a customer that contains a ``placed_order`` hit:

- *sessions before order*: how many of the customer's sessions lie since
  the customer's previous ordering session (or since the first session),
  not counting the ordering session itself;
- *time until order*: the summed durations (last hit minus first hit, in
  seconds) of those same sessions.

One value per ordering session, however many orders it holds. The
answer gives the medians under the names the seed's API used (the
duration in minutes, truly minutes) and adds the count and the 25th,
75th and 90th percentiles (linear interpolation between the closest
ranks, so the 50th is the usual median).
"""
import math
from collections import defaultdict
from dataclasses import dataclass


PERCENTILES = (25, 50, 75, 90)
US = 1000000


@dataclass(frozen=True)
class SessionSummary:
    """What the metrics need of one stored session.

    Times are integer microseconds since the epoch, so durations are
    exact; ``seconds(...)`` builds one from float seconds.
    """

    customer: str
    first_us: int       # the first hit's time
    last_us: int        # the last hit's time
    ordered: bool       # holds at least one placed_order hit
    session_id: str = ''
    anonymous: bool = False

    @classmethod
    def seconds(cls, customer, first, last, ordered, session_id='',
                anonymous=False):
        return cls(customer, int(round(first * US)), int(round(last * US)),
                   ordered, session_id, anonymous)

    @property
    def duration(self):
        """Seconds from the first hit to the last (0.0 for one hit)."""
        return (self.last_us - self.first_us) / US


@dataclass(frozen=True)
class OrderValue:
    """The metrics of one ordering session."""

    customer: str
    session_id: str
    ordered_at: float
    sessions_before: int
    seconds_before: float


def order_values(summaries):
    """Return one ``OrderValue`` per ordering session, by customer and time.

    ``summaries`` is any iterable of ``SessionSummary``; a customer's
    sessions are taken in the order of their first hit.
    """
    by_customer = defaultdict(list)
    for s in summaries:
        by_customer[s.customer].append(s)
    values = []
    for customer in sorted(by_customer):
        sessions = by_customer[customer]
        sessions.sort(key=lambda s: (s.first_us, s.last_us, s.session_id))
        count = 0
        us = 0
        for s in sessions:
            if s.ordered:
                values.append(OrderValue(
                    customer, s.session_id, s.first_us / US, count,
                    us / US))
                count = 0
                us = 0
            else:
                count += 1
                us += s.last_us - s.first_us
    return values


def percentile(sorted_values, p):
    """The ``p``-th percentile (0..100) of sorted values, interpolated
    linearly between the closest ranks; None for no values."""
    n = len(sorted_values)
    if not n:
        return None
    pos = (n - 1) * p / 100.0
    lo = math.floor(pos)
    hi = min(lo + 1, n - 1)
    frac = pos - lo
    low = sorted_values[lo]
    return float(low + (sorted_values[hi] - low) * frac)


def summarize(values):
    """The metrics answer for a list of ``OrderValue``.

    Keys: ``median_visits_before_order``,
    ``median_session_duration_minutes_before_order`` (None when nothing
    was ordered), ``ordering_sessions``, ``customers_with_orders``, and
    ``visits_before_order`` / ``session_duration_minutes_before_order``:
    dicts of ``p25``, ``p50``, ``p75``, ``p90``, ``mean``.
    """
    visits = sorted(v.sessions_before for v in values)
    minutes = sorted(v.seconds_before / 60.0 for v in values)

    def stats(data):
        out = {'p%d' % p: percentile(data, p) for p in PERCENTILES}
        out['mean'] = (sum(data) / len(data)) if data else None
        return out

    v_stats = stats(visits)
    m_stats = stats(minutes)
    return {
        'median_visits_before_order': v_stats['p50'],
        'median_session_duration_minutes_before_order': m_stats['p50'],
        'ordering_sessions': len(values),
        'customers_with_orders': len({v.customer for v in values}),
        'visits_before_order': v_stats,
        'session_duration_minutes_before_order': m_stats,
    }


def order_metrics(summaries):
    """``summarize(order_values(summaries))``."""
    return summarize(order_values(summaries))


# -- over stored sessions ---------------------------------------------------


def visit_summary(session, include_anonymous=False):
    """The ``SessionSummary`` of a stored clickstream session (the dict
    of its fields), or None when it is not a visit that counts.

    Visits are the sessions that ingestion stored: their ``search_meta``
    holds the client key and the exact first and last hit times
    (``first_ts``, ``last_ts``, float seconds; rounded to whole
    microseconds here, which is what the hits carried).
    """
    meta = session.get('search_meta') or {}
    if 'client' not in meta or 'first_ts' not in meta:
        return None
    customer = meta.get('customer')
    anonymous = customer is None
    if anonymous:
        customer = session.get('user_id')
        if not include_anonymous or customer is None:
            return None
    return SessionSummary(
        customer, int(round(meta['first_ts'] * US)),
        int(round(meta['last_ts'] * US)), bool(meta.get('orders')),
        session.get('session_id', ''), anonymous)


def stored_summaries(storage, include_anonymous=False):
    """Yield a ``SessionSummary`` for every stored visit that counts:
    customer sessions, and with ``include_anonymous`` also anonymous
    sessions stitched to a customer (as that customer's sessions)."""
    from trackstore.clickstream.dao import ClickstreamDao
    for session in ClickstreamDao(storage).iter_records():
        summary = visit_summary(session, include_anonymous)
        if summary is not None:
            yield summary


def compute(storage, include_anonymous=False):
    """The order metrics (see ``summarize``) of a storage's sessions."""
    result = order_metrics(stored_summaries(storage, include_anonymous))
    result['include_anonymous'] = bool(include_anonymous)
    return result
