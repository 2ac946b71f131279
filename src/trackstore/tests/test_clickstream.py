"""The clickstream DAO: models, every method and edge case, the adapter
registration, persistence on a FileStorage, and concurrent writers."""
import collections
import os
import shutil
import tempfile
import threading
import time
import unittest

import transaction
import ZODB
import zope.component
import zope.component.testing
import zope.configuration.xmlconfig
from hypothesis import given
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine
from hypothesis.stateful import invariant
from hypothesis.stateful import rule
from ZODB.FileStorage import FileStorage
from ZODB.POSException import ConflictError
from zope.interface.verify import verifyClass
from zope.interface.verify import verifyObject

import trackstore
from trackstore import TrackingStorage
from trackstore.clickstream import ClickstreamDao
from trackstore.clickstream import RegisteredSession
from trackstore.clickstream import SearchResultItem
from trackstore.clickstream import Session
from trackstore.clickstream import SessionBatch
from trackstore.clickstream import SessionBatchStatus
from trackstore.clickstream import SessionEvent
from trackstore.clickstream import SessionNotFound
from trackstore.clickstream import SessionWithEvents
from trackstore.clickstream.records import ANNOTATION_KEY
from trackstore.clickstream.records import ClickstreamRecords
from trackstore.clickstream.records import clickstream_records
from trackstore.clickstream.records import slot
from trackstore.db import Writer
from trackstore.interfaces import IClickstreamBulkDao
from trackstore.interfaces import IClickstreamDao
from trackstore.interfaces import ITrackingStorage


def session(sid, created_at=1_700_000_000, user_id=None, query='shoes',
            **kw):
    return Session(session_id=sid, search_query=query, created_at=created_at,
                   search_results=[SearchResultItem(object_id='o1', rank=1.0),
                                   SearchResultItem(object_id='o2')],
                   user_id=user_id, **kw)


def event(sid, eid, created_at=1_700_000_010, object_id='o1', **kw):
    return SessionEvent(event_id=eid, session_id=sid, object_id=object_id,
                        event_type='click', created_at=created_at, **kw)


def tracks(storage, **criteria):
    return storage.query(taskId='clickstream', **criteria)


def sessions_of(found):
    """``(session id, [event ids])`` of session tracks, by session id:
    a session is one track, its events are in the track's data."""
    return sorted((t.data['session_id'],
                   [e['event_id'] for e in t.data['events']])
                  for t in found)


# What a session track's data holds: the Session fields, the session's
# number in its batch and its events.
TRACK_KEYS = sorted(list(Session.model_fields) + ['session_number',
                                                  'events'])


class ModelTests(unittest.TestCase):
    """The models have the MongoDB implementation's fields and enums."""

    def test_fields(self):
        self.assertEqual(list(SearchResultItem.model_fields),
                         ['object_id', 'rank', 'meta'])
        self.assertEqual(list(Session.model_fields), [
            'session_id', 'search_query', 'created_at', 'search_results',
            'search_meta', 'payload_filter', 'sort_by', 'user_id',
            'is_irrelevant', 'is_payload_search'])
        self.assertEqual(list(RegisteredSession.model_fields)[-2:],
                         ['batch_id', 'session_number'])
        self.assertEqual(list(SessionWithEvents.model_fields)[-1],
                         'events')
        self.assertEqual(list(SessionEvent.model_fields), [
            'event_id', 'session_id', 'object_id', 'event_type',
            'created_at', 'meta'])
        self.assertEqual(list(SessionBatch.model_fields), [
            'batch_id', 'session_counter', 'created_at', 'status',
            'release_id', 'released_at'])
        self.assertTrue(issubclass(SessionWithEvents, RegisteredSession))
        self.assertTrue(issubclass(RegisteredSession, Session))

    def test_statuses(self):
        self.assertEqual([s.value for s in SessionBatchStatus], [
            'collecting', 'released', 'fine_tuning', 'archiving',
            'archived'])
        self.assertEqual(SessionBatchStatus.fine_tuning, 'fine_tuning')

    def test_optional_fields_default_to_none(self):
        s = Session(session_id='s', search_query={'text': 'x'},
                    created_at=1, search_results=[{'object_id': 'a'}])
        self.assertIsNone(s.search_meta)
        self.assertIsNone(s.payload_filter)
        self.assertIsNone(s.sort_by)
        self.assertIsNone(s.user_id)
        self.assertFalse(s.is_irrelevant)
        self.assertFalse(s.is_payload_search)
        self.assertIsNone(s.search_results[0].rank)
        self.assertIsNone(s.search_results[0].meta)
        e = SessionEvent(event_id='e', session_id='s', object_id='a',
                         event_type='click', created_at=2)
        self.assertIsNone(e.meta)

    def test_required_fields(self):
        with self.assertRaises(ValueError):
            Session(session_id='s', created_at=1, search_results=[])
        with self.assertRaises(ValueError):
            SessionEvent(event_id='e', session_id='s', object_id='a',
                         event_type='click')
        with self.assertRaises(ValueError):
            SessionBatch(batch_id='1', session_counter=0, created_at=1,
                         status='finished')


class DaoTestCase(unittest.TestCase):

    def setUp(self):
        self.storage = TrackingStorage()
        self.dao = ClickstreamDao(self.storage)


class AdapterTests(DaoTestCase):

    def tearDown(self):
        zope.component.testing.tearDown()

    def test_provides_interfaces(self):
        self.assertTrue(verifyClass(IClickstreamBulkDao, ClickstreamDao))
        self.assertTrue(verifyObject(IClickstreamDao, self.dao))
        self.assertTrue(verifyObject(IClickstreamBulkDao, self.dao))

    def test_zcml_registers_the_adapter(self):
        zope.component.testing.setUp()
        with self.assertRaises(TypeError):
            IClickstreamDao(self.storage)
        zope.configuration.xmlconfig.file('configure.zcml', trackstore)
        dao = IClickstreamDao(self.storage)
        self.assertIsInstance(dao, ClickstreamDao)
        self.assertIs(dao.storage, self.storage)

    def test_one_line_registration(self):
        zope.component.testing.setUp()
        zope.component.provideAdapter(ClickstreamDao)
        dao = IClickstreamDao(self.storage)
        self.assertIsInstance(dao, ClickstreamDao)
        self.assertTrue(ITrackingStorage.providedBy(dao.storage))

    def test_adapter_keeps_no_state(self):
        self.dao.register_session(session('s1'))
        other = ClickstreamDao(self.storage)
        self.assertEqual(other.get_session('s1').session_number, 1)
        self.assertEqual(sorted(vars(self.dao)), ['storage'])

    def test_records_only_find_tracks(self):
        self.assertIsNone(clickstream_records(self.storage))
        self.dao.register_session(session('s1'))
        self.dao.push_events([event('s1', 'e1')])
        records = clickstream_records(self.storage)
        self.assertIsInstance(records, ClickstreamRecords)
        self.assertIs(records, self.storage.__annotations__[ANNOTATION_KEY])
        self.assertIs(clickstream_records(self.storage, 'clickstream'),
                      records)
        self.assertEqual(sorted(vars(records)), [
            'batches', 'clients', 'collecting', 'ids', 'numbers',
            'releases', 'visits_version'])
        self.assertEqual(records.collecting, 1)
        # a search session is no visit
        self.assertEqual(records.visits_version(), 0)
        (track,) = tracks(self.storage)
        track_id = int(track.__name__)
        self.assertEqual(dict(records.ids), {'s1': track_id})
        self.assertEqual(dict(records.numbers),
                         {slot(1, 1): track_id})
        self.assertEqual(slot(1, 1), (1 << 32) | 1)
        self.assertEqual(list(records.batches), [1])
        self.assertEqual(len(records.clients), 0)
        self.assertEqual(len(records.releases), 0)
        # The session and its events are that one track, nothing else.
        self.assertEqual(len(self.storage), 1)
        self.assertEqual(sorted(track.data), TRACK_KEYS)
        self.assertEqual(track.data['events'], [{
            'event_id': 'e1', 'object_id': 'o1', 'event_type': 'click',
            'created_at': 1_700_000_010, 'meta': None}])
        # Another task keeps records of its own, made on first use.
        self.assertIsNone(clickstream_records(self.storage, 'other'))
        other = clickstream_records(self.storage, 'other', create=True)
        self.assertIsNot(other, records)
        self.assertIs(clickstream_records(self.storage, 'other'), other)


class ClientIndexTests(DaoTestCase):
    """``clients`` finds the visits (sessions made from hits, with
    ``search_meta['client']``) of a client, and follows every change."""

    def clients(self):
        return {client: sorted(sids) for client, sids in
                clickstream_records(self.storage).clients.items()}

    def visit(self, sid, client, **kw):
        return session(sid, search_meta={'client': client}, **kw)

    def test_follows_registrations_updates_and_bulk_stores(self):
        self.dao.register_session(self.visit('v1', 'c1'))
        self.dao.register_session(session('s1', search_meta={'k': 1}))
        self.dao.register_session(self.visit('v1', 'c1'))
        self.dao.store_sessions([(self.visit('v2', 'c1'), []),
                                 (self.visit('v3', 'c2'), []),
                                 (self.visit('v2', 'c1'), [])])
        self.assertEqual(self.clients(), {'c1': ['v1', 'v2'],
                                          'c2': ['v3']})
        # Moving a visit keeps it once under its client.
        self.dao.release_batch('r1')
        self.dao.update_session(self.visit('v1', 'c1', query='more'))
        self.assertEqual(self.clients(), {'c1': ['v1', 'v2'],
                                          'c2': ['v3']})
        # A visit that changes client changes entries; the last visit
        # of a client takes the client's entry with it.
        self.dao.update_session(self.visit('v3', 'c1'))
        self.assertEqual(self.clients(), {'c1': ['v1', 'v2', 'v3']})
        self.dao.update_session(session('v2'))
        self.assertEqual(self.clients(), {'c1': ['v1', 'v3']})
        self.assertEqual(len(self.storage), 4)


class RegisterTests(DaoTestCase):

    def test_numbers_are_one_based_in_the_collecting_batch(self):
        first = self.dao.register_session(session('s1', user_id='u1'))
        second = self.dao.register_session(session('s2'))
        self.assertIsInstance(first, RegisteredSession)
        self.assertEqual((first.session_number, second.session_number),
                         (1, 2))
        run = self.storage.getRun('clickstream')
        self.assertEqual(first.batch_id, str(run.id))
        self.assertEqual(second.batch_id, first.batch_id)
        batch = self.dao.get_batch(first.batch_id)
        self.assertEqual(batch.status, SessionBatchStatus.collecting)
        self.assertEqual(batch.session_counter, 2)
        self.assertIsNone(batch.release_id)
        self.assertIsNone(batch.released_at)
        self.assertLessEqual(abs(batch.created_at - time.time()), 5)

    def test_session_is_a_track(self):
        reg = self.dao.register_session(session('s1', user_id='u1'))
        self.dao.register_session(session('s2'))
        (track,) = self.storage.query(taskId='clickstream', userName='u1')
        self.assertEqual(track.taskId, 'clickstream')
        self.assertEqual(track.runId, int(reg.batch_id))
        self.assertEqual(track.userName, 'u1')
        self.assertEqual(track.timeStamp, 1_700_000_000)
        self.assertEqual(sorted(track.data), TRACK_KEYS)
        self.assertEqual(track.data['session_id'], 's1')
        self.assertEqual(track.data['search_query'], 'shoes')
        self.assertEqual(track.data['search_results'], [
            {'object_id': 'o1', 'rank': 1.0, 'meta': None},
            {'object_id': 'o2', 'rank': None, 'meta': None}])
        self.assertEqual(track.data['session_number'], 1)
        self.assertEqual(track.data['events'], [])
        (anonymous,) = self.storage.query(taskId='clickstream', userName='')
        self.assertEqual(anonymous.data['session_id'], 's2')
        self.assertEqual(anonymous.data['user_id'], None)
        self.assertEqual(len(self.storage), 2)

    def test_duplicate_returns_the_stored_session(self):
        first = self.dao.register_session(session('s1', query='a'))
        again = self.dao.register_session(session('s1', query='b'))
        self.assertEqual(again, first)
        self.assertEqual(again.search_query, 'a')
        self.assertEqual(self.dao.get_batch(first.batch_id).session_counter,
                         1)
        self.assertEqual(len(tracks(self.storage)), 1)

    def test_duplicate_after_release_keeps_its_batch(self):
        first = self.dao.register_session(session('s1'))
        self.dao.release_batch('r1')
        again = self.dao.register_session(session('s1'))
        self.assertEqual((again.batch_id, again.session_number),
                         (first.batch_id, 1))
        self.assertIsNone(self.storage.getRun('clickstream'))

    def test_accepts_dicts(self):
        reg = self.dao.register_session(dict(
            session_id='s1', search_query='q', created_at=5,
            search_results=[{'object_id': 'a', 'rank': 0.5}]))
        self.assertEqual(reg.search_results[0].rank, 0.5)
        with self.assertRaises(ValueError):
            self.dao.register_session({'session_id': 's2'})
        self.assertIsNone(self.dao.get_session('s2'))

    def test_subclass_instances_register_as_plain_sessions(self):
        reg = self.dao.register_session(RegisteredSession(
            **session('s1').model_dump(), batch_id='99',
            session_number=42))
        self.assertEqual((reg.batch_id, reg.session_number), ('1', 1))


class UpdateTests(DaoTestCase):

    def test_unknown_session_is_an_error(self):
        with self.assertRaises(SessionNotFound) as caught:
            self.dao.update_session(session('nope'))
        self.assertIsInstance(caught.exception, KeyError)
        self.assertIn("'nope'", str(caught.exception))
        self.assertEqual(caught.exception.session_ids, ('nope',))
        self.assertEqual(len(self.storage), 0)

    def test_moves_into_the_collecting_batch(self):
        old = self.dao.register_session(session('s1', user_id='u1'))
        self.dao.register_session(session('s2'))
        self.dao.push_events([event('s1', 'e1'), event('s1', 'e2')])
        self.dao.release_batch('r1')
        self.dao.register_session(session('s3'))
        new = self.dao.update_session(session('s1', user_id='u2',
                                              query='boots'))
        self.assertNotEqual(new.batch_id, old.batch_id)
        self.assertEqual(new.session_number, 2)
        self.assertEqual(new.search_query, 'boots')
        self.assertEqual(self.dao.get_batch(old.batch_id).session_counter,
                         1)
        self.assertEqual(self.dao.get_batch(new.batch_id).session_counter,
                         2)
        self.assertEqual(
            [s.session_id for s in
             self.dao.get_batch_sessions(old.batch_id)], ['s2'])
        self.assertEqual(
            [s.session_id for s in
             self.dao.get_batch_sessions(new.batch_id)], ['s3', 's1'])
        stored = self.dao.get_session('s1')
        self.assertEqual(stored.search_query, 'boots')
        self.assertEqual([e.event_id for e in stored.events], ['e1', 'e2'])
        # The session's one track moved with its events: its run is the
        # new batch, its user the new user; the old track is gone.
        self.assertEqual(
            sessions_of(tracks(self.storage, runId=int(old.batch_id))),
            [('s2', [])])
        self.assertEqual(
            sessions_of(tracks(self.storage, runId=int(new.batch_id))),
            [('s1', ['e1', 'e2']), ('s3', [])])
        self.assertEqual(tracks(self.storage, userName='u1'), [])
        (track,) = tracks(self.storage, userName='u2')
        self.assertEqual(track.runId, int(new.batch_id))
        self.assertEqual(track.data['session_number'], 2)
        self.assertEqual(track.data['search_query'], 'boots')
        self.assertEqual(len(self.storage), 3)
        records = clickstream_records(self.storage)
        self.assertEqual(records.ids['s1'], int(track.__name__))
        self.assertEqual(records.numbers[slot(int(new.batch_id), 2)],
                         int(track.__name__))
        self.assertNotIn(slot(int(old.batch_id), 1), records.numbers)

    def test_within_the_collecting_batch_takes_a_new_number(self):
        self.dao.register_session(session('s1'))
        self.dao.register_session(session('s2'))
        new = self.dao.update_session(session('s1', query='other'))
        self.assertEqual((new.batch_id, new.session_number), ('1', 3))
        self.assertEqual(self.dao.get_batch('1').session_counter, 2)
        self.assertEqual(
            [(s.session_id, s.session_number)
             for s in self.dao.get_batch_sessions('1')],
            [('s2', 2), ('s1', 3)])
        # Numbers are never reused: the next session gets 4, not 3.
        self.assertEqual(
            self.dao.register_session(session('s3')).session_number, 4)
        self.assertEqual(len(tracks(self.storage)), 3)
        self.assertEqual(
            sorted(t.data['session_number'] for t in tracks(self.storage)),
            [2, 3, 4])


class EventTests(DaoTestCase):

    def setUp(self):
        super().setUp()
        self.reg = self.dao.register_session(session('s1', user_id='u1'))
        self.dao.register_session(session('s2'))

    def test_duplicates_are_skipped_the_rest_stored(self):
        stored = self.dao.push_events([event('s1', 'e1'),
                                       event('s2', 'e1')])
        self.assertEqual(len(stored), 2)
        stored = self.dao.push_events([
            event('s1', 'e1', object_id='changed'), event('s1', 'e2'),
            event('s1', 'e2', object_id='twice in one call')])
        self.assertEqual([(e.event_id, e.object_id) for e in stored],
                         [('e2', 'o1')])
        events = self.dao.get_session('s1').events
        self.assertEqual([(e.event_id, e.object_id) for e in events],
                         [('e1', 'o1'), ('e2', 'o1')])
        # Events are kept in their session's track, not as tracks.
        self.assertEqual(len(tracks(self.storage)), 2)
        self.assertEqual(sessions_of(tracks(self.storage)),
                         [('s1', ['e1', 'e2']), ('s2', ['e1'])])
        # Only duplicates: nothing new is returned or stored.
        before = [(t.__name__, t.data) for t in tracks(self.storage)]
        self.assertEqual(self.dao.push_events([event('s1', 'e2'),
                                               event('s2', 'e1')]), [])
        self.assertEqual([(t.__name__, t.data) for t in tracks(self.storage)],
                         before)

    def test_unknown_session_stores_nothing(self):
        with self.assertRaises(SessionNotFound) as caught:
            self.dao.push_events([event('s1', 'e1'), event('x', 'e1'),
                                  event('y', 'e1')])
        self.assertEqual(caught.exception.session_ids, ('x', 'y'))
        self.assertEqual(self.dao.get_session('s1').events, [])
        self.assertEqual(len(self.storage), 2)

    def test_unknown_session_in_an_empty_storage(self):
        dao = ClickstreamDao(TrackingStorage())
        with self.assertRaises(SessionNotFound):
            dao.push_events([event('s1', 'e1')])
        self.assertEqual(dao.push_events([]), [])

    def test_oldest_first(self):
        self.dao.push_events([event('s1', 'late', created_at=30),
                              event('s1', 'early', created_at=10)])
        self.dao.push_events([event('s1', 'middle', created_at=20),
                              event('s1', 'tie', created_at=20)])
        self.assertEqual(
            [e.event_id for e in self.dao.get_session('s1').events],
            ['early', 'middle', 'tie', 'late'])

    def test_events_are_in_the_session_track(self):
        self.dao.push_events([event('s1', 'e2', meta={'pos': 3},
                                    created_at=1_700_000_020),
                              event('s1', 'e1')])
        (track,) = tracks(self.storage, userName='u1')
        self.assertEqual(track.data['session_id'], 's1')
        self.assertEqual(track.runId, int(self.reg.batch_id))
        # The track keeps the session's time stamp and number.
        self.assertEqual(track.timeStamp, 1_700_000_000)
        self.assertEqual(track.data['session_number'], 1)
        # Oldest first; the session is the track, so an event does not
        # repeat its id.
        self.assertEqual(track.data['events'], [
            {'event_id': 'e1', 'object_id': 'o1', 'event_type': 'click',
             'created_at': 1_700_000_010, 'meta': None},
            {'event_id': 'e2', 'object_id': 'o1', 'event_type': 'click',
             'created_at': 1_700_000_020, 'meta': {'pos': 3}}])
        self.assertEqual(len(self.storage), 2)
        self.assertEqual(
            [e.model_dump() for e in self.dao.get_session('s1').events],
            [dict(e, session_id='s1') for e in track.data['events']])

    def test_accepts_dicts(self):
        self.dao.push_events([dict(event_id='e', session_id='s1',
                                   object_id='a', event_type='view',
                                   created_at=3)])
        (e,) = self.dao.get_session('s1').events
        self.assertEqual(e.event_type, 'view')


class ReadTests(DaoTestCase):

    def test_get_session(self):
        self.assertIsNone(self.dao.get_session('s1'))
        self.dao.register_session(session('s1', search_meta={'k': 1}))
        self.dao.push_events([event('s1', 'e%03d' % i, created_at=i)
                              for i in range(120)])
        got = self.dao.get_session('s1')
        self.assertIsInstance(got, SessionWithEvents)
        self.assertEqual(got.search_meta, {'k': 1})
        self.assertEqual(len(got.events), 100)
        self.assertEqual(got.events[0].event_id, 'e000')
        self.assertEqual(len(self.dao.get_session('s1', 5).events), 5)
        self.assertEqual(
            len(self.dao.get_session('s1', events_limit=None).events), 120)

    def test_paging(self):
        for i in range(1, 8):
            self.dao.register_session(session('s%d' % i))
            self.dao.push_events([event('s%d' % i, 'a'),
                                  event('s%d' % i, 'b')])

        def numbers(**kw):
            return [s.session_number
                    for s in self.dao.get_batch_sessions('1', **kw)]
        self.assertEqual(numbers(), [1, 2, 3, 4, 5, 6, 7])
        self.assertEqual(numbers(after_number=0), [1, 2, 3, 4, 5, 6, 7])
        self.assertEqual(numbers(after_number=3), [4, 5, 6, 7])
        self.assertEqual(numbers(after_number=3, limit=2), [4, 5])
        self.assertEqual(numbers(after_number=7), [])
        self.assertEqual(numbers(limit=0), [])
        page = self.dao.get_batch_sessions('1', limit=1, events_limit=1)
        self.assertEqual([e.event_id for e in page[0].events], ['a'])
        self.assertEqual(
            len(self.dao.get_batch_sessions('1')[0].events), 2)
        # A consumer's walk: each page starts after the last number seen.
        seen, cursor = [], 0
        while True:
            page = self.dao.get_batch_sessions('1', after_number=cursor,
                                               limit=3)
            if not page:
                break
            seen.extend(s.session_id for s in page)
            cursor = page[-1].session_number
        self.assertEqual(seen, ['s%d' % i for i in range(1, 8)])

    def test_iter_records(self):
        self.assertEqual(list(self.dao.iter_records()), [])
        for i in range(1, 5):
            self.dao.register_session(session('s%d' % i, user_id='u'))
            self.dao.push_events([event('s%d' % i, 'e%d' % k, created_at=k)
                                  for k in range(i, 0, -1)])
        self.dao.release_batch('r1')
        self.dao.update_session(session('s2', query='moved'))
        self.dao.register_session(session('s5'))
        records = list(self.dao.iter_records())
        # Plain dicts, by batch and number: what the models dump, with
        # every event.
        self.assertEqual(records, [
            s.model_dump() for batch in ('1', '2')
            for s in self.dao.get_batch_sessions(batch)])
        self.assertEqual(
            [(r['batch_id'], r['session_number'], r['session_id'])
             for r in records],
            [('1', 1, 's1'), ('1', 3, 's3'), ('1', 4, 's4'),
             ('2', 1, 's2'), ('2', 2, 's5')])
        self.assertEqual([e['event_id'] for e in records[2]['events']],
                         ['e1', 'e2', 'e3', 'e4'])
        self.assertEqual(records[3]['search_query'], 'moved')
        self.assertEqual(len(records[3]['events']), 2)

    def test_unknown_batches(self):
        self.assertEqual(self.dao.get_batch_sessions('1'), [])
        self.assertIsNone(self.dao.get_batch('1'))
        self.dao.register_session(session('s1'))
        for bad in ('2', '01', 'abc', '', '-1', '1.0'):
            self.assertEqual(self.dao.get_batch_sessions(bad), [], bad)
            self.assertIsNone(self.dao.get_batch(bad), bad)
        self.assertEqual(self.dao.get_batch('1').batch_id, '1')

    def test_mark_irrelevant(self):
        self.assertIsNone(self.dao.mark_session_irrelevant('s1'))
        self.dao.register_session(session('s1', user_id='u'))
        marked = self.dao.mark_session_irrelevant('s1')
        self.assertIsInstance(marked, RegisteredSession)
        self.assertTrue(marked.is_irrelevant)
        self.assertEqual(marked.session_number, 1)
        self.assertTrue(self.dao.get_session('s1').is_irrelevant)
        self.assertTrue(self.dao.get_batch_sessions('1')[0].is_irrelevant)
        (track,) = tracks(self.storage)
        self.assertTrue(track.data['is_irrelevant'])
        self.assertEqual(self.dao.mark_session_irrelevant('s1'), marked)


class BatchTests(DaoTestCase):

    def test_release_with_nothing_collecting(self):
        self.assertIsNone(self.dao.release_batch('r1'))
        self.dao.register_session(session('s1'))
        self.dao.release_batch('r1')
        self.assertIsNone(self.dao.release_batch('r2'))
        with self.assertRaises(TypeError):
            self.dao.release_batch(1)

    def test_release_is_idempotent(self):
        self.dao.register_session(session('s1'))
        released = self.dao.release_batch('r1')
        self.assertEqual(released.status, SessionBatchStatus.released)
        self.assertEqual(released.release_id, 'r1')
        self.assertEqual(released.batch_id, '1')
        self.assertIsNotNone(released.released_at)
        run = self.storage.getRun(runId=1)
        self.assertTrue(run.finished)
        self.assertIsNone(self.storage.getRun('clickstream'))
        next_one = self.dao.register_session(session('s2'))
        self.assertEqual(next_one.batch_id, '2')
        self.assertEqual(next_one.session_number, 1)
        self.assertEqual(self.storage.getRun('clickstream').id, 2)
        # The same key again: the same answer, batch 2 keeps collecting.
        self.assertEqual(self.dao.release_batch('r1'), released)
        self.assertEqual(self.dao.get_batch('2').status,
                         SessionBatchStatus.collecting)
        second = self.dao.release_batch('r2')
        self.assertEqual((second.batch_id, second.release_id), ('2', 'r2'))
        self.assertEqual(self.dao.release_batch('r2'), second)

    def test_status_changes(self):
        self.assertIsNone(self.dao.update_batch_status(
            '1', SessionBatchStatus.archived))
        self.dao.register_session(session('s1'))
        self.dao.release_batch('r1')
        for status in ('fine_tuning', SessionBatchStatus.archiving,
                       'archived'):
            batch = self.dao.update_batch_status('1', status)
            self.assertEqual(batch.status, status)
            self.assertEqual(self.dao.get_batch('1').status, status)
        self.assertEqual(batch.release_id, 'r1')
        with self.assertRaises(ValueError):
            self.dao.update_batch_status('1', 'done')
        with self.assertRaises(ValueError):
            self.dao.update_batch_status('1', 'collecting')
        self.assertEqual(self.dao.get_batch('1').status, 'archived')

    def test_status_of_the_collecting_batch(self):
        self.dao.register_session(session('s1'))
        same = self.dao.update_batch_status('1', 'collecting')
        self.assertEqual(same.status, SessionBatchStatus.collecting)
        self.dao.update_batch_status('1', 'archived')
        self.assertIsNone(self.storage.getRun('clickstream'))
        self.assertIsNone(self.dao.release_batch('r1'))
        self.assertEqual(
            self.dao.register_session(session('s2')).batch_id, '2')

    def test_tasks_are_independent(self):
        other = ClickstreamDao(self.storage, taskId='other')
        self.assertEqual(other.taskId, 'other')
        self.dao.register_session(session('s1'))
        self.assertIsNone(other.get_session('s1'))
        reg = other.register_session(session('s1'))
        self.assertEqual((reg.batch_id, reg.session_number), ('2', 1))
        other.release_batch('r')
        self.assertEqual(self.dao.get_batch('1').status, 'collecting')
        self.assertEqual(len(self.storage.query(taskId='other')), 1)


class BulkTests(DaoTestCase):

    def test_store_sessions(self):
        self.dao.register_session(session('old', query='kept'))
        self.dao.push_events([event('old', 'e1')])
        result = self.dao.store_sessions([
            (session('a', user_id='u'), [event('a', 'e1'),
                                         event('a', 'e2')]),
            (session('old', query='ignored'), [event('old', 'e1'),
                                               event('old', 'e2')]),
            (session('b'), []),
            (session('a', query='ignored'), [event('a', 'e3')]),
        ])
        self.assertEqual([(r.session_id, r.session_number, r.search_query)
                          for r in result],
                         [('a', 2, 'shoes'), ('old', 1, 'kept'),
                          ('b', 3, 'shoes'), ('a', 2, 'shoes')])
        # The same models a registration answers, nested ones included.
        self.assertEqual(result, [
            self.dao.register_session(session(sid))
            for sid in ('a', 'old', 'b', 'a')])
        self.assertIsInstance(result[0].search_results[0], SearchResultItem)
        self.assertEqual(self.dao.get_batch('1').session_counter, 3)
        self.assertEqual(
            [e.event_id for e in self.dao.get_session('a').events],
            ['e1', 'e2', 'e3'])
        self.assertEqual(
            [e.event_id for e in self.dao.get_session('old').events],
            ['e1', 'e2'])
        self.assertEqual(len(tracks(self.storage)), 3)
        self.assertEqual(len(self.storage), 3)
        self.assertEqual(sessions_of(tracks(self.storage)), [
            ('a', ['e1', 'e2', 'e3']), ('b', []), ('old', ['e1', 'e2'])])
        (track,) = tracks(self.storage, userName='u')
        self.assertEqual((track.data['session_id'], track.runId),
                         ('a', 1))

    def test_event_of_another_session_stores_nothing(self):
        with self.assertRaises(ValueError):
            self.dao.store_sessions([
                (session('a'), [event('a', 'e1')]),
                (session('b'), [event('a', 'e2')])])
        self.assertIsNone(self.dao.get_session('a'))
        self.assertEqual(len(self.storage), 0)
        self.assertEqual(self.dao.store_sessions([]), [])

    def test_records_store_what_models_store(self):
        """``store_session_records`` with the dumps of the models stores
        and answers exactly what ``store_sessions`` does."""
        items = [
            (session('a', user_id='u'), [event('a', 'e2', created_at=9),
                                         event('a', 'e1')]),
            (session('old', query='ignored'), [event('old', 'e1'),
                                               event('old', 'e2')]),
            (session('b'), []),
            (session('a', query='ignored'), [event('a', 'e3')]),
        ]
        states = []
        for raw in (False, True):
            storage = TrackingStorage()
            dao = ClickstreamDao(storage)
            dao.register_session(session('old', query='kept'))
            dao.push_events([event('old', 'e1')])
            if raw:
                returned = dao.store_session_records([
                    (s.model_dump(mode='json'),
                     [e.model_dump() for e in evs]) for s, evs in items])
            else:
                returned = [r.model_dump(mode='json')
                            for r in dao.store_sessions(items)]
            states.append((
                returned,
                [s.model_dump() for s in dao.get_batch_sessions('1')],
                dao.get_batch('1').model_dump(),
                [(t.__name__, t.runId, t.userName, t.timeStamp, t.data)
                 for t in storage.values()]))
        self.assertEqual(states[1], states[0])
        self.assertEqual(len(states[0][3]), 3)
        self.assertEqual(states[0][0][3]['search_query'], 'shoes')

    def test_records_of_another_session_store_nothing(self):
        with self.assertRaises(ValueError):
            self.dao.store_session_records([
                (session('a').model_dump(mode='json'), []),
                (session('b').model_dump(mode='json'),
                 [event('a', 'e2').model_dump()])])
        self.assertIsNone(self.dao.get_session('a'))
        self.assertEqual(len(self.storage), 0)
        self.assertEqual(self.dao.store_session_records([]), [])

    @settings(max_examples=40, deadline=None)
    @given(st.lists(
        st.tuples(st.sampled_from('abcdefgh'),
                  st.lists(st.tuples(st.sampled_from('xyz'),
                                     st.integers(0, 5)), max_size=4)),
        max_size=12),
        st.integers(0, 12))
    def test_same_as_single_calls(self, items, release_at):
        """Bulk and single calls leave the same sessions and events."""
        results = []
        for bulk in (True, False):
            storage = TrackingStorage()
            dao = ClickstreamDao(storage)
            dao.register_session(session('a', query='first'))
            chunks = [items[:release_at], items[release_at:]]
            for i, chunk in enumerate(chunks):
                if i:
                    dao.release_batch('r')
                pairs = [(session(sid, query='q%d' % i),
                          [event(sid, eid, created_at=t)
                           for eid, t in evs]) for sid, evs in chunk]
                if bulk:
                    returned = dao.store_sessions(pairs)
                else:
                    returned = []
                    for s, evs in pairs:
                        returned.append(dao.register_session(s))
                        dao.push_events(evs)
                self.assertEqual([r.model_dump() for r in returned], [
                    dao.get_session(s.session_id).model_dump(
                        exclude={'events'}) for s, _ in pairs])
            state = [s.model_dump() for batch in ('1', '2')
                     for s in dao.get_batch_sessions(batch)]
            counters = [dao.get_batch(b).session_counter
                        for b in ('1', '2') if dao.get_batch(b)]
            results.append((state, counters, len(storage)))
        self.assertEqual(results[0], results[1])


SIDS = st.sampled_from(['a', 'b', 'c', 'd', 'e'])
STATUSES = st.sampled_from([s.value for s in SessionBatchStatus])


class ContractMachine(RuleBasedStateMachine):
    """Random sequences of every call, checked against a plain model of
    the contract (dicts and counters) after each step."""

    def __init__(self):
        super().__init__()
        self.storage = TrackingStorage()
        self.dao = ClickstreamDao(self.storage)
        self.sessions = {}  # sid -> [batch, number, query, irrelevant]
        self.events = {}  # sid -> [event ids, oldest first]
        self.batches = {}  # batch -> [status, counter, last, release]
        self.collecting = None
        self.releases = {}
        self.clock = 0

    def open_batch(self):
        if self.collecting is None:
            self.collecting = len(self.batches) + 1
            self.batches[self.collecting] = ['collecting', 0, 0, None]
        batch = self.batches[self.collecting]
        batch[1] += 1
        batch[2] += 1
        return self.collecting, batch[2]

    @rule(sid=SIDS, query=st.sampled_from(['x', 'y']))
    def register(self, sid, query):
        reg = self.dao.register_session(session(sid, query=query))
        if sid not in self.sessions:
            self.sessions[sid] = list(self.open_batch()) + [query, False]
            self.events[sid] = []
        batch, number, stored_query, _ = self.sessions[sid]
        assert (reg.batch_id, reg.session_number, reg.search_query) == (
            str(batch), number, stored_query)

    @rule(sid=SIDS, query=st.sampled_from(['x', 'y']))
    def update(self, sid, query):
        if sid not in self.sessions:
            try:
                self.dao.update_session(session(sid, query=query))
            except SessionNotFound:
                return
            raise AssertionError('no SessionNotFound')
        reg = self.dao.update_session(session(sid, query=query))
        self.batches[self.sessions[sid][0]][1] -= 1
        self.sessions[sid] = list(self.open_batch()) + [query, False]
        assert (reg.batch_id, reg.session_number) == (
            str(self.sessions[sid][0]), self.sessions[sid][1])

    @rule(sid=SIDS, eids=st.lists(st.sampled_from(['1', '2', '3', '4']),
                                  max_size=3),
          other=st.booleans())
    def push(self, sid, eids, other):
        self.clock += 1
        pushed = [event(sid, eid, created_at=self.clock) for eid in eids]
        if other:
            pushed.append(event('zz', '1'))
        if not pushed:
            assert self.dao.push_events(pushed) == []
            return
        if sid not in self.sessions or other:
            before = len(self.storage)
            try:
                self.dao.push_events(pushed)
            except SessionNotFound:
                assert len(self.storage) == before
                return
            raise AssertionError('no SessionNotFound')
        new = self.dao.push_events(pushed)
        expected = []
        for eid in eids:
            if eid not in self.events[sid]:
                self.events[sid].append(eid)
                expected.append(eid)
        assert [e.event_id for e in new] == expected

    @rule(sid=SIDS)
    def mark(self, sid):
        marked = self.dao.mark_session_irrelevant(sid)
        if sid not in self.sessions:
            assert marked is None
        else:
            self.sessions[sid][3] = True
            assert marked.is_irrelevant

    @rule(rid=st.sampled_from(['r1', 'r2', 'r3']))
    def release(self, rid):
        released = self.dao.release_batch(rid)
        if rid not in self.releases:
            if self.collecting is None:
                assert released is None
                return
            self.releases[rid] = self.collecting
            self.batches[self.collecting][0] = 'released'
            self.batches[self.collecting][3] = rid
            self.collecting = None
        assert released.batch_id == str(self.releases[rid])

    @rule(batch=st.integers(1, 4), status=STATUSES)
    def set_status(self, batch, status):
        if batch not in self.batches:
            assert self.dao.update_batch_status(str(batch), status) is None
        elif batch == self.collecting:
            self.dao.update_batch_status(str(batch), status)
            if status != 'collecting':
                self.batches[batch][0] = status
                self.collecting = None
        elif status == 'collecting':
            try:
                self.dao.update_batch_status(str(batch), status)
            except ValueError:
                return
            raise AssertionError('no ValueError')
        else:
            self.dao.update_batch_status(str(batch), status)
            self.batches[batch][0] = status

    @invariant()
    def agrees_with_the_model(self):
        for batch, (status, counter, _, release) in self.batches.items():
            got = self.dao.get_batch(str(batch))
            assert (got.status, got.session_counter, got.release_id) == (
                status, counter, release)
            listed = self.dao.get_batch_sessions(str(batch))
            assert [(s.session_id, s.session_number) for s in listed] == \
                sorted(((sid, v[1]) for sid, v in self.sessions.items()
                        if v[0] == batch), key=lambda item: item[1])
            assert len(listed) == counter
            # A batch's tracks are its sessions, with their events.
            found = self.storage.query(taskId='clickstream', runId=batch)
            assert sessions_of(found) == sorted(
                (s.session_id, self.events[s.session_id]) for s in listed)
        for sid, (batch, number, query, irrelevant) in self.sessions.items():
            got = self.dao.get_session(sid)
            assert (got.batch_id, got.session_number, got.search_query,
                    got.is_irrelevant) == (str(batch), number, query,
                                           irrelevant)
            assert [e.event_id for e in got.events] == self.events[sid]
        collecting = [b for b, v in self.batches.items()
                      if v[0] == 'collecting']
        assert collecting == ([] if self.collecting is None
                              else [self.collecting])
        assert len(self.storage) == len(self.sessions)


ContractMachine.TestCase.settings = settings(
    max_examples=60, stateful_step_count=25, deadline=None)


class ContractTests(ContractMachine.TestCase):
    """The state machine above, as a unittest case."""


class FileStorageTestCase(unittest.TestCase):

    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix='trackstore-clickstream-')
        self.path = os.path.join(self.dir, 'Data.fs')
        self.db = ZODB.DB(FileStorage(self.path))

    def tearDown(self):
        self.db.close()
        shutil.rmtree(self.dir, ignore_errors=True)

    def reopen(self):
        self.db.close()
        self.db = ZODB.DB(FileStorage(self.path))


class PersistenceTests(FileStorageTestCase):

    def test_survives_a_reopen(self):
        with Writer(self.db) as w:
            w.run(lambda s: ClickstreamDao(s).store_sessions(
                [(session('s%d' % i, user_id='u'),
                  [event('s%d' % i, 'e')]) for i in range(50)]))
            w.run(lambda s: ClickstreamDao(s).release_batch('r1'))
            w.run(lambda s: ClickstreamDao(s).update_session(
                session('s7', query='moved')))
            w.run(lambda s: ClickstreamDao(s).mark_session_irrelevant('s8'))
        self.reopen()
        with Writer(self.db) as w:
            dao = ClickstreamDao(w.storage)
            self.assertEqual(dao.get_batch('1').status, 'released')
            self.assertEqual(dao.get_batch('1').session_counter, 49)
            self.assertEqual(dao.get_batch('2').session_counter, 1)
            moved = dao.get_session('s7')
            self.assertEqual((moved.batch_id, moved.search_query),
                             ('2', 'moved'))
            self.assertEqual(len(moved.events), 1)
            self.assertTrue(dao.get_session('s8').is_irrelevant)
            (track,) = w.storage.query(taskId='clickstream', runId=2)
            self.assertEqual(sessions_of([track]), [('s7', ['e'])])
            self.assertEqual(len(w.storage.query(taskId='clickstream',
                                                 runId=1)), 49)
            self.assertEqual(len(w.storage), 50)
            self.assertEqual(dao.release_batch('r1').batch_id, '1')
            # The pickles name no pydantic class: stored data does not
            # depend on the value models.
        with open(self.path, 'rb') as f:
            self.assertNotIn(b'clickstream.models', f.read())

    def test_a_push_of_duplicates_writes_nothing(self):
        with Writer(self.db) as w:
            w.run(lambda s: ClickstreamDao(s).store_sessions(
                [(session('s1'), [event('s1', 'e1'), event('s1', 'e2')])]))
            last = self.db.lastTransaction()
            new = w.run(lambda s: ClickstreamDao(s).push_events(
                [event('s1', 'e2'), event('s1', 'e1', object_id='x')]))
            self.assertEqual(new, [])
            self.assertEqual(self.db.lastTransaction(), last)
            w.run(lambda s: ClickstreamDao(s).store_sessions(
                [(session('s1'), [event('s1', 'e1')])]))
            self.assertEqual(self.db.lastTransaction(), last)
            self.assertEqual(len(w.storage), 1)


class ConflictTests(FileStorageTestCase):
    """Two connections, interleaved by hand: the second to commit of two
    racing writes conflicts, and its retry sees the first one's work."""

    def setUp(self):
        super().setUp()
        with Writer(self.db) as w:
            w.run(lambda s: ClickstreamDao(s).register_session(session('s1')))
        self.tms, self.daos = [], []
        for _ in range(2):
            tm = transaction.TransactionManager()
            conn = self.db.open(transaction_manager=tm)
            self.addCleanup(conn.close)
            self.addCleanup(tm.abort)
            self.tms.append(tm)
            self.daos.append(ClickstreamDao(conn.root()['trackstore']))
        # Each connection claims its partition of the storage now, so
        # that the races below conflict over the clickstream's records
        # only, not over the claims.
        for n, (tm, dao) in enumerate(zip(self.tms, self.daos)):
            tm.begin()
            dao.register_session(session('w%d' % n))
            tm.commit()

    def race(self, first, second):
        """Run ``first`` and ``second`` side by side; ``second`` commits
        first. Return after retrying ``first``."""
        (tm1, tm2), (dao1, dao2) = self.tms, self.daos
        tm1.begin()
        tm2.begin()
        first(dao1)
        second(dao2)
        tm2.commit()
        with self.assertRaises(ConflictError):
            tm1.commit()
        tm1.abort()
        tm1.begin()
        first(dao1)
        tm1.commit()
        tm1.begin()
        return dao1

    def test_two_registrations_do_not_conflict(self):
        # Each writer numbers from a block of its own (BatchRecord):
        # both commit, and the numbers stay unique in the batch.
        (tm1, tm2), (dao1, dao2) = self.tms, self.daos
        tm1.begin()
        tm2.begin()
        dao1.register_session(session('a'))
        dao2.register_session(session('b'))
        tm2.commit()
        tm1.commit()
        tm1.begin()
        numbers = {s.session_id: s.session_number
                   for s in dao1.get_batch_sessions('1')}
        self.assertEqual(sorted(numbers), ['a', 'b', 's1', 'w0', 'w1'])
        self.assertEqual(len(set(numbers.values())), 5)
        # A writer's numbers grow in the order it registers.
        self.assertLess(numbers['w0'], numbers['a'])
        self.assertLess(numbers['w1'], numbers['b'])
        self.assertEqual(dao1.get_batch('1').session_counter, 5)

    def test_two_new_blocks_conflict(self):
        # Two writers that both need a block write the batch record:
        # the second to commit retries and takes the next block.
        with Writer(self.db) as w:
            # A third writer opens batch 2.
            w.run(lambda s: ClickstreamDao(s).release_batch('r0'))
            w.run(lambda s: ClickstreamDao(s).register_session(
                session('x')))
        dao = self.race(
            lambda d: d.register_session(session('a')),
            lambda d: d.register_session(session('b')))
        numbers = {s.session_id: s.session_number
                   for s in dao.get_batch_sessions('2')}
        self.assertEqual(sorted(numbers), ['a', 'b', 'x'])
        self.assertEqual(len(set(numbers.values())), 3)
        self.assertEqual(dao.get_batch('2').session_counter, 3)

    def test_registration_during_a_release(self):
        dao = self.race(
            lambda d: d.register_session(session('a')),
            lambda d: d.release_batch('r1'))
        self.assertEqual(dao.get_session('a').batch_id, '2')
        self.assertEqual(dao.get_batch('1').session_counter, 3)
        self.assertEqual(dao.get_batch('2').status, 'collecting')

    def test_release_during_a_registration(self):
        # The registration commits first: the release does not wait for
        # it (it would starve under writers that commit every few
        # milliseconds) and releases the batch with the session in it.
        (tm1, tm2), (dao1, dao2) = self.tms, self.daos
        tm1.begin()
        tm2.begin()
        dao1.release_batch('r1')
        dao2.register_session(session('a'))
        tm2.commit()
        tm1.commit()
        tm1.begin()
        dao = dao1
        self.assertEqual(dao.get_session('a').batch_id, '1')
        self.assertEqual(dao.get_batch('1').session_counter, 4)
        self.assertEqual(dao.get_batch('1').status, 'released')

    def test_two_new_batches(self):
        with Writer(self.db) as w:
            w.run(lambda s: ClickstreamDao(s).release_batch('r1'))
        dao = self.race(
            lambda d: d.register_session(session('a')),
            lambda d: d.register_session(session('b')))
        self.assertEqual(dao.get_session('a').batch_id, '2')
        self.assertEqual(dao.get_session('b').batch_id, '2')
        self.assertEqual(dao.get_batch('2').session_counter, 2)
        self.assertIsNone(dao.get_batch('3'))

    def test_push_during_an_update(self):
        with Writer(self.db) as w:
            w.run(lambda s: ClickstreamDao(s).release_batch('r1'))
        dao = self.race(
            lambda d: d.update_session(session('s1', query='new')),
            lambda d: d.push_events([event('s1', 'e1')]))
        moved = dao.get_session('s1')
        self.assertEqual((moved.batch_id, moved.search_query), ('2', 'new'))
        self.assertEqual([e.event_id for e in moved.events], ['e1'])
        self.assertEqual(sessions_of(tracks(dao.storage, runId=2)),
                         [('s1', ['e1'])])
        self.assertEqual(len(dao.storage), 3)

    def test_the_same_event_twice(self):
        dao = self.race(
            lambda d: d.push_events([event('s1', 'e1', object_id='x')]),
            lambda d: d.push_events([event('s1', 'e1', object_id='y')]))
        self.assertEqual(
            [e.object_id for e in dao.get_session('s1').events], ['y'])
        self.assertEqual(sessions_of(tracks(dao.storage)),
                         [('s1', ['e1']), ('w0', []), ('w1', [])])


class ConcurrencyTests(FileStorageTestCase):
    """4 writers registering sessions while a fifth releases batches."""

    writers = 4
    sessions_each = 250

    def test_concurrent_registrations_and_releases(self):
        with Writer(self.db):
            pass  # creates the storage once, before the race
        errors = []
        done = threading.Event()
        releases = []

        def register(n):
            try:
                with Writer(self.db, attempts=10_000) as w:
                    for i in range(self.sessions_each):
                        sid = 'w%d-%03d' % (n, i)
                        w.run(self.one_session, sid)
            except Exception as e:  # pragma: no cover - reported below
                errors.append(e)

        def release():
            try:
                with Writer(self.db, attempts=10_000) as w:
                    i = 0
                    while not done.is_set():
                        # Often enough that several releases land while
                        # the writers register (they no longer take turns
                        # on the batch, and finish in a second or two).
                        time.sleep(0.02)
                        i += 1
                        batch = w.run(lambda s: ClickstreamDao(
                            s).release_batch('r%d' % i))
                        if batch is not None and \
                                batch.release_id == 'r%d' % i:
                            releases.append(batch.batch_id)
            except Exception as e:  # pragma: no cover - reported below
                errors.append(e)

        threads = [threading.Thread(target=register, args=(n,))
                   for n in range(self.writers)]
        releaser = threading.Thread(target=release)
        releaser.start()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        done.set()
        releaser.join()
        self.assertEqual(errors, [])
        self.assertGreater(len(releases), 1)
        self.check(len(set(releases)))

    @staticmethod
    def one_session(storage, sid):
        dao = ClickstreamDao(storage)
        dao.register_session(session(sid, user_id=sid[:2]))
        dao.push_events([event(sid, 'e%d' % k, created_at=k)
                         for k in range(3)])

    def check(self, released):
        expected = {'w%d-%03d' % (n, i) for n in range(self.writers)
                    for i in range(self.sessions_each)}
        with Writer(self.db) as w:
            storage = w.storage
            dao = ClickstreamDao(storage)
            records = clickstream_records(storage)
            placed = collections.Counter()
            collecting = []
            for run_id, batch in records.batches.items():
                info = dao.get_batch(str(run_id))
                sessions = dao.get_batch_sessions(str(run_id))
                numbers = [s.session_number for s in sessions]
                self.assertEqual(len(numbers), len(set(numbers)))
                self.assertEqual(info.session_counter, len(sessions))
                # Unique, and from the blocks the batch handed out.
                self.assertTrue(all(0 < n < batch.next_number
                                    for n in numbers))
                if info.status == SessionBatchStatus.collecting:
                    collecting.append(run_id)
                for s in sessions:
                    placed[s.session_id] += 1
                    self.assertEqual(s.batch_id, str(run_id))
                    self.assertEqual([e.event_id for e in s.events],
                                     ['e0', 'e1', 'e2'])
                # The tracks of a batch are its sessions, each with its
                # events.
                found = storage.query(taskId='clickstream', runId=run_id)
                self.assertEqual(sessions_of(found), sorted(
                    (s.session_id, ['e0', 'e1', 'e2']) for s in sessions))
            self.assertLessEqual(len(collecting), 1)
            self.assertEqual(set(placed), expected)
            self.assertEqual(set(placed.values()), {1})
            self.assertGreaterEqual(len(records.batches), released)
            self.assertEqual(len(records.releases), released)
            self.assertEqual(len(storage.query(taskId='clickstream')),
                             len(expected))
            # A user's sessions are the user's tracks.
            for n in range(self.writers):
                found = storage.query(taskId='clickstream',
                                      userName='w%d' % n)
                self.assertEqual(
                    sorted(t.data['session_id'] for t in found),
                    sorted(sid for sid in expected
                           if sid.startswith('w%d-' % n)))
            self.assertEqual(len(storage), len(expected))
