"""Concurrent writer processes on ZEO and on PostgreSQL, in one run.

For 1, 2 and 4 writer processes (each its own OS process with its own
connection, started together) on a FileStorage behind a ZEO server and
on RelStorage/PostgreSQL (history-free), two workloads:

- small: one track per transaction (``saveUserTrack``), the web request
  case;
- bulk: 1,000 tracks per transaction (``saveTracks``), a bulk load.

It prints total tracks/s (and the ratio to one writer), conflicts per
1,000 commits and the p50/p99 latency of ``commit()``. The bar (issue 4):
with 4 writers fewer than 10 conflicts per 1,000 commits in both
workloads, throughput never below one writer's on ZEO and at least 1.5
times one writer's on PostgreSQL.

    .venv/bin/python benchmarks/concurrency.py [--small 400] [--bulk 20]
        [--repeat 3]

The ZEO server (a FileStorage) and a fresh PostgreSQL database are made
here and removed at the end. Writers are ``trackstore.tests.mpworker``
processes; each first commits one warm-up transaction (claiming its
partition of the storage, starting the tasks' runs), then all start
together and the clock runs. The warm-up's conflicts are shown apart
("startup conflicts"): they happen once per writer, not per commit.
"""
import argparse
import os
import platform
import shutil
import statistics
import tempfile
import uuid

from rich.console import Console
from rich.table import Table

from trackstore.tests.layers import PGDatabase
from trackstore.tests.layers import ZEOServer
from trackstore.tests.mpworker import run_writers


BULK_ROWS = 1000


def percentile(values, q):
    if not values:
        return 0.0
    values = sorted(values)
    k = min(len(values) - 1, max(0, int(round(q * (len(values) - 1)))))
    return values[k]


def run_once(uri, mode, writers, count, per_commit):
    """One run into a new storage: tracks/s, conflicts, latencies."""
    name = 'bench-%s' % uuid.uuid4().hex[:8]
    results = run_writers(uri, name, mode, count, writers,
                          per_commit=per_commit, warmup=True)
    tracks = sum(len(r['ids']) for r in results)
    assert tracks == writers * count, (tracks, writers * count)
    assert len({i for r in results for i in r['ids']}) == tracks
    # The writers start together; the slowest one ends the run.
    return {
        'rate': tracks / max(r['seconds'] for r in results),
        'latencies': [x for r in results for x in r['latencies']],
        'conflicts': sum(r['conflicts'] for r in results),
        'startup': sum(r['startup_conflicts'] for r in results),
    }


def measure(uri, mode, counts, count, per_commit, repeat):
    """Run the workload ``repeat`` rounds; each round runs every writer
    count once, so that load from elsewhere on the machine falls on all
    of them alike. Per writer count: the median tracks/s, the median of
    the per-round ratios to one writer, all conflicts and latencies."""
    runs = {n: [] for n in counts}
    for _ in range(repeat):
        for n in counts:
            runs[n].append(run_once(uri, mode, n, count, per_commit))
    out = {}
    for n in counts:
        latencies = [x for r in runs[n] for x in r['latencies']]
        conflicts = sum(r['conflicts'] for r in runs[n])
        out[n] = {
            'tracks_s': statistics.median(r['rate'] for r in runs[n]),
            'ratio': statistics.median(
                r['rate'] / one['rate']
                for r, one in zip(runs[n], runs[counts[0]])),
            'conflicts_per_1000': 1000.0 * conflicts / max(
                len(latencies), 1),
            'conflicts': conflicts, 'commits': len(latencies),
            'startup': sum(r['startup'] for r in runs[n]),
            'p50_ms': 1000 * statistics.median(latencies),
            'p99_ms': 1000 * percentile(latencies, 0.99),
        }
    return out


def machine():
    model = ''
    try:
        with open('/proc/cpuinfo') as f:
            for line in f:
                if line.startswith('model name'):
                    model = line.split(':', 1)[1].strip()
                    break
    except OSError:
        pass
    return '%s, %d cores, Python %s' % (
        model or platform.machine(), os.cpu_count(),
        platform.python_version())


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--small', type=int, default=400,
                        help='transactions of one track per writer')
    parser.add_argument('--bulk', type=int, default=20,
                        help='transactions of 1,000 tracks per writer')
    parser.add_argument('--writers', default='1,2,4')
    parser.add_argument('--repeat', type=int, default=3,
                        help='rounds; tracks/s and ratios are medians')
    parser.add_argument('--storages', default='zeo,pg,pgasync',
                        help='of zeo, pg, pgasync (synchronous_commit off)')
    args = parser.parse_args()
    counts = [int(n) for n in args.writers.split(',')]
    wanted = set(args.storages.split(','))
    console = Console(width=150)
    console.print('machine: %s; load average before: %.1f'
                  % (machine(), os.getloadavg()[0]))
    directory = tempfile.mkdtemp(prefix='trackstore-bench-')
    servers = []
    try:
        storages = []
        if 'zeo' in wanted:
            server = ZEOServer(os.path.join(directory, 'Data.fs')).start()
            servers.append(server.stop)
            storages.append(('ZEO', server.uri))
        if 'pg' in wanted:
            database = PGDatabase(prefix='trackstore_bench').create()
            servers.append(database.drop)
            storages.append(('PostgreSQL', database.uri))
        if 'pgasync' in wanted:
            # The same, but PostgreSQL answers a commit before its WAL
            # is flushed to disk (a crash may lose the last commits, not
            # consistency): what a commit costs beyond the fsync.
            database = PGDatabase(prefix='trackstore_bench', settings={
                'synchronous_commit': 'off'}).create()
            servers.append(database.drop)
            storages.append(('PG async commit', database.uri))
        table = Table(title='Concurrent writer processes (one run)')
        for column in ('storage', 'workload', 'writers', 'tracks/s',
                       'vs 1 writer', 'conflicts/1000 commits',
                       'startup conflicts', 'commit p50 ms',
                       'commit p99 ms'):
            table.add_column(column, justify='right')
        workloads = [('small 1/commit', 'tracks', args.small, 1),
                     ('bulk 1000/commit', 'bulk',
                      args.bulk * BULK_ROWS, BULK_ROWS)]
        verdicts = []
        for label, uri in storages:
            for workload, mode, count, per_commit in workloads:
                measured = measure(uri, mode, counts, count, per_commit,
                                   args.repeat)
                for writers in counts:
                    m = measured[writers]
                    ratio = m['ratio']
                    table.add_row(
                        label, workload, str(writers),
                        '%.0f' % m['tracks_s'], '%.2fx' % ratio,
                        '%.1f (%d/%d)' % (m['conflicts_per_1000'],
                                          m['conflicts'], m['commits']),
                        str(m['startup']),
                        '%.1f' % m['p50_ms'], '%.1f' % m['p99_ms'])
                    if writers == 4:
                        need = 1.0 if label == 'ZEO' else 1.5
                        verdicts.append((
                            label, workload, m['conflicts_per_1000'] < 10,
                            m['conflicts_per_1000'], ratio >= need,
                            ratio, need))
                console.print('  %s, %s: %s' % (label, workload, ', '.join(
                    '%d writers %.0f tracks/s' % (n, measured[n]['tracks_s'])
                    for n in counts)))
                table.add_section()
        console.print(table)
        console.print('load average after: %.1f (other processes on the '
                      'machine share its cores)' % os.getloadavg()[0])
        for (label, workload, conflicts_ok, per_1000, speed_ok, ratio,
             need) in verdicts:
            console.print(
                '%s, %s, 4 writers: conflicts %.1f/1000 (%s, bar < 10), '
                'throughput %.2fx one writer (%s, bar >= %.1fx)' % (
                    label, workload, per_1000,
                    'met' if conflicts_ok else 'MISSED', ratio,
                    'met' if speed_ok else 'MISSED', need))
    finally:
        for stop in reversed(servers):
            stop()
        shutil.rmtree(directory, ignore_errors=True)


if __name__ == '__main__':
    main()
