"""Hits of known users, for the erasure and retention tests.

``erin_hits()`` are the hits of customer ``ERIN``: an anonymous visit on
her own stamp that she logs in to (the anonymous visit is stitched to
her), a search with a query no other hit has (``SECRET``), an order,
and a visit of hers a week later. ``other_hits()`` are customers and
visitors who share nothing with her; ``generated_hits()`` a generated
crowd. ``write_hits`` writes hits as JSON Lines.
"""
import datetime

import orjson

from trackstore.check import check_store
from trackstore.clickstream import ClickstreamDao
from trackstore.clickstream.records import clickstream_records
from trackstore.clickstream.records import slot_range
from trackstore.metrics import compute
from trackstore.tests import stored_visits


ERIN = '7001'
SECRET = 'zebra-striped-teapot-for-erin-4411'
DAY = datetime.datetime(2022, 4, 28, 9, 0)
UA = 'Mozilla/5.0 (test)'


def hit(id, type, when, customer=None, ip='10.0.0.1', **fields):
    """One hit; ``when`` is a ``datetime`` (UTC)."""
    event = {'user-agent': UA, 'ip': ip, 'customer-id': customer,
             'timestamp': when.isoformat(timespec='microseconds')}
    event.update(fields)
    return {'id': id, 'type': type, 'event': event}


def minutes(n, day=0):
    return DAY + datetime.timedelta(days=day, minutes=n)


def erin_hits(day=0, first_id=900000):
    """Erin's hits: an anonymous visit she logs in to, with the secret
    search and an order, and a customer visit a week later."""
    ip = '10.9.9.9'
    return [
        hit(first_id, 'search', minutes(0, day), ip=ip, query=SECRET),
        hit(first_id + 1, 'page_view', minutes(2, day), ip=ip,
            page='https://shop.example/product/7'),
        hit(first_id + 2, 'page_view', minutes(4, day), ERIN, ip=ip,
            page='https://shop.example/login'),
        hit(first_id + 3, 'add_to_cart', minutes(6, day), ERIN, ip=ip,
            product=7),
        hit(first_id + 4, 'placed_order', minutes(9, day), ERIN, ip=ip,
            order='o-erin-1'),
        hit(first_id + 5, 'search', minutes(0, day + 7), ERIN, ip=ip,
            query='blue kettle'),
        hit(first_id + 6, 'placed_order', minutes(15, day + 7), ERIN,
            ip=ip, order='o-erin-2'),
    ]


def other_hits(day=0, first_id=800000):
    """Two customers with orders and an anonymous visitor."""
    hits = []
    for n, customer in enumerate(('7002', '7003')):
        ip = '10.1.0.%d' % n
        base = first_id + 100 * n
        hits += [
            hit(base, 'search', minutes(10 * n, day), customer, ip=ip,
                query='kettle'),
            hit(base + 1, 'placed_order', minutes(10 * n + 5, day),
                customer, ip=ip, order='o-%s-1' % customer),
            hit(base + 2, 'page_view', minutes(10 * n, day + 2), customer,
                ip=ip, page='https://shop.example/'),
            hit(base + 3, 'placed_order', minutes(10 * n + 3, day + 3),
                customer, ip=ip, order='o-%s-2' % customer),
        ]
    hits.append(hit(first_id + 900, 'search', minutes(30, day), ip='10.2.2.2',
                    query='teapot'))
    return hits


def generated_hits(customers=15, days=3, seed=11):
    """A generated crowd of hits (as dicts; malformed lines dropped)."""
    import io

    from trackstore.sessions.generate import generate
    out = io.BytesIO()
    generate(customers, days, seed, out)
    hits = []
    for line in out.getvalue().splitlines():
        try:
            hits.append(orjson.loads(line))
        except orjson.JSONDecodeError:
            pass
    return hits


def write_hits(path, hits):
    with open(path, 'wb') as f:
        for h in hits:
            f.write(orjson.dumps(h) + b'\n')
    return path


def fresh_metrics(tmpdir, hits, name='fresh'):
    """The order metrics (customers only, and with stitched anonymous
    visits) of a new database loaded with ``hits`` only."""
    return fresh_load(tmpdir, hits, name)[:2]


def fresh_load(tmpdir, hits, name='fresh'):
    """``fresh_metrics`` and the ``stored_visits`` of that database."""
    import os

    from trackstore.db import get_storage
    from trackstore.db import open_db
    from trackstore.ingest import ingest
    path = write_hits(os.path.join(tmpdir, name + '.jsonl'), hits)
    db = open_db('memory://')
    try:
        ingest(path, db)
        conn = db.open()
        try:
            storage = get_storage(conn)
            return (compute(storage), compute(storage, True),
                    stored_visits(storage))
        finally:
            conn.close()
    finally:
        db.close()


def batch_consistent(test, storage):
    """Every batch's counter is the number of its sessions, and every
    session is found by its id; the whole-store check finds nothing."""
    test.assertEqual(check_store(storage).problems, [])
    records = clickstream_records(storage)
    dao = ClickstreamDao(storage)
    for run_id, batch in records.batches.items():
        low, high = slot_range(run_id)
        slots = len(records.numbers.keys(low, high))
        test.assertEqual(batch.session_counter, slots)
        test.assertEqual(len(dao.get_batch_sessions(str(run_id))), slots)
    test.assertEqual(len(records.ids), len(records.numbers))
    test.assertEqual(len(storage.query(taskId='clickstream')),
                     len(records.ids))
