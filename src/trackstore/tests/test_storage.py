"""The tracking core: interfaces, keys, queries against a scan."""
import os
import shutil
import tempfile
import unittest

import transaction
import ZODB
import ZODB.FileStorage
from hypothesis import given
from hypothesis import settings
from hypothesis import strategies as st
from zope.interface.verify import verifyClass
from zope.interface.verify import verifyObject

from trackstore import Run
from trackstore import Track
from trackstore import TrackingStorage
from trackstore import ids
from trackstore import keys
from trackstore.interfaces import IRun
from trackstore.interfaces import ITrack
from trackstore.interfaces import ITrackingStorage


class InterfaceTests(unittest.TestCase):

    def test_classes_implement_their_interfaces(self):
        self.assertTrue(verifyClass(ITrackingStorage, TrackingStorage))
        self.assertTrue(verifyClass(ITrack, Track))
        self.assertTrue(verifyClass(IRun, Run))

    def test_objects_provide_their_interfaces(self):
        storage = TrackingStorage()
        trackId = storage.saveUserTrack('t', 0, 'u', {'a': 1})
        self.assertTrue(verifyObject(ITrackingStorage, storage))
        self.assertTrue(verifyObject(ITrack, storage.getTrack(trackId)))
        self.assertTrue(verifyObject(IRun, storage.getRun('t')))


values = st.one_of(
    st.none(), st.booleans(),
    st.integers(min_value=-2**70, max_value=2**70),
    st.floats(allow_nan=False), st.text(), st.binary())


def kind(value):
    if type(value) is int and not -2**63 <= value < 2**63:
        return 6    # big ints are kept by their repr, after everything
    order = [type(None), bool, int, float, str, bytes]
    return order.index(type(value))


class KeyTests(unittest.TestCase):

    @given(values, values)
    def test_encoding_preserves_order_within_a_type(self, a, b):
        if kind(a) != kind(b):
            self.assertEqual(kind(a) < kind(b),
                             keys.encode(a) < keys.encode(b))
            return
        if isinstance(a, int) and not isinstance(a, bool) and (
                abs(a) >= 2**63 or abs(b) >= 2**63):
            return  # big ints are indexed by their repr: equality only
        if a == b:
            self.assertEqual(keys.encode(a), keys.encode(b))
        else:
            self.assertEqual(a < b, keys.encode(a) < keys.encode(b))

    @given(values)
    def test_decode_inverts_encode(self, value):
        encoded = keys.encode(value) + b'rest'
        decoded, end = keys.decode(encoded)
        self.assertEqual(decoded, value)
        self.assertEqual(encoded[end:], b'rest')

    @given(st.text(), st.text())
    def test_a_prefix_matches_exactly_the_strings_with_it(self, p, s):
        self.assertEqual(keys.encode(s).startswith(keys.encode_prefix(p)),
                         s.startswith(p))

    def test_terminated_values_are_not_prefixes_of_each_other(self):
        self.assertFalse(keys.encode('u10').startswith(keys.encode('u1')))
        self.assertTrue(keys.encode('u1') < keys.encode('u10'))


names = st.text(alphabet='uv1~é\x00Z', max_size=4)
rows = st.lists(
    st.tuples(st.sampled_from(['a', 'b', 'c*']), names,
              st.integers(min_value=0, max_value=50)),
    min_size=1, max_size=60)


def scan(storage, **criteria):
    """What query() must answer, by looking at every track."""
    timeFrom = criteria.pop('timeFrom', None)
    timeTo = criteria.pop('timeTo', None)

    def matches(track):
        for name, wanted in criteria.items():
            value = track.indexValue(name)
            options = wanted if isinstance(wanted, list) else [wanted]
            if not any(value == o or (isinstance(o, str) and o.endswith('*')
                                      and isinstance(value, str)
                                      and value.startswith(o[:-1]))
                       for o in options):
                return False
        if timeFrom is not None and track.timeStamp < timeFrom:
            return False
        if timeTo is not None and track.timeStamp > timeTo:
            return False
        return True
    return sorted((t for t in storage.values() if matches(t)),
                  key=lambda t: (t.timeStamp, int(t.__name__)))


class QueryTests(unittest.TestCase):

    def fill(self, data, bulk):
        storage = TrackingStorage()
        items = [dict(taskId=task, userName=user, data={'n': n},
                      timeStamp=1000.0 + n) for task, user, n in data]
        if bulk:
            storage.saveTracks(items)
        else:
            for item in items:
                storage.saveUserTrack(item['taskId'], 0, item['userName'],
                                      item['data'],
                                      timeStamp=item['timeStamp'])
        return storage

    @settings(max_examples=60, deadline=None)
    @given(rows, st.booleans(), names, st.sampled_from(['a', 'c*', 'c']),
           st.integers(min_value=0, max_value=50))
    def test_query_agrees_with_a_scan(self, data, bulk, user, task, t):
        storage = self.fill(data, bulk)
        self.assertEqual(len(storage), len(data))
        for criteria in (
                dict(userName=user), dict(userName=user + '*'),
                dict(taskId=task), dict(taskId=task, userName=user + '*'),
                dict(taskId=[task, 'b'], timeFrom=1000.0 + t),
                dict(timeTo=1000.0 + t), dict(runId=1, userName=[user])):
            self.assertEqual(storage.query(**dict(criteria)),
                             scan(storage, **dict(criteria)), criteria)

    @settings(max_examples=30, deadline=None)
    @given(rows, st.data())
    def test_removing_and_updating_keep_indexes_right(self, data, draw):
        storage = self.fill(data, True)
        ids = [t.__name__ for t in storage.values()]
        gone = draw.draw(st.lists(st.sampled_from(ids), unique=True))
        for trackId in gone:
            storage.removeTrack(trackId)
        for track in list(storage.values())[:5]:
            storage.updateTrack(track, {'n': -1})
        self.assertEqual(len(storage), len(data) - len(gone))
        self.assertEqual(len(list(storage.values())), len(storage))
        for task in ('a', 'b', 'c*'):
            self.assertEqual(storage.query(taskId=task),
                             scan(storage, taskId=task))
            users = sorted({t.userName for t in scan(storage, taskId=task)})
            self.assertEqual(storage.getUserNames(task), users)
        storage.reindexTracks()
        self.assertEqual(storage.query(userName='*'), scan(storage))

    def test_data_keys_need_not_be_strings(self):
        storage = TrackingStorage()
        trackId = storage.saveUserTrack('t', 0, 'u', {1: 'one'})
        storage.updateTrack(storage.getTrack(trackId), {2: 'two'})
        self.assertEqual(storage.getTrack(trackId).data, {1: 'one', 2: 'two'})
        storage.saveUserTrack('t', 0, 'u', {3: 'three'}, update=True)
        self.assertEqual(storage.getTrack(trackId).data,
                         {1: 'one', 2: 'two', 3: 'three'})

    def test_order_is_exact_for_equal_time_stamps(self):
        storage = TrackingStorage()
        ids = [storage.saveUserTrack('t', 0, 'u', {'i': i}, timeStamp=5.0)
               for i in range(20)]
        self.assertEqual([t.__name__ for t in storage.query(taskId='t')],
                         ids)
        self.assertEqual(storage.getLastUserTrack('t', 0, 'u').data,
                         {'i': 19})

    def test_ids_beyond_seven_digits_sort_numerically(self):
        storage = TrackingStorage()
        storage.partitions[0].lastId = 9_999_998
        ids = [storage.saveUserTrack('t', 0, 'u', {}, timeStamp=1.0)
               for _ in range(3)]
        self.assertEqual(ids, ['9999999', '10000000', '10000001'])
        self.assertEqual([t.__name__ for t in storage.query(userName='u')],
                         ids)

    def test_ids_and_counts_use_64_bits(self):
        storage = TrackingStorage()
        storage.partitions[0].lastId = 2**33
        trackId = storage.saveUserTrack('t', 0, 'u', {})
        self.assertEqual(int(trackId), 2**33 + 1)
        self.assertEqual(storage.getTrack(trackId).data, {})

    def test_task_ids_of_several_types(self):
        storage = TrackingStorage()
        for task in ('b', 'a', 3, 'a'):
            storage.saveUserTrack(task, 0, 'u', {})
        self.assertEqual(storage.getTaskIds(), [3, 'a', 'b'])


class PersistenceTests(unittest.TestCase):

    def setUp(self):
        self.dir = tempfile.mkdtemp()
        self.path = os.path.join(self.dir, 'data.fs')
        self.db = ZODB.DB(ZODB.FileStorage.FileStorage(self.path))

    def tearDown(self):
        transaction.abort()
        self.db.close()
        shutil.rmtree(self.dir)

    def test_concurrent_saves_in_one_run_merge_the_run(self):
        tm1 = transaction.TransactionManager()
        tm2 = transaction.TransactionManager()
        c1 = self.db.open(transaction_manager=tm1)
        c1.root()['s'] = TrackingStorage()
        runId = c1.root()['s'].startRun('t', start=1e9)
        c1.root()['s'].saveUserTrack('t', 0, 'u1', {}, timeStamp=1e9)
        tm1.commit()
        c2 = self.db.open(transaction_manager=tm2)
        c2.root()['s'].saveUserTrack('t', 0, 'u2', {}, timeStamp=1e9)
        tm2.commit()
        tm1.begin()     # see the other connection's partition claim
        # Both connections change the run at once.
        c1.root()['s'].saveUserTrack('t', runId, 'u1', {}, timeStamp=3e9)
        c2.root()['s'].saveUserTrack('t', runId, 'u2', {}, timeStamp=2e9)
        self.assertEqual(c2.root()['s'].stopRun('t'), runId)
        tm2.commit()
        tm1.commit()    # no ConflictError: the run merges
        c3 = self.db.open()
        storage = c3.root()['s']
        run = storage.getRun(runId=runId)
        self.assertEqual((run.end, run.finished), (3e9, True))
        self.assertIsNone(storage.getRun('t'))
        self.assertEqual(len(storage.query(runId=runId)), 4)
        self.assertEqual(len(storage.partitions), 2)
        c3.close()

    def test_a_released_partition_is_reused(self):
        conn = self.db.open()
        conn.root()['s'] = storage = TrackingStorage()
        storage.saveUserTrack('t', 0, 'u', {})
        ids.release(storage)
        transaction.commit()
        conn.close()
        conn = self.db.open()
        self.assertEqual(conn.root()['s'].saveUserTrack('t', 0, 'u', {}),
                         '0000002')
        transaction.commit()
        conn.close()


class RemovalTests(unittest.TestCase):

    def test_removing_a_track_of_a_busy_user_reads_little(self):
        import trackstore.storage
        storage = TrackingStorage()
        storage.saveTracks(dict(taskId='t', userName='', data={'i': i})
                           for i in range(5000))
        storage.saveUserTrack('other', 0, '', {})
        decoded = []
        original = trackstore.storage.load_record

        def counting(record):
            decoded.append(record)
            return original(record)
        trackstore.storage.load_record = counting
        try:
            storage.removeTrack('0000001')
        finally:
            trackstore.storage.load_record = original
        # The track itself and the first remaining one, not all 5000.
        self.assertLess(len(decoded), 10)
        self.assertEqual(storage.getUserNames('t'), [''])
        storage.removeTrack('0005001')
        self.assertEqual(storage.getUserNames('other'), [])
        self.assertEqual(storage.getUserNames('t'), [''])


class PairMemoryTests(unittest.TestCase):
    """A writer remembers the (task, user) pairs it stored; what others
    remove, or what it aborted, must not stay remembered."""

    def setUp(self):
        self.dir = tempfile.mkdtemp()
        self.db = ZODB.DB(ZODB.FileStorage.FileStorage(
            os.path.join(self.dir, 'data.fs')))
        self.tm1 = transaction.TransactionManager()
        self.tm2 = transaction.TransactionManager()
        self.c1 = self.db.open(transaction_manager=self.tm1)
        self.c1.root()['s'] = TrackingStorage()
        self.tm1.commit()
        self.c2 = self.db.open(transaction_manager=self.tm2)

    def tearDown(self):
        self.tm1.abort()
        self.tm2.abort()
        self.db.close()
        shutil.rmtree(self.dir)

    def test_a_pair_removed_elsewhere_is_written_again(self):
        s1 = self.c1.root()['s']
        first = s1.saveUserTrack('t', 0, 'u', {})
        self.tm1.commit()
        self.tm2.begin()
        s2 = self.c2.root()['s']
        s2.removeTrack(first)
        self.assertEqual(s2.getUserNames('t'), [])
        self.tm2.commit()
        self.tm1.begin()
        s1.saveUserTrack('t', 0, 'u', {})
        self.tm1.commit()
        self.tm2.begin()
        self.assertEqual(s2.getUserNames('t'), ['u'])

    def test_an_aborted_pair_is_written_again(self):
        s1 = self.c1.root()['s']
        s1.saveUserTrack('t', 0, 'u', {})
        self.tm1.commit()
        s1.saveUserTrack('t', 0, 'v', {})
        self.tm1.abort()
        s1.saveUserTrack('t', 0, 'v', {})
        self.tm1.commit()
        self.tm2.begin()
        self.assertEqual(self.c2.root()['s'].getUserNames('t'), ['u', 'v'])


class PageTrack(Track):
    """A track factory with an extra index and no run index."""
    index_attributes = ('taskId', 'userName', 'timeStamp', 'page')


class IndexAttributeTests(unittest.TestCase):

    def test_a_factory_without_a_run_index_saves_and_reads(self):
        storage = TrackingStorage(trackFactory=PageTrack)
        first = storage.saveUserTrack('t', 0, 'u', {'page': '/a'},
                                      timeStamp=1)
        storage.saveTracks([dict(taskId='t', userName='u',
                                 data={'page': '/b'}, timeStamp=2)])
        runId = storage.getRun('t').id
        self.assertEqual([t.data['page'] for t in storage.getUserTracks(
            't', 0, 'u')], ['/a', '/b'])
        self.assertEqual(storage.getLastUserTrack('t', 0, 'u').data,
                         {'page': '/b'})
        with self.assertRaises(ValueError):
            storage.query(runId=runId)
        storage.updateTrack(first, {'page': '/c'})
        self.assertEqual(storage.checkIndexes(), [])
        self.assertEqual(storage.removeRun('t', runId), 2)
        self.assertEqual(len(storage), 0)
        self.assertEqual(storage.checkIndexes(), [])

    def test_extra_indexes_are_queried(self):
        storage = TrackingStorage(trackFactory=PageTrack)
        for n, page in enumerate(['/a', '/b', '/a', '/ab']):
            storage.saveUserTrack('t', 0, 'u%d' % n, {'page': page},
                                  timeStamp=n)
        self.assertEqual([t.userName for t in storage.query(page='/a')],
                         ['u0', 'u2'])
        self.assertEqual([t.userName for t in storage.query(page='/a*')],
                         ['u0', 'u2', 'u3'])
        self.assertEqual([t.userName for t in storage.query(
            page='/a', userName='u2')], ['u2'])
        storage.updateTrack(storage.query(page='/b')[0], {'page': '/a'})
        self.assertEqual(len(storage.query(page='/a')), 3)
        self.assertEqual(storage.query(page='/b'), [])
        self.assertEqual(storage.checkIndexes(), [])

    def test_index_statistics(self):
        storage = TrackingStorage()
        for n in range(6):
            storage.saveUserTrack('t', 0, 'u%d' % (n % 3), {})
        from trackstore.interfaces import ITrackIndex
        index = storage.partitions[0].index('userName')
        self.assertEqual(index.documentCount(), 6)
        self.assertEqual(index.wordCount(), 3)
        self.assertEqual(storage.partitions[0].index('taskId').wordCount(),
                         1)
        for index in storage.partitions[0].indexes.values():
            self.assertTrue(verifyObject(ITrackIndex, index))


class LayoutTests(unittest.TestCase):

    def test_reindexing_upgrades_an_old_layout(self):
        from trackstore.index import Segmented
        storage = TrackingStorage()
        for n in range(5):
            storage.saveUserTrack('t', 0, 'u%d' % (n % 2), {'n': n})
        # What a store of key layout 1 looks like to this version.
        storage.keyLayout = 1
        partition = storage.partitions[0]
        partition.indexes = {name: Segmented()
                             for name in storage.indexNames}
        with self.assertRaises(ValueError):
            storage.query(taskId='t')
        self.assertEqual(len(storage.checkIndexes()), 1)
        storage.reindexTracks()
        self.assertEqual(storage.keyLayout, 2)
        self.assertEqual(len(storage.query(taskId='t', userName='u0')), 3)
        self.assertEqual(storage.checkIndexes(), [])
