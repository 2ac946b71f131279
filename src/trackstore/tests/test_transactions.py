"""A save is visible to every read of its transaction, whatever the
storage batches until commit (``pending.py``), through savepoints,
rollbacks, aborts and commits: every read equals a plain-Python model.
"""
import shutil
import tempfile
import unittest

import transaction
import ZODB
import ZODB.FileStorage
from hypothesis import given
from hypothesis import settings
from hypothesis import strategies as st

from trackstore import TrackingStorage


TASKS = ['a', 'b']
USERS = ['u1', 'u2', 'u3']


class Model:
    """What the storage should hold: id -> (task, user, time, data)."""

    def __init__(self):
        self.tracks = {}

    def copy(self):
        model = Model()
        model.tracks = dict(self.tracks)
        return model

    def userTracks(self, task, user):
        found = [(ts, int(tid), tid) for tid, (t, u, ts, _) in
                 self.tracks.items() if (t, u) == (task, user)]
        return [tid for _, _, tid in sorted(found)]


operations = st.lists(st.one_of(
    st.tuples(st.just('save'), st.sampled_from(TASKS),
              st.sampled_from(USERS), st.integers(0, 3)),
    st.tuples(st.just('update'), st.sampled_from(TASKS),
              st.sampled_from(USERS), st.integers(0, 3)),
    st.tuples(st.just('bulk'), st.sampled_from(TASKS),
              st.sampled_from(USERS), st.integers(0, 3)),
    st.just(('savepoint',)),
    st.just(('rollback',)),
    st.just(('abort',)),
    st.just(('commit',)),
    st.just(('read',)),
), max_size=25)


class FileStorageCase(unittest.TestCase):

    def setUp(self):
        self.dir = tempfile.mkdtemp()
        self.db = ZODB.DB(ZODB.FileStorage.FileStorage(
            self.dir + '/t.fs'))
        self.conn = self.db.open()
        self.addCleanup(self.close)

    def close(self):
        transaction.abort()
        self.conn.close()
        self.db.close()
        shutil.rmtree(self.dir)

    def fresh(self):
        transaction.abort()
        storage = self.conn.root()['s'] = TrackingStorage()
        transaction.commit()
        return storage


class Savepoints(FileStorageCase):

    def test_a_rolled_back_save_is_gone_and_an_earlier_one_stays(self):
        storage = self.fresh()
        first = storage.saveUserTrack('a', 0, 'u1', {'n': 1}, timeStamp=1)
        savepoint = transaction.savepoint()
        storage.saveUserTrack('a', 0, 'u1', {'n': 2}, timeStamp=2)
        # The read writes both saves into the trees...
        self.assertEqual(len(storage.query(userName='u1')), 2)
        savepoint.rollback()
        # ...and the rollback takes the second away, not the first.
        self.assertEqual([t.__name__ for t in storage.getUserTracks(
            'a', 0, 'u1')], [first])
        self.assertEqual(len(storage), 1)
        transaction.commit()
        self.assertEqual(storage.checkIndexes(), [])
        self.assertEqual(len(storage.query(taskId='a')), 1)

    def test_a_run_started_after_a_savepoint_goes_with_it(self):
        storage = self.fresh()
        storage.saveUserTrack('a', 0, 'u1', {}, timeStamp=1)
        savepoint = transaction.savepoint()
        storage.saveUserTrack('b', 0, 'u1', {}, timeStamp=2)
        savepoint.rollback()
        self.assertIsNone(storage.getRun('b'))
        tid = storage.saveUserTrack('b', 0, 'u1', {}, timeStamp=3)
        self.assertEqual([t.__name__ for t in storage.getUserTracks(
            'b', 0, 'u1')], [tid])
        transaction.commit()
        self.assertEqual(storage.checkIndexes(), [])

    def test_an_abort_forgets_what_waited(self):
        storage = self.fresh()
        storage.saveUserTrack('a', 0, 'u1', {}, timeStamp=1)
        transaction.abort()
        self.assertEqual(len(storage), 0)
        self.assertEqual(storage.query(taskId='a'), [])
        storage.saveUserTrack('a', 0, 'u1', {}, timeStamp=1)
        transaction.commit()
        self.assertEqual(len(storage.query(taskId='a')), 1)
        self.assertEqual(storage.checkIndexes(), [])

    def test_another_connection_sees_the_commit(self):
        storage = self.fresh()
        for n in range(5):
            storage.saveUserTrack('a', 0, 'u%d' % n, {'n': n})
        transaction.commit()
        other = self.db.open()
        try:
            found = other.root()['s'].query(taskId='a')
            self.assertEqual(sorted(t.data['n'] for t in found),
                             list(range(5)))
        finally:
            other.close()


class AgainstModel(FileStorageCase):

    @settings(max_examples=60, deadline=None)
    @given(operations)
    def test_every_read_equals_the_model(self, ops):
        storage = self.fresh()
        self.storage = storage
        self.clock = 0
        model, committed, savepoints = Model(), Model(), []
        for op in ops:
            model, committed, savepoints = self.apply(
                op, model, committed, savepoints)
            self.check(model)
        transaction.commit()
        self.check(model)
        self.assertEqual(storage.checkIndexes(), [])

    def apply(self, op, model, committed, savepoints):
        kind = op[0]
        if kind in ('save', 'update', 'bulk'):
            self.save(model, *op)
        elif kind == 'savepoint':
            savepoints.append((transaction.savepoint(), model.copy()))
        elif kind == 'rollback' and savepoints:
            savepoint, state = savepoints[-1]
            savepoint.rollback()
            model = state.copy()
        elif kind == 'abort':
            transaction.abort()
            model, savepoints = committed.copy(), []
        elif kind == 'commit':
            transaction.commit()
            committed, savepoints = model.copy(), []
        return model, committed, savepoints

    def save(self, model, kind, task, user, n):
        self.clock += 1
        data = {'n': n}
        if kind == 'bulk':
            tid, = self.storage.saveTracks([dict(
                taskId=task, userName=user, data=data,
                timeStamp=self.clock)])
        else:
            tid = self.storage.saveUserTrack(
                task, 0, user, data, update=kind == 'update',
                timeStamp=self.clock)
        old = model.tracks.get(tid)
        merged = dict(old[3], **data) if old else data
        model.tracks[tid] = (task, user, self.clock, merged)
        if kind == 'update':
            last = model.userTracks(task, user)
            self.assertEqual(tid, last[-1])

    def check(self, model):
        storage = self.storage
        self.assertEqual(len(storage), len(model.tracks))
        self.assertEqual(
            {t.__name__: (t.taskId, t.userName, t.timeStamp, t.data)
             for t in storage.values()}, model.tracks)
        for task in TASKS:
            for user in USERS:
                expected = model.userTracks(task, user)
                self.assertEqual([t.__name__ for t in storage.query(
                    taskId=task, userName=user)], expected)
                self.assertEqual([t.__name__ for t in storage.getUserTracks(
                    task, 0, user)], expected)
                last = storage.getLastUserTrack(task, 0, user)
                self.assertEqual(last and last.__name__,
                                 expected[-1] if expected else None)
