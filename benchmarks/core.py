"""Save N tracks of U users into a FileStorage and into SQLite; compare.

    python benchmarks/core.py [--tracks 1000000] [--users 100000]
                              [--cache N]
    python benchmarks/core.py --per-call [--tracks 100000] [--users 10000]
    python benchmarks/core.py --queries [--tracks 100000] [--users 10000]

The default (bulk) mode:

Both stores get the same rows (task, run, user, time stamp, a small data
dict) in the same order, committed every ``--commit`` rows, with the same
four indexes. Each store runs in its own subprocess so that its peak RSS
is its own. Printed: tracks/s, peak RSS, bytes on disk per track, and the
warm and cold time of a task+user query returning ``--hits`` tracks, with
the ratio of trackstore to SQLite. ``--cache`` is the ZODB connection
cache size (objects); without it, the package's default
(``trackstore.db.DEFAULT_CACHE_SIZE``) is used.

``--per-call`` saves the tracks the way a Zope application does, one
``saveUserTrack`` call a track (5 tasks), against one ``INSERT`` a row in
SQLite, committing every ``--commit`` rows, in one run. ``--queries``
then times small task+user queries (tracks of users that have 1 to 10),
warm and each in a new process, against SQLite's.
"""
import argparse
import json
import os
import random
import resource
import sqlite3
import subprocess
import sys
import tempfile
import time


TASK = 'shop'


def rows(n, users, hits, seed=1):
    """Deterministic rows; user 'u0' gets exactly ``hits`` tracks."""
    rnd = random.Random(seed)
    t0 = 1_700_000_000.0
    hot = set(rnd.sample(range(n), hits))
    for i in range(n):
        user = 'u0' if i in hot else 'u%d' % rnd.randrange(1, users)
        yield (TASK, user, t0 + i * 0.01,
               {'page': '/p/%d' % rnd.randrange(5000), 'n': i})


def peak_rss_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def du(path):
    total = 0
    for root, _, files in os.walk(path):
        total += sum(os.path.getsize(os.path.join(root, f)) for f in files)
    return total


def cache_size(args):
    from trackstore.db import DEFAULT_CACHE_SIZE
    return args.cache or DEFAULT_CACHE_SIZE


def timed_query(fn, repeat=20):
    best = None
    for _ in range(repeat):
        t = time.perf_counter()
        result = fn()
        elapsed = time.perf_counter() - t
        best = elapsed if best is None else min(best, elapsed)
    return best, result


def new_store(args, workdir):
    """A new FileStorage database with a TrackingStorage at the root:
    ``(db, connection, storage, path)``."""
    import ZODB
    import ZODB.FileStorage

    from trackstore import TrackingStorage

    path = os.path.join(workdir, 'tracks.fs')
    db = ZODB.DB(ZODB.FileStorage.FileStorage(path),
                 cache_size=cache_size(args))
    conn = db.open()
    storage = conn.root()['tracks'] = TrackingStorage()
    return db, conn, storage, path


def run_trackstore(args, workdir):
    import transaction

    db, conn, storage, path = new_store(args, workdir)
    runId = storage.startRun(TASK)
    transaction.commit()
    start = time.perf_counter()
    batch = []
    for task, user, ts, data in rows(args.tracks, args.users, args.hits):
        batch.append(dict(taskId=task, runId=runId, userName=user,
                          timeStamp=ts, data=data))
        if len(batch) == args.commit:
            storage.saveTracks(batch)
            transaction.commit()
            batch = []
    if batch:
        storage.saveTracks(batch)
        transaction.commit()
    elapsed = time.perf_counter() - start
    warm, found = timed_query(
        lambda: storage.query(taskId=TASK, userName='u0'))
    db.close()
    assert len(found) == args.hits, len(found)
    return dict(rate=args.tracks / elapsed, rss=peak_rss_mb(),
                disk=du(workdir) / args.tracks, warm=warm)


def cold_trackstore(path):
    import ZODB
    import ZODB.FileStorage

    # The code is loaded in any real process; only data is cold.
    import trackstore  # noqa: F401
    db = ZODB.DB(ZODB.FileStorage.FileStorage(path, read_only=True))
    t = time.perf_counter()
    conn = db.open()
    found = conn.root()['tracks'].query(taskId=TASK, userName='u0')
    elapsed = time.perf_counter() - t
    db.close()
    return elapsed, len(found)


def cold_sqlite(path):
    # Opening a connection is timed on both sides (db.open() for ZODB).
    t = time.perf_counter()
    conn = sqlite3.connect(path)
    found = [(r[0], json.loads(r[5])) for r in conn.execute(
        'SELECT * FROM tracks WHERE task = ? AND user = ? ORDER BY ts, id',
        (TASK, 'u0'))]
    elapsed = time.perf_counter() - t
    conn.close()
    return elapsed, len(found)


def run_sqlite(args, workdir):
    path = os.path.join(workdir, 'tracks.sqlite')
    db = sqlite3.connect(path)
    db.execute('CREATE TABLE tracks (id INTEGER PRIMARY KEY, task TEXT, '
               'run INTEGER, user TEXT, ts REAL, data TEXT)')
    for col in ('task', 'run', 'user', 'ts'):
        db.execute('CREATE INDEX i_%s ON tracks (%s)' % (col, col))
    db.commit()
    start = time.perf_counter()
    batch = []
    insert = 'INSERT INTO tracks (task, run, user, ts, data) ' \
             'VALUES (?, ?, ?, ?, ?)'
    for task, user, ts, data in rows(args.tracks, args.users, args.hits):
        batch.append((task, 1, user, ts, json.dumps(data)))
        if len(batch) == args.commit:
            db.executemany(insert, batch)
            db.commit()
            batch = []
    if batch:
        db.executemany(insert, batch)
        db.commit()
    elapsed = time.perf_counter() - start
    sql = 'SELECT * FROM tracks WHERE task = ? AND user = ? ORDER BY ts, id'

    def query(conn):
        return [(r[0], r[1], r[2], r[3], r[4], json.loads(r[5]))
                for r in conn.execute(sql, (TASK, 'u0'))]
    warm, found = timed_query(lambda: query(db))
    db.close()
    assert len(found) == args.hits
    return dict(rate=args.tracks / elapsed, rss=peak_rss_mb(),
                disk=du(workdir) / args.tracks, warm=warm)


PATHS = {'trackstore': 'tracks.fs', 'sqlite': 'tracks.sqlite'}


def child(args):
    if args.per_call and args.cold:
        elapsed, right = cold_small(args)
        assert right
        print(json.dumps(elapsed))
        return
    if args.per_call:
        fn = percall_trackstore if args.child == 'trackstore' \
            else percall_sqlite
        print(json.dumps(fn(args, args.workdir)))
        return
    if args.cold:
        fn = cold_trackstore if args.child == 'trackstore' else cold_sqlite
        elapsed, n = fn(os.path.join(args.workdir, PATHS[args.child]))
        assert n == args.hits, n
        print(json.dumps(elapsed))
        return
    fn = run_trackstore if args.child == 'trackstore' else run_sqlite
    print(json.dumps(fn(args, args.workdir)))


def drop_os_caches():
    """Make the next read come from disk; needs root (Linux)."""
    try:
        os.sync()
        with open('/proc/sys/vm/drop_caches', 'w') as f:
            f.write('3\n')
        return True
    except OSError:
        return False


def cold_run(name, workdir, args, drop, repeat=5):
    """The median of ``repeat`` queries, each in a new process."""
    times = []
    dropped = True
    for _ in range(repeat):
        dropped = (drop_os_caches() if drop else False) and dropped
        out = subprocess.run(
            [sys.executable, __file__, '--child', name, '--cold',
             '--workdir', workdir, '--hits', str(args.hits)],
            check=True, capture_output=True, text=True).stdout
        times.append(json.loads(out.strip().splitlines()[-1]))
    return sorted(times)[len(times) // 2], dropped


# -- per call: one saveUserTrack a track, one INSERT a row --------------

TASKS = ['task%d' % n for n in range(5)]
SQL_SMALL = 'SELECT * FROM tracks WHERE task = ? AND user = ? ' \
    'ORDER BY ts, id'


def call_rows(n, users, seed=2):
    """Deterministic rows for the per-call mode: 5 tasks."""
    rnd = random.Random(seed)
    t0 = 1_700_000_000.0
    for i in range(n):
        yield (rnd.choice(TASKS), 'u%d' % rnd.randrange(users),
               t0 + i * 0.01, {'page': '/p/%d' % rnd.randrange(5000),
                               'n': i})


def small_pairs(args, count=200):
    """(task, user) pairs with 1 to 10 tracks, and how many each has."""
    counts = {}
    for task, user, _, _ in call_rows(args.tracks, args.users):
        counts[task, user] = counts.get((task, user), 0) + 1
    small = sorted(pair for pair, n in counts.items() if 1 <= n <= 10)
    pairs = random.Random(3).sample(small, min(count, len(small)))
    return [(pair, counts[pair]) for pair in pairs]


def warm_queries(fn, pairs):
    """The median over pairs of each pair's best of 5 (after one pass
    that warms the caches)."""
    for (task, user), n in pairs:
        assert len(fn(task, user)) == n, (task, user)
    times = []
    for (task, user), _ in pairs:
        best, _ = timed_query(lambda: fn(task, user), repeat=5)
        times.append(best)
    return sorted(times)[len(times) // 2]


def percall_trackstore(args, workdir):
    import transaction

    db, conn, storage, path = new_store(args, workdir)
    transaction.commit()
    save = storage.saveUserTrack
    result = per_call(
        args, lambda task, user, ts, data: save(
            task, 0, user, data, timeStamp=ts),
        transaction.commit,
        lambda t, u: storage.query(taskId=t, userName=u))
    db.close()
    return result


def per_call(args, save, commit, query):
    """Save the rows one call each, committing every ``args.commit``;
    the rate, the peak RSS and (with ``--queries``) the warm query."""
    start = time.perf_counter()
    for i, row in enumerate(call_rows(args.tracks, args.users), 1):
        save(*row)
        if i % args.commit == 0:
            commit()
    commit()
    elapsed = time.perf_counter() - start
    result = dict(rate=args.tracks / elapsed, rss=peak_rss_mb())
    if args.queries:
        result['warm'] = warm_queries(query, small_pairs(args))
    return result


def sqlite_table(path):
    db = sqlite3.connect(path)
    db.execute('CREATE TABLE tracks (id INTEGER PRIMARY KEY, task TEXT, '
               'run INTEGER, user TEXT, ts REAL, data TEXT)')
    for col in ('task', 'run', 'user', 'ts'):
        db.execute('CREATE INDEX i_%s ON tracks (%s)' % (col, col))
    db.commit()
    return db


def sqlite_small(conn, task, user):
    return [(r[0], r[1], r[2], r[3], r[4], json.loads(r[5]))
            for r in conn.execute(SQL_SMALL, (task, user))]


def percall_sqlite(args, workdir):
    db = sqlite_table(os.path.join(workdir, 'tracks.sqlite'))
    insert = 'INSERT INTO tracks (task, run, user, ts, data) ' \
             'VALUES (?, ?, ?, ?, ?)'
    execute = db.execute
    result = per_call(
        args, lambda task, user, ts, data: execute(
            insert, (task, 1, user, ts, json.dumps(data))),
        db.commit, lambda t, u: sqlite_small(db, t, u))
    db.close()
    return result


def cold_small(args):
    """One small query in this (new) process, open included."""
    (task, user), n = small_pairs(args)[args.pair]
    path = os.path.join(args.workdir, PATHS[args.child])
    if args.child == 'sqlite':
        t = time.perf_counter()
        found = sqlite_small(sqlite3.connect(path), task, user)
        return time.perf_counter() - t, len(found) == n
    import ZODB
    import ZODB.FileStorage

    import trackstore  # noqa: F401
    db = ZODB.DB(ZODB.FileStorage.FileStorage(path, read_only=True))
    t = time.perf_counter()
    found = db.open().root()['tracks'].query(taskId=task, userName=user)
    elapsed = time.perf_counter() - t
    db.close()
    return elapsed, len(found) == n


def percall_main(args):
    results = {}
    with tempfile.TemporaryDirectory() as top:
        for name in ('trackstore', 'sqlite'):
            workdir = os.path.join(top, name)
            os.mkdir(workdir)
            results[name] = child_run(name, workdir, args)
            if args.queries:
                times = [child_run(name, workdir, args, '--cold',
                                   '--pair', str(i)) for i in range(5)]
                results[name]['cold'] = sorted(times)[2]
    ts, sq = results['trackstore'], results['sqlite']
    print('per call: %d tracks of %d users in %d tasks, commit every %d, '
          'cache %d' % (args.tracks, args.users, len(TASKS), args.commit,
                        cache_size(args)))
    print('%-26s %14s %14s %10s' % ('', 'trackstore', 'SQLite', 'ratio'))
    print_row('saves, tracks/s', ts['rate'], sq['rate'], '%14.0f')
    print_row('peak RSS, MB', ts['rss'], sq['rss'], '%14.0f')
    bars = ['per-call saves >= 0.5x SQLite: %s'
            % ok(ts['rate'] >= 0.5 * sq['rate'])]
    if args.queries:
        print_row('small query warm, ms', ts['warm'] * 1000,
                  sq['warm'] * 1000, '%14.3f')
        print_row('small query new proc, ms', ts['cold'] * 1000,
                  sq['cold'] * 1000, '%14.3f')
        bars.append('small warm query <= 2x SQLite: %s'
                    % ok(ts['warm'] <= 2 * sq['warm']))
    print('bars: ' + '; '.join(bars))


def ok(flag):
    return 'met' if flag else 'MISSED'


def print_row(label, ours, theirs, fmt):
    print('%-26s' % label + fmt % ours + fmt % theirs
          + '%10.2fx' % (ours / theirs))


def child_run(name, workdir, args, *extra):
    command = [sys.executable, __file__, '--child', name, '--workdir',
               workdir, '--tracks', str(args.tracks), '--users',
               str(args.users), '--commit', str(args.commit), '--hits',
               str(args.hits), '--cache', str(cache_size(args))]
    command += ['--per-call'] if args.per_call else []
    command += ['--queries'] if args.queries else []
    out = subprocess.run(command + list(extra), check=True,
                         capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--tracks', type=int,
                        help='1,000,000; 100,000 per call')
    parser.add_argument('--users', type=int,
                        help='100,000; 10,000 per call')
    parser.add_argument('--commit', type=int, default=10_000)
    parser.add_argument('--hits', type=int, default=100)
    parser.add_argument('--child', choices=['trackstore', 'sqlite'])
    parser.add_argument('--cold', action='store_true')
    parser.add_argument('--workdir')
    parser.add_argument('--cache', type=int, default=0,
                        help='ZODB connection cache size, objects')
    parser.add_argument('--per-call', action='store_true')
    parser.add_argument('--queries', action='store_true')
    parser.add_argument('--pair', type=int, default=0)
    args = parser.parse_args()
    if args.queries:
        args.per_call = True
    scale = 10 if args.per_call else 1
    args.tracks = args.tracks or 1_000_000 // scale
    args.users = args.users or 100_000 // scale
    if args.child:
        return child(args)
    if args.per_call:
        return percall_main(args)
    results = {}
    dropped = True
    with tempfile.TemporaryDirectory() as top:
        for name in ('trackstore', 'sqlite'):
            workdir = os.path.join(top, name)
            os.mkdir(workdir)
            out = subprocess.run(
                [sys.executable, __file__, '--child', name,
                 '--workdir', workdir,
                 '--tracks', str(args.tracks), '--users', str(args.users),
                 '--commit', str(args.commit), '--hits', str(args.hits),
                 '--cache', str(cache_size(args))],
                check=True, capture_output=True, text=True).stdout
            results[name] = json.loads(out.strip().splitlines()[-1])
            results[name]['cold'], _ = cold_run(name, workdir, args, False)
            results[name]['disk_cold'], ok = cold_run(
                name, workdir, args, True)
            dropped = dropped and ok
    ts, sq = results['trackstore'], results['sqlite']
    print('%d tracks of %d users, commit every %d, query returns %d, '
          'cache %d' % (args.tracks, args.users, args.commit, args.hits,
                        cache_size(args)))
    print('%-26s %14s %14s %10s' % ('', 'trackstore', 'SQLite', 'ratio'))
    lines = [
        ('saves, tracks/s', 'rate', '%14.0f', ts['rate'] / sq['rate']),
        ('peak RSS, MB', 'rss', '%14.0f', ts['rss'] / sq['rss']),
        ('disk, bytes/track', 'disk', '%14.0f', ts['disk'] / sq['disk']),
        ('query warm, ms', 'warm', '%14.3f', ts['warm'] / sq['warm']),
        ('query, new process, ms', 'cold', '%14.3f',
         ts['cold'] / sq['cold']),
        ('query, from disk, ms' if dropped else
         'query, disk (not dropped)', 'disk_cold', '%14.3f',
         ts['disk_cold'] / sq['disk_cold']),
    ]
    for label, key, fmt, ratio in lines:
        scale = 1000 if key in ('warm', 'cold', 'disk_cold') else 1
        print('%-26s' % label + fmt % (ts[key] * scale)
              + fmt % (sq[key] * scale) + '%10.2fx' % ratio)
    print('bars: saves >= 0.5x SQLite: %s; warm query <= 2x: %s; '
          'query from disk <= 2x: %s; query in a new process <= 2x: %s'
          % tuple('met' if ok else 'MISSED' for ok in (
              ts['rate'] >= 0.5 * sq['rate'],
              ts['warm'] <= 2 * sq['warm'],
              ts['disk_cold'] <= 2 * sq['disk_cold'],
              ts['cold'] <= 2 * sq['cold'])))


if __name__ == '__main__':
    main()
