"""Ingest benchmark: raw hits in, side by side with the alternatives.

On the same generated hit file (JSON hits, JSON Lines) and on its
shuffled copy (real exports are not sorted by time), each of these runs
as its own subprocess, so its peak RSS is its own:

- floor: orjson parses every line into a dict, nothing else;
- trackstore: ``trackstore ingest FILE --db file://...`` (validation,
  sorting by client and time, dedupe, sessions with their hits stored,
  FileStorage);
- trackstore, second load: a second file of other hits (another seed)
  loaded on top of the first, into the same database;
- pandas way: what the study trackstore grew from did: pandas reads the
  hits, sorts them, marks 30-minute sessions with groupby/diff/cumsum,
  ``DataFrame.to_sql`` into SQLite;
- sqlite: plain SQLite loading of the raw hits (orjson per line,
  ``executemany`` per 20,000) into a table with three indexes (customer
  id, timestamp, type).

It prints hits/s, peak RSS (the child's own, from ``wait4``), the median
of RSS sampled every 0.1 s (the steady state, without the peaks), bytes
on disk per hit and, for trackstore, the median and largest commit
(bytes of data records per transaction), with ratios to the floor, to
plain SQLite and to the pandas way, for a small and a large file
(default 1M and 4M hits), so that memory growing with the input shows.

    .venv/bin/python benchmarks/ingest.py            # 1M and 4M hits
    .venv/bin/python benchmarks/ingest.py --hits 200000 --big 0  # quick
"""
import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time


HERE = os.path.dirname(os.path.abspath(__file__))
BIN = os.path.dirname(sys.executable)
TRACKSTORE = os.path.join(BIN, 'trackstore')


# -- the workloads, each run in a child: ``ingest.py --run NAME FILE DIR``


def run_floor(path, workdir):
    import orjson
    loads = orjson.loads
    error = orjson.JSONDecodeError
    n = 0
    with open(path, 'rb') as f:
        for line in f:
            try:
                loads(line)
            except error:
                pass
            n += 1
    return n


def run_sqlite(path, workdir):
    import sqlite3

    import orjson
    loads = orjson.loads
    db = sqlite3.connect(os.path.join(workdir, 'hits.sqlite'))
    db.execute('CREATE TABLE hits (id INTEGER PRIMARY KEY, type TEXT, '
               'customer_id TEXT, ts TEXT, event TEXT)')
    db.execute('CREATE INDEX hits_customer ON hits (customer_id)')
    db.execute('CREATE INDEX hits_ts ON hits (ts)')
    db.execute('CREATE INDEX hits_type ON hits (type)')
    sql = 'INSERT OR IGNORE INTO hits VALUES (?, ?, ?, ?, ?)'
    n = 0
    rows = []
    with open(path, 'rb') as f:
        for line in f:
            try:
                hit = loads(line)
                event = hit['event']
                cid = event.get('customer-id')
                rows.append((
                    hit['id'], hit['type'],
                    None if cid is None else str(cid),
                    event['timestamp'], orjson.dumps(event).decode()))
            except Exception:
                continue
            n += 1
            if len(rows) >= 20000:
                db.executemany(sql, rows)
                db.commit()
                rows = []
    db.executemany(sql, rows)
    db.commit()
    db.close()
    return n


def run_seed(path, workdir):
    # The pandas way: read the JSON into pandas, flatten the event, drop
    # hits without a customer, sort, sessionize (a gap over 30 minutes
    # starts a session), write to SQL (SQLite here; PostgreSQL works the
    # same).
    import sqlite3

    import orjson
    import pandas as pd
    records = []
    with open(path, 'rb') as f:
        for line in f:
            # pd.read_json stops at the first malformed line; skip them
            try:
                records.append(orjson.loads(line))
            except orjson.JSONDecodeError:
                pass
    n = len(records)
    df = pd.json_normalize(records)
    del records
    df = df[df['event.customer-id'].notna()]
    df = df.rename(columns=lambda c: c.replace('event.', ''))
    df['timestamp'] = pd.to_datetime(df['timestamp'], errors='coerce')
    df = df.sort_values(['customer-id', 'timestamp'])
    gap = df.groupby('customer-id')['timestamp'].diff()
    new = gap.isna() | (gap > pd.Timedelta(minutes=30))
    df['session_id'] = new.cumsum()
    db = sqlite3.connect(os.path.join(workdir, 'seed.sqlite'))
    df.to_sql('hits', db, index=False, chunksize=20000)
    db.commit()
    db.close()
    return n


WORKLOADS = {
    'floor': run_floor,
    'trackstore': None,    # the console script itself, see measure()
    'pandas way': run_seed,
    'sqlite': run_sqlite,
}


# -- the driver ----------------------------------------------------------


def measure(name, path, hits, workdir, keep=None):
    """Run one workload in a child process; return (seconds, rss,
    median rss, disk, commits). ``keep`` is a directory to load into
    and keep (trackstore only: the second load goes on top of it)."""
    wd = keep or tempfile.mkdtemp(prefix='bench-', dir=workdir)
    if name.startswith('trackstore'):
        # Run the console script directly so its peak RSS is its own.
        uri = 'file://' + os.path.join(wd, 'trackstore.fs')
        cmd = [TRACKSTORE, 'ingest', path, '--db', uri]
    else:
        cmd = [sys.executable, os.path.abspath(__file__), '--run', name,
               path, wd]
    started = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    samples = []
    sampler = threading.Thread(target=_sample, args=(proc.pid, samples))
    sampler.start()
    # wait4 gives this child's own rusage (peak RSS), however it ends
    _pid, status, usage = os.wait4(proc.pid, 0)
    sampler.join()
    seconds = time.perf_counter() - started
    out = proc.stdout.read().decode()
    err = proc.stderr.read().decode()
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode:
        raise SystemExit('%s failed (%s):\n%s%s'
                         % (name, proc.returncode, out, err))
    commits = None
    if name.startswith('trackstore'):
        print('   ', out.strip().splitlines()[-1], file=sys.stderr)
        commits = commit_sizes(os.path.join(wd, 'trackstore.fs'))
    rss = usage.ru_maxrss * 1024     # kilobytes on Linux
    samples.sort()
    typical = samples[len(samples) // 2] if samples else rss
    disk = sum(os.path.getsize(os.path.join(wd, f)) for f in os.listdir(wd)
               if os.path.isfile(os.path.join(wd, f)))
    if keep is None:
        shutil.rmtree(wd, ignore_errors=True)
    return seconds, rss, typical, disk, commits


def commit_sizes(path):
    """(median, largest) bytes of data records per transaction of a
    FileStorage: a commit far larger than the others is a peak of RSS.
    """
    from ZODB.FileStorage import FileStorage
    storage = FileStorage(path, read_only=True)
    try:
        sizes = sorted(sum(len(r.data or b'') for r in txn)
                       for txn in storage.iterator())
    finally:
        storage.close()
    if not sizes:
        return None
    return sizes[len(sizes) // 2], sizes[-1]


def _sample(pid, samples, every=0.1):
    """RSS of the child every ``every`` seconds, until it ends: the
    median tells the steady state from the peaks."""
    import psutil
    try:
        p = psutil.Process(pid)
        while p.status() != psutil.STATUS_ZOMBIE:
            samples.append(p.memory_info().rss)
            time.sleep(every)
    except psutil.Error:
        pass


def count_lines(path):
    n = 0
    with open(path, 'rb') as f:
        for block in iter(lambda: f.read(1 << 20), b''):
            n += block.count(b'\n')
    return n


def generate(target, workdir, seed=2):
    """Generate a hit file of about ``target`` hits with the generator.
    """
    path = os.path.join(workdir, 'hits-%d-seed%d.jsonl' % (target, seed))
    if os.path.exists(path):
        return path, count_lines(path)
    # Calibrate hits per customer on a small run, then scale.
    probe = os.path.join(workdir, 'probe.jsonl')
    subprocess.run([TRACKSTORE, 'generate', '--customers', '1000',
                    '--days', '30', '--seed', str(seed), '-o', probe],
                   check=True, stdout=subprocess.DEVNULL)
    per_customer = count_lines(probe) / 1000.0
    os.unlink(probe)
    customers = max(1, int(round(target / per_customer)))
    subprocess.run([TRACKSTORE, 'generate', '--customers', str(customers),
                    '--days', '30', '--seed', str(seed), '-o', path],
                   check=True, stdout=subprocess.DEVNULL)
    return path, count_lines(path)


def shuffled(path):
    """A copy of ``path`` with its lines in random order (as ``shuf``),
    made in a child process: on Linux a child's peak RSS starts at its
    parent's size when it was forked, so this driver must stay small."""
    out = path.replace('.jsonl', '-shuffled.jsonl')
    if not os.path.exists(out):
        subprocess.run([sys.executable, os.path.abspath(__file__),
                        '--shuffle', path, out], check=True)
    return out


def shuffle_file(path, out):
    import random
    with open(path, 'rb') as f:
        lines = f.read().splitlines(True)
    random.Random(7).shuffle(lines)
    with open(out, 'wb') as f:
        f.writelines(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--hits', type=int, default=1000000)
    parser.add_argument('--big', type=int, default=4000000,
                        help='hits of the large file (0: skip it)')
    parser.add_argument('--big-only', default='trackstore,floor',
                        help='workloads to run on the large file')
    parser.add_argument('--workdir', default=None)
    parser.add_argument('--file', default=None,
                        help='use this hit file instead of generating one')
    parser.add_argument('--run', nargs=3, metavar=('NAME', 'FILE', 'DIR'),
                        help=argparse.SUPPRESS)
    parser.add_argument('--shuffle', nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.shuffle:
        shuffle_file(*args.shuffle)
        return
    if args.run:
        name, path, wd = args.run
        WORKLOADS[name](path, wd)
        return
    workdir = args.workdir or tempfile.mkdtemp(prefix='trackstore-bench-')
    os.makedirs(workdir, exist_ok=True)
    sizes = [args.hits] + ([args.big] if args.big else [])
    rows = []
    for size in sizes:
        if args.file:
            path, lines = args.file, count_lines(args.file)
        else:
            print('generating about %d hits ...' % size, file=sys.stderr)
            path, lines = generate(size, workdir)
        names = list(WORKLOADS)
        if size != sizes[0]:
            wanted = args.big_only.split(',')
            names = [n for n in names if n in wanted]
        last = size == sizes[-1] or args.file
        # On the last size the sorted load's database is kept, and a
        # second file of other hits (another seed) is loaded on top.
        keep = tempfile.mkdtemp(prefix='bench-', dir=workdir) \
            if last else None
        for order, source in (('sorted', path), ('shuffled',
                                                 shuffled(path))):
            for name in names:
                mine = keep if (name, order) == ('trackstore',
                                                 'sorted') else None
                rows.append(run_one(name, order, source, lines, workdir,
                                    mine))
        if last:
            second, more = generate(size, workdir, seed=3)
            rows.append(run_one('trackstore', 'second load', second, more,
                                workdir, keep))
            shutil.rmtree(keep, ignore_errors=True)
        if args.file:
            break
    print_table(rows)


def run_one(name, order, path, lines, workdir, keep=None):
    print('  %s on %d %s lines ...' % (name, lines, order), file=sys.stderr)
    seconds, rss, typical, disk, commits = measure(
        name, path, lines, workdir, keep)
    print('    %.1f s, peak %.0f MiB, median %.0f MiB' % (
        seconds, rss / 2 ** 20, typical / 2 ** 20), file=sys.stderr)
    return (lines, order, name, seconds, rss, typical, disk, commits)


def print_table(rows):
    rate = {(r[0], r[1], r[2]): r[0] / r[3] for r in rows}
    print('| hits | input | workload | hits/s | vs floor | vs sqlite '
          '| vs pandas way | peak RSS MiB | median RSS MiB | disk bytes/hit '
          '| commit MB median / max |')
    print('| ---: | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: '
          '| ---: | ---: |')
    for lines, order, name, seconds, rss, typical, disk, commits in rows:
        r = lines / seconds
        same = order if order in ('sorted', 'shuffled') else 'sorted'
        floor = rate.get((lines, same, 'floor'))
        sqlite = rate.get((lines, same, 'sqlite'))
        seed = rate.get((lines, same, 'pandas way'))
        print('| {:,} | {} | {} | {:,.0f} | {} | {} | {} | {:,.0f} '
              '| {:,.0f} | {} | {} |'.format(
                  lines, order, name, r,
                  '%.3fx' % (r / floor) if floor else '-',
                  '%.2fx' % (r / sqlite) if sqlite else '-',
                  '%.2fx' % (r / seed) if seed else '-',
                  rss / 2 ** 20, typical / 2 ** 20,
                  '%.0f' % (disk / lines) if disk else '0',
                  '%.1f / %.1f' % (commits[0] / 1e6, commits[1] / 1e6)
                  if commits else '-'))


if __name__ == '__main__':
    main()
