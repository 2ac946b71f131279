"""Group commit (web/commits.py) on a real FileStorage.

The units of work are functions of a ``PersistentMapping`` kept at the
root (``GroupCommit`` hands a unit whatever is stored under its name).
Threads stand for the server's request threads; a unit that waits for
an event holds its group open so that the next units queue behind it.
"""
import os
import shutil
import tempfile
import threading
import time
import unittest

import transaction
from persistent.mapping import PersistentMapping

from trackstore.db import open_db
from trackstore.web.commits import GroupCommit


class Caller(threading.Thread):
    """Runs one unit through ``group`` and keeps its outcome."""

    def __init__(self, group, fn):
        super().__init__(daemon=True)
        self.group = group
        self.fn = fn
        self.result = self.error = None

    def run(self):
        try:
            self.result = self.group.run(self.fn)
        except Exception as e:
            self.error = e


def put(key, value):
    def unit(box):
        box[key] = value
        return value
    return unit


def fail(box):
    box['failed'] = 'written before the error'
    raise KeyError('no such thing')


class GroupCommitTests(unittest.TestCase):

    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix='trackstore-commits-')
        self.db = open_db('file://' + os.path.join(self.dir, 'Data.fs'))
        with self.db.transaction() as conn:
            conn.root()['box'] = PersistentMapping()
        self.group = GroupCommit(self.db, name='box')

    def tearDown(self):
        self.db.close()
        shutil.rmtree(self.dir, ignore_errors=True)

    def stored(self):
        tm = transaction.TransactionManager()
        conn = self.db.open(transaction_manager=tm)
        try:
            return dict(conn.root()['box'])
        finally:
            tm.abort()
            conn.close()

    def queued_behind(self, release, units):
        """Start a leader that waits for ``release``, queue ``units``
        behind it, and let it go once they are all queued."""
        leader = Caller(self.group, lambda box: release.wait(30) and 0)
        leader.start()
        while not self.group._busy:
            time.sleep(0.001)
        callers = [Caller(self.group, fn) for fn in units]
        for caller in callers:
            caller.start()
        while len(self.group._queue) < len(units):
            time.sleep(0.001)
        release.set()
        for caller in [leader] + callers:
            caller.join(30)
            self.assertFalse(caller.is_alive())
        return leader, callers

    def test_waiting_units_share_one_commit(self):
        leader, callers = self.queued_behind(
            threading.Event(), [put('k%d' % i, i) for i in range(5)])
        self.assertEqual([c.result for c in callers],
                         [(i, 0) for i in range(5)])
        self.assertEqual(self.stored(),
                         {'k%d' % i: i for i in range(5)})
        # The leader's own commit, then the five queued behind it.
        self.assertEqual((self.group.commits, self.group.units), (2, 6))

    def test_a_failing_unit_fails_alone(self):
        leader, callers = self.queued_behind(
            threading.Event(), [put('a', 1), fail, put('b', 2)])
        self.assertIsInstance(callers[1].error, KeyError)
        self.assertEqual(callers[0].result, (1, 0))
        self.assertEqual(callers[2].result, (2, 0))
        # What the failing unit wrote before it raised is not stored.
        self.assertEqual(self.stored(), {'a': 1, 'b': 2})
        self.assertEqual(self.group.units, 4)

    def test_a_conflict_runs_the_group_again(self):
        # Another process's writer (another GroupCommit on the same
        # database) changes the box while this group is open.
        other = GroupCommit(self.db, name='box')
        entered = threading.Event()
        go_on = threading.Event()
        calls = []

        def slow(box):
            calls.append(1)
            box['mine'] = len(calls)
            entered.set()
            go_on.wait(30)
            return 'slow'

        caller = Caller(self.group, slow)
        caller.start()
        self.assertTrue(entered.wait(30))
        self.assertEqual(other.run(put('theirs', 1)), (1, 0))
        go_on.set()
        caller.join(30)
        self.assertEqual(caller.result, ('slow', 1))
        self.assertEqual(len(calls), 2)
        self.assertEqual(self.stored(), {'mine': 2, 'theirs': 1})
        self.assertEqual((self.group.commits, self.group.conflicts),
                         (1, 1))

    def test_many_threads_nothing_lost_or_doubled(self):
        def add(i):
            def unit(box):
                box[i] = box.get(i, 0) + 1
                return i
            return unit

        callers = [Caller(self.group, add(i)) for i in range(200)]
        for caller in callers:
            caller.start()
        for caller in callers:
            caller.join(60)
        self.assertEqual(sorted(c.result[0] for c in callers),
                         list(range(200)))
        self.assertEqual(self.stored(), {i: 1 for i in range(200)})
        self.assertEqual(self.group.units, 200)
        self.assertLessEqual(self.group.commits, 200)

    def test_no_connection_fails_the_units_and_the_next_ones(self):
        self.db.close()
        for attempt in range(2):
            caller = Caller(self.group, put('k', 1))
            caller.start()
            caller.join(30)
            self.assertFalse(caller.is_alive())
            self.assertIsNotNone(caller.error)
        self.assertEqual(self.group.units, 2)
