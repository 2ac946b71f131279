"""What the terminal shows of a store: rich tables of the latest
sessions, the batches and the order metrics (for ``trackstore metrics``
and ``trackstore demo``)."""
import datetime


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


def metrics_table(result):
    from rich.table import Table
    table = Table(title='Order metrics (%d ordering sessions, %d customers)'
                  % (result['ordering_sessions'],
                     result['customers_with_orders']))
    table.add_column('per ordering session')
    for col in ('median', 'p25', 'p75', 'p90', 'mean'):
        table.add_column(col, justify='right')

    def fmt(v):
        return '-' if v is None else '%.2f' % v

    for label, key in (
            ('sessions before the order', 'visits_before_order'),
            ('minutes in those sessions',
             'session_duration_minutes_before_order')):
        s = result[key]
        table.add_row(label, fmt(s['p50']), fmt(s['p25']), fmt(s['p75']),
                      fmt(s['p90']), fmt(s['mean']))
    return table
