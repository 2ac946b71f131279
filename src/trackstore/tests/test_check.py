"""``check_store`` and ``trackstore check`` catch a store broken on
purpose, in each way they look for, and pass a sound one.

A real FileStorage: a store of two batches is loaded once, and each
test breaks its own copy of the file.
"""
import os
import shutil
import subprocess
import tempfile
import unittest

import orjson
import transaction

from trackstore.check import check_store
from trackstore.clickstream.dao import ClickstreamDao
from trackstore.clickstream.records import clickstream_records
from trackstore.clickstream.records import slot
from trackstore.db import get_storage
from trackstore.db import open_db
from trackstore.ingest import ingest
from trackstore.sessions.generate import generate
from trackstore.tests import TRACKSTORE
from trackstore.tests import python_env


def break_indexes(storage, how):
    """Break the tracking indexes through their contract
    (``ITrackIndex``): ``'orphan'`` adds a user
    index entry for a track that has no record, ``'unindexed'`` takes
    the entry of an existing track out of the time index. Returns the
    id of the track concerned, as its name."""
    from trackstore.storage import formatId
    partition = next(iter(storage.partitions.values()))
    if how == 'orphan':
        missing = partition.lastId + 1000
        partition.index('userName').index_doc(missing, ('visits', 'nobody'))
        return formatId(missing)
    track_id, record = next(iter(partition.items()))
    track = storage.trackFactory.fromRecord(track_id, record)
    partition.index('timeStamp').unindex_doc(track_id, track.timeStamp)
    return formatId(track_id)


class SoundStoreLayer:
    """A sound store of two batches, loaded once for the tests."""

    @classmethod
    def setUp(cls):
        cls.dir = tempfile.mkdtemp(prefix='trackstore-check-')
        hits = os.path.join(cls.dir, 'hits.jsonl')
        generate(40, 4, 3, hits)
        with open(hits, 'rb') as f:
            lines = f.readlines()
        half = len(lines) // 2
        cls.sound = os.path.join(cls.dir, 'sound.fs')
        db = open_db('file://' + cls.sound)
        try:
            for n, part in enumerate((lines[:half], lines[half:])):
                path = os.path.join(cls.dir, 'part%d.jsonl' % n)
                with open(path, 'wb') as f:
                    f.writelines(part)
                ingest(path, db, rejects=path + '.rejects')
                # Two batches: the first is released before the second
                # load, whose visits go into a new one.
                conn = db.open()
                ClickstreamDao(get_storage(conn)).release_batch('r%d' % n)
                transaction.commit()
                conn.close()
        finally:
            db.close()

    @classmethod
    def tearDown(cls):
        shutil.rmtree(cls.dir, ignore_errors=True)


class Check(unittest.TestCase):

    layer = SoundStoreLayer

    def setUp(self):
        self.dir = SoundStoreLayer.dir
        self.sound = SoundStoreLayer.sound
        self.path = os.path.join(self.dir, '%s.fs' % self.id().split('.')[-1])
        shutil.copy(self.sound, self.path)
        self.db = open_db('file://' + self.path)
        self.conn = self.db.open()
        self.storage = get_storage(self.conn)
        self.records = clickstream_records(self.storage)

    def tearDown(self):
        transaction.abort()
        self.conn.close()
        self.db.close()
        for name in os.listdir(self.dir):
            if name.startswith(os.path.basename(self.path)):
                os.unlink(os.path.join(self.dir, name))

    def broken(self):
        """Commit the breakage; the problems ``check_store`` finds."""
        transaction.commit()
        return check_store(self.storage).problems

    def sessions(self):
        dao = ClickstreamDao(self.storage)
        return [t for t in self.storage.query(taskId=dao.taskId)]

    def assertCaught(self, problems, *words):
        self.assertTrue(problems)
        self.assertTrue(
            any(all(w in p for w in words) for p in problems),
            'no problem says %r: %s' % (words, problems))

    def test_a_sound_store_passes(self):
        result = check_store(self.storage)
        self.assertEqual(result.problems, [])
        self.assertTrue(result.ok)
        self.assertEqual(result.counts['batches'], 2)
        self.assertGreater(result.counts['sessions'], 50)
        self.assertGreater(result.counts['hits'],
                           result.counts['sessions'])
        self.assertTrue(result.summary().startswith('ok: '))

    def test_index_entry_without_record(self):
        name = break_indexes(self.storage, 'orphan')
        self.assertCaught(self.broken(), "'userName' index", name,
                          'no record')

    def test_record_missing_from_an_index(self):
        name = break_indexes(self.storage, 'unindexed')
        self.assertCaught(self.broken(), name,
                          "missing from the 'timeStamp' index")

    def test_batch_counter_off(self):
        run_id, batch = next(iter(self.records.batches.items()))
        held = batch.session_counter
        batch.counter.change(1)
        self.assertCaught(self.broken(), 'batch %s counts %d sessions but '
                          'holds %d' % (run_id, held + 1, held))

    def test_session_in_two_batches(self):
        first, second = list(self.records.batches)
        track = next(t for t in self.sessions() if t.runId == first)
        self.records.numbers[slot(second, 4000)] = int(track.__name__)
        self.records.batches[second].counter.change(1)
        problems = self.broken()
        self.assertCaught(problems, repr(track.data['session_id']),
                          'is in 2 batches: %s, %s' % (first, second))

    def test_hit_in_two_sessions(self):
        one, other = self.sessions()[:2]
        event = one.data['events'][0]
        self.storage.updateTrack(
            other, {'events': other.data['events'] + [event]})
        self.assertCaught(self.broken(), 'hit %s is in 2 sessions'
                          % event['event_id'], one.data['session_id'],
                          other.data['session_id'])

    def test_hit_whose_id_was_not_taken_in(self):
        from trackstore.hitstore import hit_state
        from trackstore.hitstore import id_key
        track = self.sessions()[0]
        stray = dict(track.data['events'][0], event_id='never-loaded')
        self.storage.updateTrack(
            track, {'events': track.data['events'] + [stray]})
        self.assertNotIn(id_key('never-loaded'),
                         hit_state(self.storage).ids)
        self.assertCaught(self.broken(), 'hit never-loaded is in session '
                          '%s but its id is not among the hits taken in'
                          % track.data['session_id'])

    def test_session_id_pointing_elsewhere(self):
        one, other = self.sessions()[:2]
        sid = one.data['session_id']
        self.records.ids[sid] = int(other.__name__)
        self.assertCaught(self.broken(), 'session %r points at track %s, '
                          'which is session' % (sid, other.__name__))

    def test_command(self):
        # Sound: exit 0 and one line; broken: each problem, exit 1.
        def check(*args):
            return subprocess.run(
                TRACKSTORE + ['check', '--db', self.path] + list(args),
                capture_output=True, text=True, env=python_env(),
                timeout=300)
        self.conn.close()
        self.db.close()
        proc = check()
        self.assertEqual(proc.returncode, 0, proc.stderr)
        self.assertRegex(proc.stdout, r'^ok: \d+ tracks, \d+ sessions in '
                                      r'2 batches, \d+ hits checked\n$')
        self.db = open_db('file://' + self.path)
        self.conn = self.db.open()
        self.storage = get_storage(self.conn)
        batch = next(iter(clickstream_records(self.storage).batches
                          .values()))
        batch.counter.change(-2)
        break_indexes(self.storage, 'orphan')
        transaction.commit()
        self.conn.close()
        self.db.close()
        proc = check()
        self.assertEqual(proc.returncode, 1)
        lines = proc.stdout.splitlines()
        self.assertEqual(len(lines), 3, proc.stdout)
        self.assertEqual(lines[-1][:12], '2 problems i')
        report = orjson.loads(check('--json').stdout)
        self.assertFalse(report['ok'])
        self.assertEqual(len(report['problems']), 2)
        self.db = open_db('file://' + self.path)
        self.conn = self.db.open()
