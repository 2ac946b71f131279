"""What the dashboard shows, computed in one pass over the sessions.

``dashboard_data(storage)`` reads every stored session once through
``ClickstreamDao.iter_records()`` and gives the JSON the page draws:
visits, customers and orders per day, conversion, the distributions of
sessions and time before an order (``trackstore.metrics``' own values,
so they agree with ``/metrics/orders``), top pages and queries, batches
and the late and rejected hits. The routes cache it per database
snapshot (see ``reports.py``).
"""
import collections
import datetime
import urllib.parse

from trackstore import metrics
from trackstore.web.units import dao


TOP = 10

#: Bins of the distributions: (label, lower bound inclusive).
VISIT_BINS = [(str(n), n) for n in range(10)] + [('10+', 10)]
MINUTE_BINS = [('0', 0), ('<5', 1e-9), ('5-15', 5), ('15-30', 15),
               ('30-60', 30), ('1-2h', 60), ('2-4h', 120), ('4-8h', 240),
               ('8h+', 480)]


def day_of(seconds):
    return datetime.datetime.fromtimestamp(
        seconds, datetime.timezone.utc).strftime('%Y-%m-%d')


def page_label(page):
    """A page URL as people read it: its path (and query)."""
    if not isinstance(page, str):
        return str(page)
    parts = urllib.parse.urlsplit(page)
    if not parts.netloc:
        return page
    return (parts.path or '/') + ('?' + parts.query if parts.query else '')


class Tally:
    """The counters of one pass."""

    def __init__(self):
        self.visits = collections.Counter()
        self.anonymous = collections.Counter()
        self.customers = collections.defaultdict(set)
        self.orders = collections.Counter()
        self.ordering = collections.Counter()
        self.pages = collections.Counter()
        self.queries = collections.Counter()
        self.all_customers = set()
        self.hits = 0
        self.late_sessions = 0
        self.late_hits = 0
        self.searches = 0        # sessions registered through the API
        self.summaries = []

    def add(self, record):
        meta = record.get('search_meta') or {}
        if 'first_ts' not in meta:
            self.searches += 1
            return
        day = day_of(meta['first_ts'])
        self.visits[day] += 1
        customer = meta.get('customer')
        if customer is None:
            self.anonymous[day] += 1
        else:
            self.customers[day].add(customer)
            self.all_customers.add(customer)
        orders = meta.get('orders') or 0
        self.orders[day] += orders
        self.ordering[day] += 1 if orders else 0
        self.hits += meta.get('hits') or len(record['events'])
        if meta.get('late'):
            self.late_sessions += 1
            self.late_hits += meta.get('hits') or 0
        self.add_events(record['events'])
        summary = metrics.visit_summary(record)
        if summary is not None:
            self.summaries.append(summary)

    def add_events(self, events):
        for event in events:
            kind = event['event_type']
            if kind == 'page_view':
                self.pages[page_label(event['object_id'])] += 1
            elif kind == 'search':
                query = (event.get('meta') or {}).get('query')
                if query:
                    self.queries[str(query)] += 1


def per_day(tally):
    days = sorted(tally.visits)
    return [{
        'day': day,
        'visits': tally.visits[day],
        'anonymous_visits': tally.anonymous[day],
        'customers': len(tally.customers[day]),
        'orders': tally.orders[day],
        'ordering_sessions': tally.ordering[day],
        'conversion': rate(tally.ordering[day], tally.visits[day]),
    } for day in days]


def rate(part, whole):
    return round(part / whole, 6) if whole else 0.0


def histogram(values, bins):
    """``[{'bin': label, 'count': n}]``; a value falls into the last bin
    whose lower bound it reaches."""
    counts = [0] * len(bins)
    for value in values:
        index = 0
        for i, (label, low) in enumerate(bins):
            if value >= low:
                index = i
        counts[index] += 1
    return [{'bin': label, 'count': n}
            for (label, low), n in zip(bins, counts)]


def top(counter, n=TOP):
    return [{'name': name, 'count': count}
            for name, count in sorted(counter.items(),
                                      key=lambda kv: (-kv[1], kv[0]))[:n]]


def batches(storage):
    """Every batch, oldest first, with its status and session count."""
    clickstream = dao(storage)
    found = []
    for run in storage.getRuns(clickstream.taskId):
        batch = clickstream.get_batch(str(run.id))
        if batch is not None:
            found.append(batch.model_dump(mode='json'))
    return found


def dashboard_data(storage, load_totals=None):
    """The dashboard's JSON; ``load_totals`` are the ingest's counts
    over all loads (for the rejected hits), when known."""
    tally = Tally()
    for record in dao(storage).iter_records():
        tally.add(record)
    values = metrics.order_values(tally.summaries)
    summary = metrics.summarize(values)
    totals = dict(load_totals or {})
    visits = sum(tally.visits.values())
    ordering = sum(tally.ordering.values())
    return {
        'totals': {
            'visits': visits,
            'customers': len(tally.all_customers),
            'orders': sum(tally.orders.values()),
            'ordering_sessions': ordering,
            'conversion': rate(ordering, visits),
            'hits': tally.hits,
            'api_sessions': tally.searches,
        },
        'days': per_day(tally),
        'orders': summary,
        'visits_before_order': histogram(
            [v.sessions_before for v in values], VISIT_BINS),
        'minutes_before_order': histogram(
            [v.seconds_before / 60.0 for v in values], MINUTE_BINS),
        'top_pages': top(tally.pages),
        'top_queries': top(tally.queries),
        'batches': batches(storage),
        'hits': {
            'late': tally.late_hits,
            'late_sessions': tally.late_sessions,
            # The loads count duplicates; rejects live in their files
            # unless the loader counts them (None: not recorded).
            'rejected': totals.get('rejected'),
            'duplicates': totals.get('duplicates', 0) if totals else None,
            # hits of known bots the privacy settings left out
            'bots': totals.get('bots', 0) if totals else None,
        },
    }
