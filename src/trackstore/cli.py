"""The ``trackstore`` command: thin faces over ingest, metrics, generate.

Each command parses its options, calls one function and formats the
answer; the work is done in ``trackstore.ingest``, ``trackstore.metrics``
and ``trackstore.sessions``.
"""
import contextlib
import os
import sys

import click
import orjson


# generate's seeds: each has its own range of 64-bit hit ids
MAX_SEED = 9223372035
DB_HELP = ('the database: a file path (./Data.fs), file:///path/Data.fs, '
           'zeo://host:port, postgresql://user@host/db or memory:// '
           '(default: ./var/trackstore.fs)')


def _open_db(uri, create=True):
    """Open the database of ``--db``; ``create=False`` for commands that
    only read. Any failure is one line that names the option, and exit
    status 1."""
    from trackstore.db import TrackstoreDBError
    from trackstore.db import open_db

    with _quiet_storages():
        try:
            return open_db(uri, create=create)
        except TrackstoreDBError as e:
            raise click.ClickException('--db: %s' % (e,))


@contextlib.contextmanager
def _quiet_storages():
    """ZEO, RelStorage and the transaction package log a lost server
    themselves (with tracebacks, through logging's last-resort handler);
    our message says it once, so keep them quiet meanwhile."""
    import logging
    loggers = [logging.getLogger(name)
               for name in ('ZEO', 'relstorage', 'txn')]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.CRITICAL + 1)
    try:
        yield
    finally:
        for logger, level in zip(loggers, levels):
            logger.setLevel(level)


def _timeout(value):
    from trackstore.sessions import parse_duration
    try:
        seconds = parse_duration(value)
    except ValueError as e:
        raise click.BadParameter(str(e), param_hint="'--timeout'")
    if seconds <= 0:
        raise click.BadParameter('the timeout must be positive',
                                 param_hint="'--timeout'")
    return seconds


def _bytes(value):
    """A size like ``256M`` in bytes (for ``--memory``)."""
    text = value.strip().upper().rstrip('B')
    scale = {'K': 1 << 10, 'M': 1 << 20, 'G': 1 << 30}.get(text[-1:], 1)
    number = text[:-1] if scale > 1 else text
    try:
        result = int(float(number) * scale)
    except ValueError:
        result = 0
    if result <= 0:
        raise click.BadParameter(
            'expected a size like 256M, not %r' % value,
            param_hint='--memory')
    return result


def _duration(value, option):
    from trackstore.sessions import parse_duration
    try:
        return parse_duration(value)
    except ValueError as e:
        raise click.BadParameter(str(e), param_hint=option)


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
               bar=None, **options):
    """Load ``source`` into the database at ``uri``; returns the report.
    ``bar`` is a rich Console to draw a progress bar on, or None;
    ``options`` go to ``trackstore.ingest.ingest``."""
    from trackstore.db import DatabaseGone
    from trackstore.ingest import DEFAULT_BATCH_SIZE
    from trackstore.ingest import ingest
    db = _open_db(uri)
    try:
        kw = dict(timeout=timeout,
                  batch_size=batch_size or DEFAULT_BATCH_SIZE,
                  rejects=rejects, **options)
        with _quiet_storages():
            if bar is None:
                return ingest(source, db, **kw)
            label = 'stdin' if source == '-' else os.path.basename(source)
            with _Bar(bar, label) as progress:
                return ingest(source, db, progress=progress, **kw)
    except DatabaseGone as e:
        raise click.ClickException(
            '%s; run the same command again when it is back: what was '
            'stored stays, the rest is loaded' % (e,))
    except ValueError as e:
        raise click.ClickException(str(e))
    finally:
        db.close()


# -- ingest: what went wrong with the input, in one line -----------------


class InputFailed(click.ClickException):
    """The input broke off: what came before it is loaded (exit 3, so
    scripts can tell it from an input that gave nothing, exit 1)."""
    exit_code = 3


class BadInput(click.ClickException):
    """PATH cannot be read at all: nothing started (exit 2, as for
    other bad arguments), in one line without click's usage text."""
    exit_code = 2


def _check_input(source):
    """A one-line error, before anything starts, for an input that
    cannot be read (missing, a directory, no permission)."""
    from trackstore.sessions.hits import InputError
    from trackstore.sessions.hits import check_source
    try:
        check_source(source)
    except InputError as e:
        raise BadInput(str(e))


def _check_load(source, report):
    """A one-line error for a load that found no valid hit or whose
    input broke off (the report's ``broken``); None when it went well."""
    name = 'standard input' if source == '-' else source
    broken = getattr(report, 'broken', None)
    valid = report.read - report.rejected
    if not valid:
        if broken is not None:
            why = '%s; no valid hit before it' % (broken,)
        elif report.read:
            why = 'no valid hit: %d records, all rejected (see %s)' % (
                report.read, report.rejects_path)
        else:
            why = 'no hits: the input is empty'
        raise click.ClickException('%s: %s' % (name, why))
    if broken is not None:
        raise InputFailed('%s: %s; what came before it is loaded (%d '
                          'records read)' % (name, broken, report.read))


def _reader_options(format, min_time, max_time, max_hit_size):
    """``run_ingest``'s ``reader`` from the command's options: only
    what differs from the defaults."""
    from trackstore.sessions.hits import DEFAULT_MAX_HIT_BYTES
    from trackstore.sessions.hits import DEFAULT_MIN_TIME
    from trackstore.sessions.hits import Limits
    reader = {}
    if format != 'auto':
        reader['format'] = format
    if min_time or max_time or max_hit_size:
        try:
            reader['limits'] = Limits(
                min_time=min_time or DEFAULT_MIN_TIME,
                max_time=max_time or None,
                max_bytes=max_hit_size or DEFAULT_MAX_HIT_BYTES)
        except ValueError as e:
            raise click.BadParameter(str(e))
    return reader


class _LargeRecords:
    """ZODB warns with a paragraph for every record of 16 MiB or more;
    one line at the end says how many there were instead (hits are
    capped by ``--max-hit-size``, so only a very long session makes
    one). Other warnings pass through."""

    def __init__(self):
        import warnings
        self._catching = warnings.catch_warnings(record=True)
        self.count = 0

    def __enter__(self):
        self._caught = self._catching.__enter__()
        return self

    def __exit__(self, *exc):
        import warnings
        self._catching.__exit__(*exc)
        for w in self._caught:
            if "saving is large" in str(w.message):
                self.count += 1
            else:
                warnings.showwarning(w.message, w.category, w.filename,
                                     w.lineno)
        if self.count:
            click.echo('note: %d records were larger than ZODB\'s '
                       'large-record size' % self.count, err=True)


@main.command('ingest')
@click.argument('source', metavar='PATH|-')
@click.option('--db', 'uri', default=None, help=DB_HELP)
@click.option('--timeout', default='30m', show_default=True,
              help='session timeout (30m, 1800s, 1h, ...)')
@click.option('--batch-size', type=click.IntRange(1), default=None,
              help='hits per commit, rounded up to whole clients '
                   '(default 50,000)')
@click.option('--rejects', type=click.Path(dir_okay=False), default=None,
              help='rejects file (default: beside the database)')
@click.option('--memory', default='192M', show_default=True,
              help='hits held in memory before sorted runs spill to disk '
                   '(bytes; K, M, G)')
@click.option('--follow', is_flag=True,
              help='a live stream: sessionize as hits come instead of '
                   'sorting the whole input first')
@click.option('--lateness', default=None,
              help='with --follow: how late a hit may come before its '
                   'session is handed on (60s, 5m, ...)')
@click.option('--stream', default=None, metavar='NAME',
              help='with --follow: the name its open sessions are kept '
                   'under, to resume after a restart (default: the '
                   "source's path; give two stdin streams two names)")
@click.option('--wait', default='60s', show_default=True,
              help='how long to wait for a database server that went '
                   'away before giving up')
@click.option('--json', 'as_json', is_flag=True,
              help='print the report as JSON')
@click.option('--progress/--no-progress', default=None,
              help='progress bar (default: when stderr is a terminal)')
@click.option('--format', 'format', default='auto', show_default=True,
              type=click.Choice(['auto', 'jsonl', 'array']),
              help='JSON Lines, one JSON array, or tell by the content')
@click.option('--min-time', default=None,
              help='reject hits before this time (default 1990-01-01)')
@click.option('--max-time', default=None,
              help='reject hits after this time (default: now + 1 day)')
@click.option('--max-hit-size', type=click.IntRange(1), default=None,
              help='reject hits longer than this many bytes (1 MiB)')
def ingest_command(source, uri, timeout, batch_size, rejects, memory,
                   follow, lateness, stream, wait, as_json, progress,
                   format, min_time, max_time, max_hit_size):
    """Load hits (JSON Lines, a JSON array, gzip of either; '-' reads
    standard input) and store them as sessions.

    A file is a batch: its hits are sorted by client and time (in
    bounded memory) and stored by the 30-minute rule against what the
    database holds, so any order of lines and any split into loads end
    in the same sessions."""
    from rich.console import Console
    _check_input(source)
    reader = _reader_options(format, min_time, max_time, max_hit_size)
    console = Console(stderr=True)
    if progress is None:
        progress = console.is_terminal
    with _LargeRecords():
        report = run_ingest(
            source, uri, _timeout(timeout), batch_size, rejects,
            bar=console if progress else None, memory=_bytes(memory),
            follow=follow, lateness=None if lateness is None else _duration(
                lateness, '--lateness'), stream=stream,
            wait=_duration(wait, '--wait'), **reader)
    if as_json:
        click.echo(orjson.dumps(report.as_dict()).decode())
    else:
        click.echo(report.summary())
    _check_load(source, report)


# -- generate --------------------------------------------------------------


@main.command('generate')
@click.option('--customers', type=click.IntRange(1), default=1000,
              show_default=True)
@click.option('--days', type=click.IntRange(1), default=30,
              show_default=True)
@click.option('--seed', type=click.IntRange(-MAX_SEED, MAX_SEED), default=0,
              show_default=True, help='seeds give disjoint hit ids')
@click.option('-o', '--output', default='-', show_default=True,
              help="file to write ('-': standard output; .gz: gzip)")
def generate_command(customers, days, seed, output):
    """Write a realistic stream of JSON hits (JSON Lines)."""
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


@contextlib.contextmanager
def existing_storage(uri):
    """The database of ``--db`` and its storage, read in a connection
    that is closed afterwards; ``(db, storage)``. The database must
    exist: a read, erasure or check given a wrong ``--db`` says so in
    one line instead of creating an empty one."""
    from trackstore.db import TrackstoreDBError
    from trackstore.db import get_storage
    db = _open_db(uri, create=False)
    try:
        conn = db.open()
        try:
            try:
                storage = get_storage(conn, create=False)
            except TrackstoreDBError as e:
                raise click.ClickException('--db: %s' % (e,))
            yield db, storage
        finally:
            conn.close()
    finally:
        db.close()


# -- metrics ----------------------------------------------------------------


def read_metrics(uri, include_anonymous=False):
    """The order metrics of the database at ``uri``, which must exist
    (a read creates nothing)."""
    from trackstore.metrics import compute
    with existing_storage(uri) as (db, storage):
        return compute(storage, include_anonymous)


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

    from trackstore.tables import metrics_table
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
    demo.run(console, uri, customers, days, seed, run_ingest, _open_db)
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


# -- erasure and retention ---------------------------------------------------


def _time_option(value, option):
    from trackstore.retention import parse_time
    if value is None:
        return None
    try:
        return parse_time(value)
    except ValueError as e:
        raise click.BadParameter(str(e), param_hint=option)


def write_storage(uri, fn, *args):
    """Run ``fn(storage, *args)`` in one transaction (retried on
    conflicts) on the existing database at ``uri``; return its result.
    """
    from trackstore.db import transact
    with existing_storage(uri) as (db, storage):
        return transact(db, fn, *args)


def _echo_report(report, as_json):
    if as_json:
        click.echo(orjson.dumps(report.as_dict()).decode())
    else:
        click.echo(report.summary())


@main.command('erase-user')
@click.argument('user_id')
@click.option('--db', 'uri', default=None, help=DB_HELP)
@click.option('--after', default=None,
              help='erase only what started at or after this UTC time')
@click.option('--before', default=None,
              help='erase only what started before this UTC time')
@click.option('--json', 'as_json', is_flag=True, help='print JSON')
def erase_user_command(user_id, uri, after, before, as_json):
    """Erase a user: every session (with its hits), anonymous visit
    stitched to them and track of theirs, from every index and batch.
    Their hits loaded again are duplicates and do not come back. Run
    'trackstore pack' afterwards to remove them from the file too."""
    from trackstore.erasure import erase_user
    after = _time_option(after, '--after')
    before = _time_option(before, '--before')
    if after is not None and before is not None and after >= before:
        raise click.BadParameter('must be later than --after',
                                 param_hint='--before')
    _echo_report(write_storage(uri, erase_user, user_id, after, before),
                 as_json)


def _apply_prune(storage, before, keep, each_load):
    from trackstore.retention import prune
    from trackstore.retention import set_retention
    if each_load:
        set_retention(storage, keep)
    return prune(storage, before)


@main.command('prune')
@click.option('--db', 'uri', default=None, help=DB_HELP)
@click.option('--before', default=None,
              help='prune what is older than this UTC date or time')
@click.option('--keep', default=None,
              help='prune what is older than this long ago (90d, 12h)')
@click.option('--each-load', is_flag=True,
              help='also keep the --keep setting: every load prunes')
@click.option('--off', is_flag=True,
              help='drop the setting of --each-load, prune nothing')
@click.option('--json', 'as_json', is_flag=True, help='print JSON')
def prune_command(uri, before, keep, each_load, off, as_json):
    """Drop archived batches whose sessions all started before the
    date, and finished runs that ended before it, with their sessions
    and tracks. Run 'trackstore pack' afterwards to shrink the file."""
    import time

    from trackstore.retention import set_retention
    if off:
        if before or keep or each_load:
            raise click.UsageError('--off takes no other option')
        write_storage(uri, set_retention, None)
        click.echo('retention setting dropped: loads prune nothing')
        return
    if (before is None) == (keep is None):
        raise click.UsageError('give either --before or --keep')
    if each_load and keep is None:
        raise click.UsageError('--each-load needs --keep')
    seconds = None if keep is None else _duration(keep, '--keep')
    if seconds is not None and seconds <= 0:
        raise click.BadParameter('must be positive', param_hint='--keep')
    when = _time_option(before, '--before') if before is not None \
        else time.time() - seconds
    _echo_report(write_storage(uri, _apply_prune, when, seconds,
                               each_load), as_json)


@main.command('pack')
@click.option('--db', 'uri', default=None, help=DB_HELP)
@click.option('--keep-old', is_flag=True,
              help="keep a file storage's previous file (<name>.old), "
                   'which still holds what was erased or pruned')
def pack_command(uri, keep_old):
    """Pack the storage to now: what was erased, pruned or replaced
    leaves the storage (and, for a file, the file)."""
    from trackstore.retention import pack
    db = _open_db(uri, create=False)
    try:
        with _quiet_storages():
            sizes = pack(db, keep_old)
    finally:
        db.close()
    if sizes is None:
        click.echo('packed')
    else:
        click.echo('packed: %d bytes -> %d bytes' % sizes)


# -- check ----------------------------------------------------------------

def run_check(uri):
    """The ``StoreCheck`` of the database at ``uri``, which must exist."""
    from trackstore.check import check_store
    with existing_storage(uri) as (db, storage):
        return check_store(storage)


@main.command('check')
@click.option('--db', 'uri', default=None, help=DB_HELP)
@click.option('--json', 'as_json', is_flag=True, help='print JSON')
def check_command(uri, as_json):
    """Check the whole store: indexes, batches, sessions and hits agree.
    Each problem is printed; the exit status is 1 when there are any."""
    result = run_check(uri)
    if as_json:
        click.echo(orjson.dumps(
            result.as_dict(), option=orjson.OPT_INDENT_2).decode())
    else:
        for problem in result.problems:
            click.echo(problem)
        click.echo(result.summary())
    sys.exit(0 if result.ok else 1)


# -- privacy settings ---------------------------------------------------------


def _set_privacy(storage, ip, bots):
    from trackstore.privacy import privacy_settings
    settings = privacy_settings(storage)
    settings.set(ip=ip, bots=bots)
    return settings.as_dict()


def _show_privacy(uri):
    from trackstore.privacy import privacy_settings
    with existing_storage(uri) as (db, storage):
        return privacy_settings(storage, create=False).as_dict()


@main.command('config')
@click.option('--db', 'uri', default=None, help=DB_HELP)
@click.option('--ip', type=click.Choice(['keep', 'truncate', 'hash']),
              default=None,
              help='what later loads keep of IP addresses: as they come, '
                   'truncated (IPv4 /24, IPv6 /48) or a keyed hash')
@click.option('--bots', type=click.Choice(['drop', 'keep']), default=None,
              help='leave hits of known bots and crawlers out of '
                   'sessions (counted), or keep them')
@click.option('--json', 'as_json', is_flag=True, help='print JSON')
def config_command(uri, ip, bots, as_json):
    """Show the database's privacy settings, or change them (for the
    loads that follow). Setting them creates the database, so they can
    be set before the first load."""
    from trackstore.db import transact
    if ip is None and bots is None:
        settings = _show_privacy(uri)
    else:
        db = _open_db(uri)
        try:
            with _quiet_storages():
                settings = transact(db, _set_privacy, ip, bots)
        finally:
            db.close()
    if as_json:
        click.echo(orjson.dumps(settings).decode())
    else:
        click.echo('ip: %(ip)s\nbots: %(bots)s' % settings)


# -- export -----------------------------------------------------------------


class _SessionBar:
    """A rich progress bar of the sessions an export went through."""

    def __init__(self, console):
        from rich.progress import Progress
        self.progress = Progress(console=console, transient=False)
        self.task = self.progress.add_task('export', total=None)

    def __enter__(self):
        self.progress.start()
        return self

    def __exit__(self, *exc):
        self.progress.stop()

    def __call__(self, done, total):
        if done == total or not done % 500:
            self.progress.update(self.task, completed=done, total=total)


def run_export(uri, output, format, since=None, until=None, bar=None):
    """Export the database at ``uri`` (which must exist) to ``output``
    (a path, or '-' for standard output); ``bar`` is a rich Console to
    draw a progress bar on, or None. Returns the ``ExportReport``."""
    from trackstore.export import export
    out = sys.stdout.buffer if output == '-' else output
    with existing_storage(uri) as (db, storage):
        try:
            if bar is None:
                return export(storage, out, format, since, until)
            with _SessionBar(bar) as progress:
                return export(storage, out, format, since, until, progress)
        except BrokenPipeError:
            # The reader of standard output went away (``| head``), as
            # it may: nothing to say, and nothing more to flush there.
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            sys.exit(1)
        except OSError as e:
            # A directory that is not there, a full disk: one line, and
            # no half-written file (export writes to a .part first).
            raise click.ClickException('--output: %s' % (e,))


@main.command('export')
@click.option('--db', 'uri', default=None, help=DB_HELP)
@click.option('--format', 'format', default=None,
              type=click.Choice(['jsonl', 'csv', 'parquet']),
              help="the output's format (default: by its name, else jsonl)")
@click.option('-o', '--output', default='-', show_default=True,
              help="where to write ('-': standard output)")
@click.option('--since', default=None,
              help='sessions that started at or after this UTC time')
@click.option('--until', default=None,
              help='sessions that started before this UTC time')
@click.option('--quiet', is_flag=True, help='no progress bar, no summary')
def export_command(uri, format, output, since, until, quiet):
    """Export sessions and their hits, one row per hit with its
    session's fields. The JSON Lines export loads into another database
    with 'trackstore ingest' and gives the same sessions."""
    from rich.console import Console

    from trackstore.export import format_of
    format = format or format_of(output) or 'jsonl'
    if format == 'parquet' and output == '-':
        raise click.UsageError('parquet needs a file: give --output PATH')
    since = _time_option(since, '--since')
    until = _time_option(until, '--until')
    if since is not None and until is not None and since >= until:
        raise click.BadParameter('must be later than --since',
                                 param_hint='--until')
    console = Console(stderr=True)
    bar = console if console.is_terminal and not quiet else None
    report = run_export(uri, output, format, since, until, bar)
    if not quiet:
        click.echo(report.summary(), err=True)


if __name__ == '__main__':
    main(prog_name='trackstore')
