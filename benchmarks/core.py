"""Save N tracks of U users into a FileStorage and into SQLite; compare.

    python benchmarks/core.py [--tracks 1000000] [--users 100000]

Both stores get the same rows (task, run, user, time stamp, a small data
dict) in the same order, committed every ``--commit`` rows, with the same
four indexes. Each store runs in its own subprocess so that its peak RSS
is its own. Printed: tracks/s, peak RSS, bytes on disk per track, and the
warm and cold time of a task+user query returning ``--hits`` tracks, with
the ratio of trackstore to SQLite.
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


def timed_query(fn, repeat=20):
    best = None
    for _ in range(repeat):
        t = time.perf_counter()
        result = fn()
        elapsed = time.perf_counter() - t
        best = elapsed if best is None else min(best, elapsed)
    return best, result


def run_trackstore(args, workdir):
    import transaction
    import ZODB
    import ZODB.FileStorage

    from trackstore import TrackingStorage

    path = os.path.join(workdir, 'tracks.fs')
    db = ZODB.DB(ZODB.FileStorage.FileStorage(path), cache_size=100_000)
    conn = db.open()
    storage = conn.root()['tracks'] = TrackingStorage()
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


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--tracks', type=int, default=1_000_000)
    parser.add_argument('--users', type=int, default=100_000)
    parser.add_argument('--commit', type=int, default=10_000)
    parser.add_argument('--hits', type=int, default=100)
    parser.add_argument('--child', choices=['trackstore', 'sqlite'])
    parser.add_argument('--cold', action='store_true')
    parser.add_argument('--workdir')
    args = parser.parse_args()
    if args.child:
        return child(args)
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
                 '--commit', str(args.commit), '--hits', str(args.hits)],
                check=True, capture_output=True, text=True).stdout
            results[name] = json.loads(out.strip().splitlines()[-1])
            results[name]['cold'], _ = cold_run(name, workdir, args, False)
            results[name]['disk_cold'], ok = cold_run(
                name, workdir, args, True)
            dropped = dropped and ok
    ts, sq = results['trackstore'], results['sqlite']
    print('%d tracks of %d users, commit every %d, query returns %d'
          % (args.tracks, args.users, args.commit, args.hits))
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
