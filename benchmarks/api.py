"""The HTTP API under load: trackstore against a plain FastAPI+SQLite app.

Client processes (separate OS processes, one ``httpx.Client`` each) run
the search product's loop for a fixed time: register a session, post 3
events to it, get it back, read ``/metrics/orders``. The same loop runs
in one go against:

- trackstore on a FileStorage with 1 worker (``trackstore serve``);
- trackstore on a ZEO server with 4 workers;
- the app a user would write instead: FastAPI over SQLite (WAL,
  ``synchronous=FULL``, as durable as FileStorage's fsync per commit),
  with the same routes and uniqueness rules (one collecting batch, the
  batch's counter taken in the same transaction, events unique per
  session), with 1 and with 4 workers. Its ``/metrics/orders`` runs the
  window-function query of seed 002 over its visits table per request.

Printed per setup: requests/s, p50 and p99 latency per route and over
all, errors (any answer that is not 2xx, or no answer), and for
trackstore the conflicts retried per 1,000 commits (summed from the
``X-Conflict-Retries`` header).

    .venv/bin/python benchmarks/api.py [--seconds 15] [--clients 4]
        [--only trackstore-file,...] [--metrics-hits 100000]

Then ``/metrics/orders`` alone, read-only, over a store of
``--metrics-hits`` generated hits (``trackstore generate`` and
``trackstore ingest``): the first answer and the cached ones after it.

The databases are made in a temporary directory and removed at the end.
"""
import argparse
import multiprocessing
import os
import platform
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid


HERE = os.path.dirname(os.path.abspath(__file__))
BIN = os.path.dirname(sys.executable)
ROUTES = ('register', 'events', 'get', 'metrics')
SQLITE_ENV = 'TRACKSTORE_BENCH_SQLITE'


# -- the SQLite app a user would write ------------------------------------

SCHEMA = """
CREATE TABLE IF NOT EXISTS batches (
    batch_id INTEGER PRIMARY KEY AUTOINCREMENT,
    status TEXT NOT NULL, session_counter INTEGER NOT NULL,
    created_at INTEGER NOT NULL, release_id TEXT UNIQUE,
    released_at INTEGER);
CREATE UNIQUE INDEX IF NOT EXISTS one_collecting ON batches (status)
    WHERE status = 'collecting';
CREATE TABLE IF NOT EXISTS sessions (
    session_id TEXT PRIMARY KEY, batch_id INTEGER NOT NULL,
    session_number INTEGER NOT NULL, data TEXT NOT NULL,
    UNIQUE (batch_id, session_number));
CREATE TABLE IF NOT EXISTS events (
    session_id TEXT NOT NULL, event_id TEXT NOT NULL, data TEXT NOT NULL,
    created_at INTEGER NOT NULL, PRIMARY KEY (session_id, event_id));
CREATE TABLE IF NOT EXISTS visits (
    customer TEXT NOT NULL, first_ts REAL NOT NULL, last_ts REAL NOT NULL,
    ordered INTEGER NOT NULL);
"""

METRICS_SQL = """
WITH grouped AS (
  SELECT customer, first_ts, last_ts, ordered,
         COALESCE(SUM(ordered) OVER (
           PARTITION BY customer ORDER BY first_ts
           ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING), 0) AS grp
  FROM visits)
SELECT SUM(1 - ordered),
       SUM(CASE WHEN ordered = 0 THEN last_ts - first_ts ELSE 0 END)
FROM grouped GROUP BY customer, grp HAVING MAX(ordered) = 1
"""


def sqlite_connect(path):
    conn = sqlite3.connect(path, timeout=60, isolation_level=None,
                           check_same_thread=False)
    conn.execute('PRAGMA journal_mode=WAL')
    conn.execute('PRAGMA synchronous=FULL')
    return conn


class Connections(threading.local):
    """One SQLite connection per server thread, opened once (as a user
    would keep them; opening one per request was half the time)."""

    def __init__(self, path):
        self.conn = sqlite_connect(path)


def create_sqlite_app():
    """The FastAPI+SQLite app (a uvicorn factory; the path in $%s)."""
    import json

    from fastapi import FastAPI
    from fastapi import HTTPException

    from trackstore.web.schemas import EventsIn
    from trackstore.web.schemas import SessionIn

    path = os.environ[SQLITE_ENV]
    app = FastAPI()
    base = '/api/v1/clickstream'
    local = Connections(path)

    def write(fn):
        conn = local.conn
        conn.execute('BEGIN IMMEDIATE')
        try:
            result = fn(conn)
        except BaseException:
            conn.execute('ROLLBACK')
            raise
        conn.execute('COMMIT')
        return result

    @app.post(base + '/session')
    def register(body: SessionIn):
        data = body.model_dump()
        data['created_at'] = body.created_at or int(time.time())

        def fn(conn):
            row = conn.execute(
                'SELECT batch_id, session_number, data FROM sessions '
                'WHERE session_id = ?', (body.session_id,)).fetchone()
            if row is not None:
                return dict(json.loads(row[2]), batch_id=str(row[0]),
                            session_number=row[1])
            batch = conn.execute(
                "SELECT batch_id FROM batches WHERE status = 'collecting'"
            ).fetchone()
            if batch is None:
                batch = (conn.execute(
                    "INSERT INTO batches (status, session_counter, "
                    "created_at) VALUES ('collecting', 0, ?)",
                    (int(time.time()),)).lastrowid,)
            number = conn.execute(
                'UPDATE batches SET session_counter = session_counter + 1 '
                'WHERE batch_id = ? RETURNING session_counter',
                batch).fetchone()[0]
            conn.execute('INSERT INTO sessions VALUES (?, ?, ?, ?)', (
                body.session_id, batch[0], number, json.dumps(data)))
            return dict(data, batch_id=str(batch[0]), session_number=number)
        return write(fn)

    @app.post(base + '/session/events')
    def events(body: EventsIn):
        def fn(conn):
            if conn.execute('SELECT 1 FROM sessions WHERE session_id = ?',
                            (body.session_id,)).fetchone() is None:
                raise HTTPException(404, 'unknown session')
            stored, skipped = [], []
            for e in body.events:
                created = e.created_at or int(time.time())
                cur = conn.execute(
                    'INSERT OR IGNORE INTO events VALUES (?, ?, ?, ?)',
                    (body.session_id, e.event_id,
                     json.dumps(e.model_dump()), created))
                (stored if cur.rowcount else skipped).append(e.event_id)
            return {'session_id': body.session_id, 'stored': stored,
                    'skipped': skipped}
        return write(fn)

    @app.get(base + '/session')
    def get(session_id: str):
        conn = local.conn
        row = conn.execute(
            'SELECT batch_id, session_number, data FROM sessions '
            'WHERE session_id = ?', (session_id,)).fetchone()
        if row is None:
            raise HTTPException(404, 'unknown session')
        events = [dict(json.loads(d), session_id=session_id)
                  for (d,) in conn.execute(
                      'SELECT data FROM events WHERE session_id = ? '
                      'ORDER BY created_at LIMIT 100', (session_id,))]
        return dict(json.loads(row[2]), batch_id=str(row[0]),
                    session_number=row[1], events=events)

    @app.get('/metrics/orders')
    def metrics():
        rows = local.conn.execute(METRICS_SQL).fetchall()
        visits = sorted(r[0] for r in rows)
        minutes = sorted(r[1] / 60.0 for r in rows)
        return {
            'median_visits_before_order':
                statistics.median(visits) if visits else None,
            'median_session_duration_minutes_before_order':
                statistics.median(minutes) if minutes else None,
            'ordering_sessions': len(rows)}

    return app


create_sqlite_app.__doc__ %= SQLITE_ENV


# -- servers ------------------------------------------------------------------


def free_port():
    from trackstore.tests.layers import free_port
    return free_port()


class Server:
    """A server process on a free port, waited for until it answers."""

    def __init__(self, command, port, env=None, log=None):
        self.command = command
        self.port = port
        self.url = 'http://127.0.0.1:%d' % port
        self.env = dict(os.environ, **(env or {}))
        self.env.pop('TRACKSTORE_TOKEN', None)
        self.log = log or os.devnull
        self.process = None

    def start(self, probe='/metrics/orders', timeout=90):
        import httpx
        with open(self.log, 'ab') as log:
            self.process = subprocess.Popen(
                self.command, env=self.env, stdout=log,
                stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError('server exited: see %s' % self.log)
            try:
                if httpx.get(self.url + probe, timeout=5).status_code \
                        == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        self.stop()
        raise RuntimeError('server did not start: see %s' % self.log)

    def stop(self):
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def trackstore_server(uri, workers, log):
    port = free_port()
    return Server([os.path.join(BIN, 'trackstore'), 'serve', '--db', uri,
                   '--port', str(port), '--workers', str(workers),
                   '--log-level', 'warning'], port, log=log)


def sqlite_server(path, workers, log):
    conn = sqlite_connect(path)
    conn.executescript(SCHEMA)
    conn.close()
    port = free_port()
    return Server([sys.executable, '-m', 'uvicorn', '--factory',
                   '--app-dir', HERE, 'api:create_sqlite_app',
                   '--port', str(port), '--workers', str(workers),
                   '--log-level', 'warning', '--no-access-log'], port,
                  env={SQLITE_ENV: path}, log=log)


# -- clients ---------------------------------------------------------------


def client_loop(url, seconds, tag, queue):
    """One client process: the loop until time is up; puts its
    latencies per route, errors, conflicts and write count."""
    import httpx
    base = url + '/api/v1/clickstream'
    latencies = {route: [] for route in ROUTES}
    errors = conflicts = writes = 0
    n = 0
    with httpx.Client(timeout=60) as http:
        def call(route, method, url, **kw):
            nonlocal errors, conflicts, writes
            started = time.perf_counter()
            try:
                r = http.request(method, url, **kw)
            except httpx.HTTPError:
                errors += 1
                return
            latencies[route].append(time.perf_counter() - started)
            if not r.is_success:
                errors += 1
            if 'x-conflict-retries' in r.headers:
                conflicts += int(r.headers['x-conflict-retries'])
                writes += 1

        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            n += 1
            sid = '%s-%d' % (tag, n)
            call('register', 'POST', base + '/session', json={
                'session_id': sid, 'search_query': 'red lamp %d' % n,
                'search_results': [{'object_id': 'p%d' % i, 'rank': i}
                                   for i in range(5)],
                'user_id': 'u%d' % (n % 100)})
            call('events', 'POST', base + '/session/events', json={
                'session_id': sid, 'events': [
                    {'event_id': 'e%d' % i, 'object_id': 'p%d' % i}
                    for i in range(3)]})
            call('get', 'GET', base + '/session',
                 params={'session_id': sid})
            call('metrics', 'GET', url + '/metrics/orders')
    queue.put((latencies, errors, conflicts, writes))


def drive(url, clients, seconds):
    """Run ``clients`` client processes against ``url``; the summary."""
    ctx = multiprocessing.get_context('spawn')
    queue = ctx.Queue()
    tag = uuid.uuid4().hex[:8]
    procs = [ctx.Process(target=client_loop,
                         args=(url, seconds, '%s-%d' % (tag, i), queue))
             for i in range(clients)]
    started = time.perf_counter()
    for p in procs:
        p.start()
    results = [queue.get() for p in procs]
    elapsed = time.perf_counter() - started
    for p in procs:
        p.join()
    latencies = {route: [] for route in ROUTES}
    for lat, *_ in results:
        for route in ROUTES:
            latencies[route].extend(lat[route])
    total = sum(len(v) for v in latencies.values())
    return {
        'requests': total, 'seconds': elapsed,
        'rps': total / elapsed, 'latencies': latencies,
        'errors': sum(r[1] for r in results),
        'conflicts': sum(r[2] for r in results),
        'writes': sum(r[3] for r in results),
    }


def pct(values, q):
    if not values:
        return float('nan')
    values = sorted(values)
    return values[min(len(values) - 1, int(round(q * (len(values) - 1))))]


# -- the run ---------------------------------------------------------------


SETUPS = ('trackstore-file', 'trackstore-zeo', 'sqlite-1', 'sqlite-4')


def start(name, tmp):
    log = os.path.join(tmp, name + '.log')
    if name == 'trackstore-file':
        return None, trackstore_server(
            'file://%s/file.fs' % tmp, 1, log).start(), 1
    if name == 'trackstore-zeo':
        from trackstore.tests.layers import ZEOServer
        zeo = ZEOServer(os.path.join(tmp, 'zeo.fs')).start()
        return zeo, trackstore_server(zeo.uri, 4, log).start(), 4
    workers = int(name.split('-')[1])
    path = os.path.join(tmp, '%s.sqlite' % name)
    return None, sqlite_server(path, workers, log).start(), workers


def summary_table(results):
    from rich.table import Table
    table = Table(title='register + 3 events + get + /metrics/orders, '
                  'all requests')
    for col in ('setup', 'workers', 'requests', 'requests/s', 'p50 ms',
                'p99 ms', 'errors', 'conflicts/1k commits'):
        table.add_column(col, justify='left' if col == 'setup'
                         else 'right')
    for name, r in results.items():
        every = [x for v in r['latencies'].values() for x in v]
        conflicts = ('%.0f' % (1000.0 * r['conflicts'] / r['writes'])
                     if r['writes'] else '-')
        table.add_row(
            name, str(r['workers']), str(r['requests']),
            '%.0f' % r['rps'], '%.1f' % (1000 * pct(every, 0.5)),
            '%.1f' % (1000 * pct(every, 0.99)), str(r['errors']),
            conflicts)
    return table


def routes_table(results):
    from rich.table import Table
    table = Table(title='per route: p50 / p99 ms')
    table.add_column('setup')
    for route in ROUTES:
        table.add_column(route, justify='right')
    for name, r in results.items():
        table.add_row(name, *['%.1f / %.1f' % (
            1000 * pct(r['latencies'][route], 0.5),
            1000 * pct(r['latencies'][route], 0.99)) for route in ROUTES])
    return table


def metrics_loop(url, seconds, queue):
    """A client that only reads /metrics/orders (nothing is written)."""
    import httpx
    latencies, errors = [], 0
    with httpx.Client(timeout=60) as http:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            started = time.perf_counter()
            r = http.get(url + '/metrics/orders')
            latencies.append(time.perf_counter() - started)
            errors += not r.is_success
    queue.put((latencies, errors))


def metrics_over_hits(hits, clients, seconds, tmp, console):
    """``/metrics/orders`` over a store of ``hits`` generated hits: the
    first answer (computed; the server starts computing at start-up)
    and then read-only clients (cached until the next commit)."""
    import httpx
    trackstore = os.path.join(BIN, 'trackstore')
    path = os.path.join(tmp, 'hits.jsonl')
    customers = max(1, hits // 176)       # about 5.9 hits a customer-day
    started = time.perf_counter()
    subprocess.run([trackstore, 'generate', '--customers', str(customers),
                    '--days', '30', '-o', path], check=True,
                   capture_output=True)
    uri = 'file://%s/metrics.fs' % tmp
    load = subprocess.run([trackstore, 'ingest', path, '--db', uri,
                           '--json'], check=True, capture_output=True)
    import json
    report = json.loads(load.stdout)
    console.print('metrics store: %d hits stored (%d sessions) in %.0f s'
                  % (report['stored'], report['sessions'],
                     time.perf_counter() - started))
    server = trackstore_server(uri, 1, os.path.join(tmp, 'metrics.log'))
    server.start(probe='/health')
    try:
        started = time.perf_counter()
        answer = httpx.get(server.url + '/metrics/orders', timeout=600)
        first = time.perf_counter() - started
        ctx = multiprocessing.get_context('spawn')
        queue = ctx.Queue()
        procs = [ctx.Process(target=metrics_loop,
                             args=(server.url, seconds, queue))
                 for i in range(clients)]
        for p in procs:
            p.start()
        results = [queue.get() for p in procs]
        for p in procs:
            p.join()
    finally:
        server.stop()
    latencies = [x for r in results for x in r[0]]
    console.print(
        '/metrics/orders over %d hits (%d ordering sessions): first '
        'answer %.0f ms; then %d requests from %d clients: p50 %.2f ms, '
        'p99 %.2f ms, %.0f requests/s, %d errors' % (
            report['stored'], answer.json()['ordering_sessions'],
            1000 * first, len(latencies), clients,
            1000 * pct(latencies, 0.5), 1000 * pct(latencies, 0.99),
            len(latencies) / seconds, sum(r[1] for r in results)))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--seconds', type=float, default=15,
                        help='seconds of load per setup')
    parser.add_argument('--clients', type=int, default=4,
                        help='client processes')
    parser.add_argument('--only', default=','.join(SETUPS))
    parser.add_argument('--metrics-hits', type=int, default=100000,
                        help='hits in the store that /metrics/orders is '
                             'read from (0: skip)')
    args = parser.parse_args()
    from rich.console import Console
    console = Console(width=110)
    console.print('%s, Python %s, %d cores; %d client processes, %g s '
                  'per setup' % (platform.platform(), platform
                                 .python_version(), os.cpu_count(),
                                 args.clients, args.seconds))
    tmp = tempfile.mkdtemp(prefix='trackstore-bench-api-')
    results = {}
    try:
        for name in filter(None, args.only.split(',')):
            zeo, server, workers = start(name, tmp)
            try:
                results[name] = dict(drive(server.url, args.clients,
                                           args.seconds), workers=workers)
            finally:
                server.stop()
                if zeo is not None:
                    zeo.stop()
        if args.metrics_hits:
            metrics_over_hits(args.metrics_hits, args.clients,
                              args.seconds, tmp, console)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    if results:
        console.print(summary_table(results))
        console.print(routes_table(results))
    for mine, theirs in (('trackstore-file', 'sqlite-1'),
                         ('trackstore-zeo', 'sqlite-1'),
                         ('trackstore-zeo', 'sqlite-4')):
        if mine in results and theirs in results:
            console.print('%s / %s requests/s: %.2fx' % (
                mine, theirs, results[mine]['rps'] / results[theirs]['rps']))


if __name__ == '__main__':
    main()
