"""The core and the clickstream on every storage: memory, FileStorage,
ZEO and PostgreSQL (RelStorage).

Each scenario writes through ``trackstore.db`` (``Writer``: a connection,
transactions, conflict retries) and reads back through a new connection,
and, where the storage outlives its ``DB`` object, after closing and
reopening the database from its URI.
"""
import time

import zope.component

from trackstore.clickstream.dao import ClickstreamDao
from trackstore.db import Writer
from trackstore.db import open_db
from trackstore.interfaces import IClickstreamDao
from trackstore.tests.layers import MemoryLayer
from trackstore.tests.layers import for_layers


T0 = 1_763_800_000.0


def ids(tracks):
    return [t.__name__ for t in tracks]


class CoreScenarios:

    def writer(self):
        writer = Writer(self.db, name=self.name)
        self.addCleanup(writer.close, False)
        return writer

    def reopen(self):
        """A fresh view of what was committed: a new connection, and for
        every storage but memory:// a new DB opened from the URI."""
        if self.layer is not MemoryLayer:
            self.db.close()
            self.db = open_db(self.uri)
        return self.writer()

    def save_sample(self):
        def save(s):
            out = []
            for i in range(60):
                out.append(s.saveUserTrack(
                    'task%d' % (i % 2), 0, 'user%d' % (i % 3),
                    {'i': i}, timeStamp=T0 + i))
            return out
        return self.writer().run(save)

    def test_save_and_query_by_each_index(self):
        saved = self.save_sample()
        self.assertEqual(len(saved), len(set(saved)))
        s = self.reopen().storage
        self.assertEqual(len(s), 60)
        self.assertEqual(sorted(ids(s.values())), sorted(saved))
        everything = list(s.values())
        for task in ('task0', 'task1'):
            expected = [t.__name__ for t in sorted(
                everything, key=lambda t: t.timeStamp) if t.taskId == task]
            self.assertEqual(ids(s.query(taskId=task)), expected)
        self.assertEqual(
            [t.data['i'] for t in s.query(userName='user1')],
            list(range(1, 60, 3)))
        self.assertEqual(len(s.query(userName='user*')), 60)
        self.assertEqual(
            [t.data['i'] for t in s.query(timeFrom=T0 + 10, timeTo=T0 + 12)],
            [10, 11, 12])
        run0 = s.getRun('task0')
        self.assertEqual(
            [t.data['i'] for t in s.query(runId=run0.id, userName='user0')],
            list(range(0, 60, 6)))
        self.assertEqual(
            [t.data['i'] for t in s.getUserTracks('task1', 0, 'user2')],
            list(range(5, 60, 6)))
        self.assertEqual(
            s.getLastUserTrack('task1', 0, 'user2').data, {'i': 59})
        self.assertEqual(s.getTaskIds(), ['task0', 'task1'])
        self.assertEqual(s.getUserNames('task0'),
                         ['user0', 'user1', 'user2'])
        self.assertEqual(s.getTrack(saved[7]).data, {'i': 7})

    def test_runs_persist(self):
        # A run starts now; its end follows its latest track.
        later = time.time() + 100
        w = self.writer()
        run_id = w.run(lambda s: s.startRun('a'))
        w.run(lambda s: s.saveUserTrack('a', 0, 'u', {}, timeStamp=later))
        w.run(lambda s: s.saveUserTrack('a', run_id, 'u', {},
                                        timeStamp=later + 5))
        stopped = w.run(lambda s: s.stopRun('a', finish=True))
        self.assertEqual(stopped, run_id)
        s = self.reopen().storage
        run = s.getRun(runId=run_id)
        self.assertEqual((run.taskId, run.finished), ('a', True))
        self.assertEqual(run.end, later + 5)
        self.assertIsNone(s.getRun('a'), 'no current run after stopRun')
        # A save with runId=0 starts the next run.
        w = self.writer()
        tid = w.run(lambda s: s.saveUserTrack('a', 0, 'u', {},
                                              timeStamp=later + 9))
        s = self.reopen().storage
        self.assertGreater(s.getTrack(tid).runId, run_id)
        self.assertFalse(s.getRun('a').finished)
        self.assertEqual(len(s.getRuns('a')), 2)

    def test_remove_and_update(self):
        saved = self.save_sample()
        w = self.writer()
        w.run(lambda s: s.removeTrack(saved[0]))
        w.run(lambda s: s.removeTrack(s.getTrack(saved[1])))
        w.run(lambda s: s.updateTrack(s.getTrack(saved[2]), {'x': 1}))
        w.run(lambda s: s.updateTrack(s.getTrack(saved[3]), {'y': 2},
                                      overwrite=True))
        s = self.reopen().storage
        self.assertEqual(len(s), 58)
        self.assertIsNone(s.getTrack(saved[0]))
        self.assertIsNone(s.getTrack(saved[1]))
        self.assertNotIn(saved[0], ids(s.query(taskId='task0')))
        self.assertNotIn(saved[1], ids(s.query(userName='user1')))
        self.assertEqual(s.getTrack(saved[2]).data, {'i': 2, 'x': 1})
        self.assertEqual(s.getTrack(saved[3]).data, {'y': 2})
        self.assertIn(saved[3], ids(s.query(userName='user0')))

    def test_bulk_save(self):
        rows = [{'taskId': 'bulk', 'runId': 0, 'userName': 'u%d' % (i % 5),
                 'data': {'i': i}, 'timeStamp': T0 + i} for i in range(500)]
        saved = self.writer().run(lambda s: s.saveTracks(rows))
        s = self.reopen().storage
        self.assertEqual(len(s), 500)
        self.assertEqual(ids(s.query(taskId='bulk')), saved)
        self.assertEqual([t.data['i'] for t in s.query(userName='u3')],
                         list(range(3, 500, 5)))

    def test_interleaved_writers_both_kept(self):
        # While one writer's transaction is open, another commits to the
        # same storage, task and run: either they touch different objects
        # or the storage resolves (or retries) the conflict; both tracks
        # are there afterwards.
        w1, w2 = self.writer(), self.writer()
        w1.run(lambda s: s.saveUserTrack('t', 0, 'u1', {}, timeStamp=T0))

        def second(s):
            tid = s.saveUserTrack('t', 0, 'u2', {}, timeStamp=T0 + 2)
            if w2.conflicts == 0 and not done:
                done.append(w1.run(lambda s1: s1.saveUserTrack(
                    't', 0, 'u1', {}, timeStamp=T0 + 1)))
            return tid
        done = []
        tid = w2.run(second)
        s = self.reopen().storage
        self.assertEqual(len(s), 3)
        self.assertEqual(sorted(ids(s.query(taskId='t'))),
                         sorted(ids(s.values())))
        self.assertIsNotNone(s.getTrack(tid))
        self.assertIsNotNone(s.getTrack(done[0]))
        self.assertGreaterEqual(s.getRun('t').end, T0 + 2)


def session(sid, user=None, created=1_763_800_000):
    return {'session_id': sid, 'search_query': 'q ' + sid,
            'created_at': created, 'user_id': user,
            'search_results': [{'object_id': 'o1', 'rank': 1.0},
                               {'object_id': 'o2'}]}


def event(sid, eid, created=1_763_800_010):
    return {'session_id': sid, 'event_id': eid, 'object_id': 'o1',
            'event_type': 'click', 'created_at': created}


class ClickstreamScenarios:

    def setUp(self):
        super().setUp()
        gsm = zope.component.getGlobalSiteManager()
        gsm.registerAdapter(ClickstreamDao)
        self.addCleanup(gsm.unregisterAdapter, ClickstreamDao)

    def run_dao(self, method, *args):
        with Writer(self.db, name=self.name) as w:
            return w.run(lambda s: getattr(IClickstreamDao(s), method)(*args))

    def reopened_dao(self):
        if self.layer is not MemoryLayer:
            self.db.close()
            self.db = open_db(self.uri)
        w = Writer(self.db, name=self.name)
        self.addCleanup(w.close, False)
        return IClickstreamDao(w.storage)

    def test_batch_cycle(self):
        for i in range(5):
            reg = self.run_dao('register_session', session('s%d' % i, 'ann'))
            self.assertEqual(reg.session_number, i + 1)
        first_batch = reg.batch_id
        self.run_dao('push_events', [event('s1', 'e1'), event('s1', 'e2')])
        # e1 again is skipped, e3 stored.
        accepted = self.run_dao('push_events',
                                [event('s1', 'e1'), event('s1', 'e3')])
        self.assertEqual([e.event_id for e in accepted], ['e3'])
        self.run_dao('mark_session_irrelevant', 's4')
        released = self.run_dao('release_batch', 'r1')
        self.assertEqual((released.batch_id, released.status.value),
                         (first_batch, 'released'))
        again = self.run_dao('release_batch', 'r1')
        self.assertEqual(again.batch_id, first_batch)
        late = self.run_dao('register_session', session('late'))
        self.assertNotEqual(late.batch_id, first_batch)
        self.assertEqual(late.session_number, 1)

        dao = self.reopened_dao()
        self.assertEqual(dao.get_batch(first_batch).session_counter, 5)
        self.assertEqual(dao.get_batch(first_batch).release_id, 'r1')
        self.assertEqual(dao.get_batch(late.batch_id).status.value,
                         'collecting')
        pages, after = [], None
        while True:
            page = dao.get_batch_sessions(first_batch, after, 2)
            if not page:
                break
            pages.append([x.session_id for x in page])
            after = page[-1].session_number
        self.assertEqual(pages, [['s0', 's1'], ['s2', 's3'], ['s4']])
        s1 = dao.get_session('s1')
        self.assertEqual([e.event_id for e in s1.events], ['e1', 'e2', 'e3'])
        self.assertTrue(dao.get_session('s4').is_irrelevant)
        self.assertIsNone(dao.get_session('nope'))

        for status in ('fine_tuning', 'archiving', 'archived'):
            self.run_dao('update_batch_status', first_batch, status)
        dao = self.reopened_dao()
        self.assertEqual(dao.get_batch(first_batch).status.value,
                         'archived')

    def test_unknown_session_events_rejected_nothing_stored(self):
        self.run_dao('register_session', session('s1'))
        with self.assertRaises(KeyError):
            self.run_dao('push_events', [event('s1', 'e1'),
                                         event('ghost', 'e2')])
        dao = self.reopened_dao()
        self.assertEqual(dao.get_session('s1').events, [])


for_layers(CoreScenarios, globals())
for_layers(ClickstreamScenarios, globals())
