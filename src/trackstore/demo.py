"""``trackstore demo``: the whole pipeline once, shown as tables.

Generate a hit stream, ingest it into the database (the embedded
FileStorage under ./var/ unless told otherwise), then show a few stored
sessions, the clickstream batches and the order metrics.
"""
import datetime
import os


def _when(us):
    return datetime.datetime.fromtimestamp(
        us / 1e6, datetime.timezone.utc).strftime('%Y-%m-%d %H:%M:%S')


def sessions_table(storage, limit=12):
    """A table of the ``limit`` latest stored visit sessions."""
    from rich.table import Table

    from trackstore.clickstream.dao import ClickstreamDao
    rows = []
    for session in ClickstreamDao(storage).iter_records():
        meta = session.get('search_meta') or {}
        if 'first_ts' in meta:
            rows.append((meta['first_ts'], session['session_id']))
    rows.sort()
    table = Table(title='Sessions (the latest %d of %d)'
                  % (min(limit, len(rows)), len(rows)))
    for col, justify in (('session', 'left'), ('batch', 'right'),
                         ('no.', 'right'), ('customer / user', 'left'),
                         ('first hit (UTC)', 'left'),
                         ('minutes', 'right'), ('hits', 'right'),
                         ('orders', 'right')):
        table.add_column(col, justify=justify)
    dao = ClickstreamDao(storage)
    for first, sid in rows[-limit:]:
        session = dao.get_session(sid, events_limit=0)
        meta = session.search_meta
        who = meta.get('customer')
        if who is None:
            who = 'anonymous' + (
                ' -> %s' % session.user_id if session.user_id else '')
        table.add_row(
            sid, session.batch_id, str(session.session_number), who,
            _when(first * 1e6), '%.1f' % ((meta['last_ts'] - first) / 60),
            str(meta.get('hits', '')), str(meta.get('orders', '')))
    return table


def batches_table(storage):
    """A table of the clickstream's batches."""
    from rich.table import Table

    from trackstore.clickstream.dao import ClickstreamDao
    dao = ClickstreamDao(storage)
    table = Table(title='Batches')
    for col in ('batch', 'status', 'sessions', 'created (UTC)',
                'release'):
        table.add_column(col)
    for run in storage.getRuns(dao.taskId):
        batch = dao.get_batch(str(run.id))
        if batch is None:
            continue
        table.add_row(
            batch.batch_id, batch.status.value,
            '{:,}'.format(batch.session_counter),
            _when(batch.created_at * 1e6), batch.release_id or '')
    return table


def run(console, uri, customers, days, seed, run_ingest):
    """Generate, ingest (``run_ingest`` is the CLI's, with its progress
    bar) and print the tables on ``console``."""
    from trackstore.cli import _open_db
    from trackstore.cli import metrics_table
    from trackstore.db import get_storage
    from trackstore.metrics import compute
    from trackstore.sessions.generate import generate
    os.makedirs('var', exist_ok=True)
    path = os.path.join('var', 'demo-hits-%d-%d-%d.jsonl'
                        % (customers, days, seed))
    if not os.path.exists(path):
        with console.status('generating hits of %d customers over %d '
                            'days ...' % (customers, days)):
            count = generate(customers, days, seed, path + '.tmp')
            os.replace(path + '.tmp', path)
        console.print('generated %s hits into %s' % (
            '{:,}'.format(count), path))
    report = run_ingest(path, uri, 30 * 60.0,
                        bar=console if console.is_terminal else None)
    console.print(report.summary())
    db = _open_db(uri)
    try:
        conn = db.open()
        try:
            storage = get_storage(conn)
            console.print(sessions_table(storage))
            console.print(batches_table(storage))
            console.print(metrics_table(compute(storage)))
        finally:
            conn.close()
    finally:
        db.close()
