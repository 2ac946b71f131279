"""Concurrent writers on one FileStorage database: nothing lost, nothing
doubled, and hardly any conflicts."""
import os
import shutil
import tempfile
import threading
import unittest

import transaction
import ZODB
import ZODB.FileStorage
from ZODB.POSException import ConflictError

from trackstore import TrackingStorage


THREADS = 4
TRACKS = 500
PER_COMMIT = 1


class ThreadedWriters(unittest.TestCase):

    def setUp(self):
        self.dir = tempfile.mkdtemp()
        self.db = ZODB.DB(ZODB.FileStorage.FileStorage(
            os.path.join(self.dir, 'data.fs')))
        conn = self.db.open()
        conn.root()['tracks'] = TrackingStorage()
        transaction.commit()
        conn.close()

    def tearDown(self):
        self.db.close()
        shutil.rmtree(self.dir)

    def writer(self, number, stats, barrier):
        tm = transaction.TransactionManager()
        conn = self.db.open(transaction_manager=tm)
        barrier.wait()
        saved = 0
        while saved < TRACKS:
            batch = range(saved, min(saved + PER_COMMIT, TRACKS))
            while True:
                try:
                    storage = conn.root()['tracks']
                    for i in batch:
                        storage.saveUserTrack(
                            'task%d' % (i % 3), 0, 'w%d-u%d' % (number, i % 7),
                            {'writer': number, 'i': i})
                    tm.commit()
                    stats['commits'] += 1
                    break
                except ConflictError:
                    tm.abort()
                    stats['conflicts'] += 1
            saved += len(batch)
        conn.close()

    def test_four_threads_lose_nothing_and_rarely_conflict(self):
        stats = {'commits': 0, 'conflicts': 0}
        barrier = threading.Barrier(THREADS)
        threads = [threading.Thread(target=self.writer,
                                    args=(n, stats, barrier))
                   for n in range(THREADS)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

        conn = self.db.open()
        storage = conn.root()['tracks']
        tracks = list(storage.values())
        self.assertEqual(len(tracks), THREADS * TRACKS)
        self.assertEqual(len(storage), THREADS * TRACKS)
        ids = [t.__name__ for t in tracks]
        self.assertEqual(len(set(ids)), len(ids))
        # Every (writer, i) is there exactly once.
        self.assertEqual(
            sorted((t.data['writer'], t.data['i']) for t in tracks),
            [(w, i) for w in range(THREADS) for i in range(TRACKS)])
        # Every index agrees with a scan.
        byId = {t.__name__: t for t in tracks}

        def ids_of(found):
            return sorted(t.__name__ for t in found)
        for task in storage.getTaskIds():
            self.assertEqual(
                ids_of(storage.query(taskId=task)),
                sorted(i for i, t in byId.items() if t.taskId == task))
            for user in storage.getUserNames(task):
                self.assertEqual(
                    ids_of(storage.query(taskId=task, userName=user)),
                    sorted(i for i, t in byId.items()
                           if t.taskId == task and t.userName == user))
        for run in storage.getRuns():
            self.assertEqual(
                ids_of(storage.query(runId=run.id)),
                sorted(i for i, t in byId.items() if t.runId == run.id))
        times = sorted(t.timeStamp for t in tracks)
        self.assertEqual(
            len(storage.query(timeFrom=times[0], timeTo=times[-1])),
            len(tracks))
        users = {t.userName for t in tracks}
        self.assertEqual(len(storage.query(userName=list(users))),
                         len(tracks))
        # One run per task, started once even though four writers began
        # at the same moment.
        self.assertEqual(len(storage.getRuns()), 3)
        conn.close()

        rate = stats['conflicts'] / stats['commits']
        print('\n  %d commits, %d conflicts (%.2f%%)'
              % (stats['commits'], stats['conflicts'], 100 * rate))
        self.assertLess(rate, 0.05)

    def test_a_single_writer_counts_from_one(self):
        conn = self.db.open()
        storage = conn.root()['tracks']
        ids = [storage.saveUserTrack('t', 0, 'u', {}) for _ in range(3)]
        transaction.commit()
        self.assertEqual(ids, ['0000001', '0000002', '0000003'])
        conn.close()
