"""The ``trackstore`` command: thin faces over ingest, metrics, generate.

Each command parses its options, calls one function and formats the
answer; the work is done in ``trackstore.ingest``, ``trackstore.metrics``
and ``trackstore.sessions``.
"""
import os
import sys

import click
import orjson


DB_HELP = ('database URI: file:///path/Data.fs, memory://, zeo://host:port '
           'or postgresql://user@host/db (default: ./var/trackstore.fs)')


def _open_db(uri):
    from trackstore.db import TrackstoreDBError
    from trackstore.db import open_db
    try:
        return open_db(uri)
    except TrackstoreDBError as e:
        raise click.ClickException(str(e))


def _plain_malloc():
    """Run this process again with ``PYTHONMALLOC=malloc``, once.

    A load allocates millions of short-lived small objects per commit
    while a few survive (open sessions, identities). Python's small
    object allocator keeps an arena as long as one object in it lives,
    so with it peak RSS grew with the input (about 60 MB per 100,000
    hits, measured); with the C allocator (and ``malloc_trim`` after each
    commit) it stays flat, at the same speed. The variable only works
    at start-up, hence the re-exec.
    """
    if os.environ.get('PYTHONMALLOC') or os.name != 'posix':
        return
    env = dict(os.environ, PYTHONMALLOC='malloc')
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(sys.executable,
              [sys.executable, '-m', 'trackstore.cli'] + sys.argv[1:], env)


def _timeout(value):
    from trackstore.sessions import parse_duration
    try:
        seconds = parse_duration(value)
    except ValueError as e:
        raise click.BadParameter(str(e))
    if seconds <= 0:
        raise click.BadParameter('the timeout must be positive')
    return seconds


@click.group()
@click.version_option(package_name='trackstore')
def main():
    """trackstore: clickstream tracking on ZODB."""


# -- ingest ---------------------------------------------------------------


class _Bar:
    """A rich progress bar fed by the loader's progress callback: bytes
    of the input (rate and ETA when its size is known) and hits/s."""

    def __init__(self, console, label):
        from rich.progress import BarColumn
        from rich.progress import DownloadColumn
        from rich.progress import Progress
        from rich.progress import TextColumn
        from rich.progress import TimeElapsedColumn
        from rich.progress import TimeRemainingColumn
        self.progress = Progress(
            TextColumn('[bold]{task.description}'),
            BarColumn(),
            DownloadColumn(),
            TextColumn('{task.fields[hits]:>12,} hits'),
            TextColumn('{task.fields[rate]:>9,.0f} hits/s'),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=console, transient=False)
        self.task = self.progress.add_task(
            label, total=None, hits=0, rate=0.0)
        self.started = None

    def __enter__(self):
        import time
        self.started = time.perf_counter()
        self.progress.start()
        return self

    def __exit__(self, *exc):
        self.progress.stop()

    def __call__(self, done, size, report):
        import time
        elapsed = max(time.perf_counter() - self.started, 1e-9)
        self.progress.update(
            self.task, completed=done, total=size, hits=report.read,
            rate=report.read / elapsed)


def run_ingest(source, uri, timeout, batch_size=None, rejects=None,
               bar=None):
    """Load ``source`` into the database at ``uri``; returns the report.
    ``bar`` is a rich Console to draw a progress bar on, or None."""
    from trackstore.ingest import DEFAULT_BATCH_SIZE
    from trackstore.ingest import ingest
    db = _open_db(uri)
    try:
        kw = dict(timeout=timeout,
                  batch_size=batch_size or DEFAULT_BATCH_SIZE,
                  rejects=rejects)
        if bar is None:
            return ingest(source, db, **kw)
        label = 'stdin' if source == '-' else os.path.basename(source)
        with _Bar(bar, label) as progress:
            return ingest(source, db, progress=progress, **kw)
    except ValueError as e:
        raise click.ClickException(str(e))
    finally:
        db.close()


@main.command('ingest')
@click.argument('source', metavar='PATH|-')
@click.option('--db', 'uri', default=None, help=DB_HELP)
@click.option('--timeout', default='30m', show_default=True,
              help='session timeout (30m, 1800s, 1h, ...)')
@click.option('--batch-size', type=click.IntRange(1), default=None,
              help='hits per commit (default 20,000)')
@click.option('--rejects', type=click.Path(dir_okay=False), default=None,
              help='rejects file (default: beside the database)')
@click.option('--json', 'as_json', is_flag=True,
              help='print the report as JSON')
@click.option('--progress/--no-progress', default=None,
              help='progress bar (default: when stderr is a terminal)')
def ingest_command(source, uri, timeout, batch_size, rejects, as_json,
                   progress):
    """Load hits (JSON Lines, a JSON array, gzip of either; '-' reads
    standard input) and store them as sessions."""
    from rich.console import Console
    if source != '-' and not os.path.exists(source):
        raise click.BadParameter('no such file: %s' % source,
                                 param_hint='PATH')
    _plain_malloc()
    console = Console(stderr=True)
    if progress is None:
        progress = console.is_terminal
    report = run_ingest(source, uri, _timeout(timeout), batch_size,
                        rejects, bar=console if progress else None)
    if as_json:
        click.echo(orjson.dumps(report.as_dict()).decode())
    else:
        click.echo(report.summary())


# -- generate --------------------------------------------------------------


@main.command('generate')
@click.option('--customers', type=click.IntRange(1), default=1000,
              show_default=True)
@click.option('--days', type=click.IntRange(1), default=30,
              show_default=True)
@click.option('--seed', type=int, default=0, show_default=True)
@click.option('-o', '--output', default='-', show_default=True,
              help="file to write ('-': standard output; .gz: gzip)")
def generate_command(customers, days, seed, output):
    """Write a realistic hit stream in seed 002's format."""
    from trackstore.sessions.generate import generate
    if output == '-':
        count = generate(customers, days, seed, sys.stdout.buffer)
        sys.stdout.buffer.flush()
        return
    if output.endswith('.gz'):
        import gzip
        with gzip.open(output, 'wb') as f:
            count = generate(customers, days, seed, f)
    else:
        count = generate(customers, days, seed, output)
    click.echo('%d hits written to %s' % (count, output), err=True)


# -- metrics ----------------------------------------------------------------


def read_metrics(uri, include_anonymous=False):
    """The order metrics of the database at ``uri``."""
    from trackstore.db import get_storage
    from trackstore.metrics import compute
    db = _open_db(uri)
    try:
        conn = db.open()
        try:
            return compute(get_storage(conn), include_anonymous)
        finally:
            conn.close()
    finally:
        db.close()


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


@main.command('metrics')
@click.option('--db', 'uri', default=None, help=DB_HELP)
@click.option('--json', 'as_json', is_flag=True, help='print JSON')
@click.option('--include-anonymous', is_flag=True,
              help='count anonymous sessions stitched to a customer')
def metrics_command(uri, as_json, include_anonymous):
    """Sessions and minutes before an order (medians, percentiles)."""
    result = read_metrics(uri, include_anonymous)
    if as_json:
        click.echo(orjson.dumps(
            result, option=orjson.OPT_INDENT_2).decode())
        return
    from rich.console import Console
    Console().print(metrics_table(result))


# -- demo -------------------------------------------------------------------


@main.command('demo')
@click.option('--db', 'uri', default=None, help=DB_HELP)
@click.option('--customers', type=click.IntRange(1), default=3000,
              show_default=True)
@click.option('--days', type=click.IntRange(1), default=7,
              show_default=True)
@click.option('--seed', type=int, default=2, show_default=True)
@click.option('--serve/--no-serve', default=True, show_default=True,
              help='serve the dashboard on the demo data at the end')
@click.option('--port', type=click.IntRange(1, 65535), default=8000,
              show_default=True)
def demo_command(uri, customers, days, seed, serve, port):
    """Generate hits, ingest them into ./var/, show what was stored,
    then serve the dashboard (until Ctrl-C)."""
    from rich.console import Console

    from trackstore import demo
    console = Console()
    demo.run(console, uri, customers, days, seed, run_ingest)
    if serve:
        console.print('the dashboard of the demo data: %s (Ctrl-C stops)'
                      % _address('127.0.0.1', port))
        run_server(uri, '127.0.0.1', port, 1, None)


# -- serve ------------------------------------------------------------------


def _address(host, port):
    from trackstore.web.server import address
    return address(host, port)


def run_server(uri, host, port, workers, token, log_level='info',
               **limits):
    from trackstore.web.server import ServeError
    from trackstore.web.server import serve
    from trackstore.web.settings import Settings
    settings = Settings(db=uri, token=token, **limits)
    try:
        serve(settings, host, port, workers, log_level)
    except ServeError as e:
        raise click.ClickException(str(e))


@main.command('serve')
@click.option('--db', 'uri', default=None, help=DB_HELP)
@click.option('--host', default='127.0.0.1', show_default=True)
@click.option('--port', type=click.IntRange(1, 65535), default=8000,
              show_default=True)
@click.option('--workers', type=click.IntRange(1), default=1,
              show_default=True,
              help='worker processes (more than 1 needs ZEO or PostgreSQL)')
@click.option('--token', envvar='TRACKSTORE_TOKEN', default=None,
              help='require "Authorization: Bearer TOKEN" on every route '
                   'but /health (default: $TRACKSTORE_TOKEN)')
@click.option('--max-past', type=click.IntRange(0), default=12 * 3600,
              show_default=True,
              help='seconds a created_at may lie in the past (else 400)')
@click.option('--max-future', type=click.IntRange(0), default=300,
              show_default=True,
              help='seconds a created_at may lie in the future (else 400)')
@click.option('--max-body', type=click.IntRange(1),
              default=16 * 1024 * 1024, show_default=True,
              help='largest request body in bytes (else 413)')
@click.option('--log-level', default='info', show_default=True,
              type=click.Choice(['critical', 'error', 'warning', 'info',
                                 'debug']))
def serve_command(uri, host, port, workers, token, log_level, **limits):
    """Serve the clickstream API, /metrics/orders, /hits and the
    dashboard (OpenAPI docs at /docs)."""
    click.echo('trackstore serving at %s (docs at %sdocs)' % (
        _address(host, port), _address(host, port)), err=True)
    if not token and host not in ('127.0.0.1', 'localhost', '::1'):
        click.echo('warning: %s is reachable from other machines and no '
                   '--token is set: anyone there can read and write'
                   % host, err=True)
    run_server(uri, host, port, workers, token, log_level, **limits)


if __name__ == '__main__':
    main(prog_name='trackstore')
