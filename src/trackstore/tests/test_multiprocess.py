"""Nothing lost, nothing doubled: 4 writer processes at once.

On a real ZEO server and on PostgreSQL (RelStorage), 4 OS processes
(``trackstore.tests.mpworker``) each save 1,000 tracks in transactions
of one track, and, separately, register 250 clickstream sessions with 3
events each while one of them releases batches. Then every track is
there exactly once, every index agrees with a scan, and the clickstream
batch invariants hold: each session is one track, with its events.
Conflicts were retried; their count is printed.
"""
import collections

import zope.component

from trackstore.clickstream.dao import ClickstreamDao
from trackstore.db import Writer
from trackstore.interfaces import IClickstreamDao
from trackstore.tests.layers import PGLayer
from trackstore.tests.layers import ZEOLayer
from trackstore.tests.layers import for_layers
from trackstore.tests.mpworker import EVENTS
from trackstore.tests.mpworker import TASKS
from trackstore.tests.mpworker import run_writers


WRITERS = 4
TRACKS = 1000
SESSIONS = 250
RELEASE_EVERY = 50


def report(label, results):
    commits = sum(r['commits'] for r in results)
    conflicts = sum(r['conflicts'] for r in results)
    print('\n    %s: %d commits, %d conflicts retried (%.1f per 1,000 '
          'commits, at most %d for one commit)' % (
              label, commits, conflicts,
              1000.0 * conflicts / max(commits, 1),
              max(r['most_retries'] for r in results)))


class ConcurrentWriters:

    def storage(self):
        writer = Writer(self.db, name=self.name)
        self.addCleanup(writer.close, False)
        return writer.storage

    def test_tracks(self):
        results = run_writers(self.uri, self.name, 'tracks', TRACKS,
                              WRITERS, per_commit=1)
        report('%s, %d writers x %d tracks' % (
            self.layer.__name__, WRITERS, TRACKS), results)
        given = [tid for r in results for tid in r['ids']]
        self.assertEqual(len(given), WRITERS * TRACKS)
        self.assertEqual(len(set(given)), len(given), 'an id given twice')

        s = self.storage()
        tracks = list(s.values())
        self.assertEqual(len(s), WRITERS * TRACKS)
        self.assertEqual(len(tracks), WRITERS * TRACKS)
        self.assertEqual(sorted(t.__name__ for t in tracks), sorted(given))
        saved = collections.Counter(
            (t.data['worker'], t.data['seq']) for t in tracks)
        self.assertEqual(set(saved), {(w, i) for w in range(WRITERS)
                                      for i in range(TRACKS)})
        self.assertEqual(max(saved.values()), 1, 'a track saved twice')

        def ids(found):
            return sorted(t.__name__ for t in found)

        def scan(test):
            return ids(t for t in tracks if test(t))
        tasks = sorted({t.taskId for t in tracks})
        self.assertEqual(tasks, ['task%d' % i for i in range(TASKS)])
        self.assertEqual(s.getTaskIds(), tasks)
        for task in tasks:
            self.assertEqual(ids(s.query(taskId=task)),
                             scan(lambda t: t.taskId == task))
            self.assertEqual(
                s.getUserNames(task),
                sorted({t.userName for t in tracks if t.taskId == task}))
        for user in sorted({t.userName for t in tracks}):
            self.assertEqual(ids(s.query(userName=user)),
                             scan(lambda t: t.userName == user))
        self.assertEqual(ids(s.query(userName='w2-*')),
                         scan(lambda t: t.userName.startswith('w2-')))
        stamps = sorted(t.timeStamp for t in tracks)
        low, high = stamps[len(stamps) // 3], stamps[2 * len(stamps) // 3]
        self.assertEqual(
            ids(s.query(timeFrom=low, timeTo=high)),
            scan(lambda t: low <= t.timeStamp <= high))

        # runId=0 meant "the task's current run": concurrent first saves
        # of a task must not have started two runs.
        runs = {r.id: r for r in s.getRuns()}
        self.assertEqual(sorted(r.taskId for r in runs.values()), tasks)
        for run in runs.values():
            mine = [t for t in tracks if t.runId == run.id]
            self.assertEqual(ids(s.query(runId=run.id)), ids(mine))
            self.assertTrue(mine and all(t.taskId == run.taskId
                                         for t in mine))
            self.assertGreaterEqual(run.end, max(t.timeStamp for t in mine))

    def test_clickstream_sessions(self):
        # Every registration takes the next number of the one collecting
        # batch, so registrations conflict by design; this test is about
        # nothing lost, so a registration may retry longer than a web
        # request would (the count is printed).
        results = run_writers(self.uri, self.name, 'sessions', SESSIONS,
                              WRITERS, release_every=RELEASE_EVERY,
                              attempts=500)
        report('%s, %d writers x %d sessions with %d events' % (
            self.layer.__name__, WRITERS, SESSIONS, EVENTS), results)
        registered = {}
        for r in results:
            for seq, (batch_id, number) in enumerate(r['ids']):
                registered['w%d-s%d' % (r['worker'], seq)] = (
                    batch_id, number)
        self.assertEqual(len(registered), WRITERS * SESSIONS)

        gsm = zope.component.getGlobalSiteManager()
        gsm.registerAdapter(ClickstreamDao)
        self.addCleanup(gsm.unregisterAdapter, ClickstreamDao)
        s = self.storage()
        dao = IClickstreamDao(s)

        # Every session once, in exactly one batch, numbered uniquely.
        found = {}
        collecting = []
        for run in s.getRuns('clickstream'):
            batch = dao.get_batch(str(run.id))
            self.assertIsNotNone(batch)
            if batch.status == 'collecting':
                collecting.append(batch.batch_id)
            page, after = [], None
            while True:
                chunk = dao.get_batch_sessions(batch.batch_id, after, 37)
                if not chunk:
                    break
                page.extend(chunk)
                after = chunk[-1].session_number
            numbers = [x.session_number for x in page]
            self.assertEqual(numbers, sorted(set(numbers)))
            self.assertEqual(len(page), batch.session_counter)
            for x in page:
                self.assertNotIn(x.session_id, found, 'in two batches')
                self.assertEqual(x.batch_id, batch.batch_id)
                found[x.session_id] = (x.batch_id, x.session_number)
                self.assertEqual(sorted(e.event_id for e in x.events),
                                 ['e%d' % k for k in range(EVENTS)])
        self.assertLessEqual(len(collecting), 1)
        # What each writer was told is where the session is.
        self.assertEqual(found, registered)
        released = [r for r in s.getRuns('clickstream')
                    if dao.get_batch(str(r.id)).status == 'released']
        self.assertGreaterEqual(len(released), 1)
        # A session is one track, with its events, each once: the
        # tracks API sees what the DAO sees.
        tracks = s.query(taskId='clickstream')
        self.assertEqual(len(tracks), WRITERS * SESSIONS)
        self.assertEqual(len({t.__name__ for t in tracks}), len(tracks))
        self.assertEqual(
            {t.data['session_id']: (str(t.runId), t.data['session_number'])
             for t in tracks}, registered)
        for t in tracks:
            self.assertEqual(sorted(e['event_id'] for e in t.data['events']),
                             ['e%d' % k for k in range(EVENTS)])
        # A user's sessions are found by the user's name.
        mine = s.query(taskId='clickstream', userName='w1-u3')
        self.assertEqual(
            sorted(t.data['session_id'] for t in mine),
            sorted('w1-s%d' % seq for seq in range(SESSIONS)
                   if seq % 25 == 3))


for_layers(ConcurrentWriters, globals(), layers=(ZEOLayer, PGLayer))
