"""A writer process for the multi-process tests and the benchmark.

Run as ``python -m trackstore.tests.mpworker '<json>'`` with a JSON
object of: ``uri``, ``name`` (the root key of the storage), ``worker``
(its number), ``count``, ``mode``, ``per_commit`` and optionally
``attempts`` (tries per transaction). It opens the
database, prints ``ready``, waits for a line on stdin (so that all
writers start together), does its work and prints one JSON line with
what happened: commits, conflicts (retried tries), commit latencies,
seconds, and the ids it was given.

Modes:

- ``tracks``: ``count`` tracks saved with ``saveUserTrack``,
  ``per_commit`` of them per transaction (the web request case);
- ``bulk``: ``count`` tracks saved with ``saveTracks``, ``per_commit``
  rows per call and transaction (a bulk load);
- ``sessions``: ``count`` clickstream sessions, each registered with
  ``IClickstreamDao.register_session`` in one transaction and given
  ``EVENTS`` events with ``push_events`` in the next; worker 0 also releases
  the collecting batch every ``release_every`` sessions, so sessions are
  registered while batches are being released.

With ``warmup``, a first transaction (one track per task) claims the
writer's partition before ``ready``; its conflicts are reported as
``startup_conflicts`` and not counted in ``conflicts``.
"""
import json
import sys
import time

import zope.component

from trackstore.db import DEFAULT_ATTEMPTS
from trackstore.db import Writer
from trackstore.db import open_db


EVENTS = 3
TASKS = 5


def track_row(worker, seq):
    return {
        'taskId': 'task%d' % (seq % TASKS),
        'runId': 0,
        'userName': 'w%d-u%d' % (worker, seq % 50),
        'data': {'worker': worker, 'seq': seq, 'page': '/p/%d' % seq},
    }


def save_tracks(storage, rows):
    return [storage.saveUserTrack(r['taskId'], r['runId'], r['userName'],
                                  r['data']) for r in rows]


def save_bulk(storage, rows):
    return storage.saveTracks(rows)


def session_of(worker, seq):
    sid = 'w%d-s%d' % (worker, seq)
    created = 1700000000 + seq
    session = {
        'session_id': sid,
        'search_query': 'query %d' % (seq % 17),
        'created_at': created,
        'search_results': [{'object_id': 'o%d' % k, 'rank': float(k)}
                           for k in range(3)],
        'user_id': 'w%d-u%d' % (worker, seq % 25),
    }
    events = [{
        'event_id': 'e%d' % k, 'session_id': sid, 'object_id': 'o%d' % k,
        'event_type': 'click', 'created_at': created + k + 1,
    } for k in range(EVENTS)]
    return session, events


def register(storage, session):
    from trackstore.interfaces import IClickstreamDao
    registered = IClickstreamDao(storage).register_session(session)
    return registered.batch_id, registered.session_number


def push(storage, events):
    from trackstore.interfaces import IClickstreamDao
    return len(IClickstreamDao(storage).push_events(events))


def release(storage, release_id):
    from trackstore.interfaces import IClickstreamDao
    batch = IClickstreamDao(storage).release_batch(release_id)
    return None if batch is None else batch.batch_id


def register_adapters():
    from trackstore.clickstream.dao import ClickstreamDao
    zope.component.provideAdapter(ClickstreamDao)


def main(argv):
    args = json.loads(argv[1])
    register_adapters()
    db = open_db(args['uri'])
    writer = Writer(db, name=args['name'],
                    attempts=args.get('attempts', DEFAULT_ATTEMPTS))
    worker = args['worker']
    count = args['count']
    per_commit = args.get('per_commit', 1)
    mode = args['mode']
    startup = None
    if args.get('warmup'):
        # The benchmark measures the steady state: claim this writer's
        # partition and let the tasks' runs exist before the clock runs.
        # These first commits are where writers collide (new partitions,
        # new runs); their conflicts are reported apart.
        writer.run(save_bulk, [dict(track_row(worker, seq), data={
            'warmup': worker}) for seq in range(TASKS)])
        startup = writer.conflicts
        writer.commits = writer.conflicts = 0
    print('ready', flush=True)
    sys.stdin.readline()
    latencies = []
    out = []
    started = time.perf_counter()
    if mode in ('tracks', 'bulk'):
        fn = save_tracks if mode == 'tracks' else save_bulk
        for start in range(0, count, per_commit):
            rows = [track_row(worker, seq)
                    for seq in range(start, min(start + per_commit, count))]
            out.extend(writer.run(fn, rows))
            latencies.append(writer.last_commit_seconds)
    elif mode == 'sessions':
        release_every = args.get('release_every', 0)
        for seq in range(count):
            # Two transactions, as a client's two requests (POST the
            # session, POST its events) would be.
            session, events = session_of(worker, seq)
            out.append(writer.run(register, session))
            latencies.append(writer.last_commit_seconds)
            writer.run(push, events)
            latencies.append(writer.last_commit_seconds)
            if worker == 0 and release_every and \
                    (seq + 1) % release_every == 0:
                writer.run(release, 'release-%d' % seq)
    else:
        raise SystemExit('unknown mode %r' % (mode,))
    seconds = time.perf_counter() - started
    writer.close()
    db.close()
    print(json.dumps({
        'worker': worker, 'commits': writer.commits,
        'conflicts': writer.conflicts, 'latencies': latencies,
        'startup_conflicts': startup, 'most_retries': writer.most_retries,
        'seconds': seconds, 'ids': out}), flush=True)


def run_writers(uri, name, mode, count, writers, per_commit=1, **extra):
    """Start ``writers`` worker processes, let them go at once, and return
    their results (a list of dicts), raising if one failed."""
    import subprocess

    from trackstore.tests import python_env
    procs = []
    for worker in range(writers):
        args = dict(uri=uri, name=name, worker=worker, count=count,
                    mode=mode, per_commit=per_commit, **extra)
        procs.append(subprocess.Popen(
            [sys.executable, '-m', 'trackstore.tests.mpworker',
             json.dumps(args)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
            env=python_env()))
    try:
        for proc in procs:
            line = proc.stdout.readline()
            if line.strip() != 'ready':
                raise RuntimeError('a writer failed to start: %r' % line)
        for proc in procs:
            proc.stdin.write('go\n')
            proc.stdin.flush()
        results = []
        for proc in procs:
            output, _ = proc.communicate(timeout=1800)
            if proc.returncode:
                raise RuntimeError('a writer exited with %s'
                                   % proc.returncode)
            results.append(json.loads(output.strip().splitlines()[-1]))
        return results
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()


if __name__ == '__main__':
    main(sys.argv)
