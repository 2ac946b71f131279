"""``trackstore demo``: the whole pipeline once, shown as tables.

Generate a hit stream, ingest it into the database (the embedded
FileStorage under ./var/ unless told otherwise), then show a few stored
sessions, the clickstream batches and the order metrics.
"""
import os


def run(console, uri, customers, days, seed, run_ingest, open_db):
    """Generate, ingest and print the tables on ``console``.
    ``run_ingest`` and ``open_db`` are the command line's (with its
    progress bar and its one-line errors)."""
    from trackstore.db import get_storage
    from trackstore.metrics import compute
    from trackstore.sessions.generate import generate
    from trackstore.tables import batches_table
    from trackstore.tables import metrics_table
    from trackstore.tables import sessions_table
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
    db = open_db(uri)
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
