"""configure.zcml as a Zope application includes it: the factory, the
DAO adapters, and zope.security's checks for a principal with and
without the permissions (zope.securitypolicy, its global grants).
"""
import unittest

import zope.component
import zope.component.testing
from zope.component.interfaces import IFactory
from zope.configuration import xmlconfig
from zope.interface.verify import verifyObject
from zope.security.checker import ProxyFactory
from zope.security.checker import getCheckerForInstancesOf
from zope.security.interfaces import ForbiddenAttribute
from zope.security.interfaces import Unauthorized
from zope.security.management import endInteraction
from zope.security.management import newInteraction
from zope.security.management import setSecurityPolicy
from zope.security.proxy import removeSecurityProxy
from zope.securitypolicy.principalpermission import principalPermissionManager
from zope.securitypolicy.zopepolicy import ZopeSecurityPolicy

import trackstore
from trackstore.clickstream import ClickstreamDao
from trackstore.clickstream import models
from trackstore.interfaces import IClickstreamBulkDao
from trackstore.interfaces import IClickstreamDao
from trackstore.interfaces import IPrivacySettings
from trackstore.interfaces import IRun
from trackstore.interfaces import ITrack
from trackstore.interfaces import ITrackingStorage
from trackstore.interfaces import ITrackMaintenance
from trackstore.interfaces import ITrackQuery
from trackstore.interfaces import ITrackRuns
from trackstore.interfaces import ITrackWrite
from trackstore.storage import Run
from trackstore.storage import Track
from trackstore.storage import TrackingStorage


READ = 'trackstore.ReadTracks'
WRITE = 'trackstore.WriteTracks'


class Principal:

    def __init__(self, id):
        self.id = id
        self.title = id
        self.description = ''
        self.groups = ()


class Participation:

    interaction = None

    def __init__(self, principal):
        self.principal = principal


def session(n):
    return {'session_id': 's%d' % n, 'search_query': 'shoes',
            'created_at': 1_700_000_000 + n,
            'search_results': [{'object_id': 'o1', 'rank': 1.0}]}


class ZCMLTestCase(unittest.TestCase):

    def setUp(self):
        zope.component.testing.setUp(self)
        xmlconfig.file('configure.zcml', package=trackstore)

    def tearDown(self):
        endInteraction()
        zope.component.testing.tearDown(self)


class Registrations(ZCMLTestCase):

    def test_factory(self):
        factory = zope.component.getUtility(
            IFactory, 'trackstore.TrackingStorage')
        self.assertEqual(factory.title, 'Tracking storage')
        storage = zope.component.createObject('trackstore.TrackingStorage')
        self.assertIsInstance(storage, TrackingStorage)
        self.assertIn(ITrackingStorage, factory.getInterfaces())

    def test_both_dao_interfaces(self):
        storage = TrackingStorage()
        for iface in (IClickstreamDao, IClickstreamBulkDao):
            dao = iface(storage)
            self.assertIsInstance(dao, ClickstreamDao)
            self.assertTrue(verifyObject(iface, dao))
            self.assertIs(dao.storage, storage)

    def test_every_name_is_protected(self):
        # A name the interfaces add later must get a permission here too,
        # or a proxied object would refuse it to everybody.
        for cls, interfaces in (
                (TrackingStorage, [ITrackingStorage]),
                (ClickstreamDao, [IClickstreamBulkDao]),
                (Track, [ITrack]),
                (Run, [IRun])):
            checker = getCheckerForInstancesOf(cls)
            for iface in interfaces:
                for name in iface.names(all=True):
                    self.assertIn(checker.permission_id(name),
                                  (READ, WRITE), (cls, name))

    def test_each_role_has_its_permission(self):
        # Readers query (runs too); starting, stopping and removing runs
        # and maintenance (checkIndexes included)
        # are for those who write.
        checker = getCheckerForInstancesOf(TrackingStorage)
        for iface, permission in ((ITrackQuery, READ),
                                  (ITrackWrite, WRITE),
                                  (ITrackRuns, WRITE),
                                  (ITrackMaintenance, WRITE)):
            for name in iface.names(all=True):
                self.assertEqual(checker.permission_id(name), permission,
                                 (iface, name))

    def test_leases_are_not_offered(self):
        checker = getCheckerForInstancesOf(TrackingStorage)
        self.assertIsNone(checker.permission_id('releasePartition'))
        self.assertNotIn('releasePartition', ITrackingStorage)

    def test_every_model_field_is_readable(self):
        from zope.security.checker import CheckerPublic
        for name in models.__dict__:
            cls = getattr(models, name)
            fields = getattr(cls, 'model_fields', None)
            if not isinstance(fields, dict) or cls is models.BaseModel:
                continue
            checker = getCheckerForInstancesOf(cls)
            self.assertIsNotNone(checker, name)
            for field in fields:
                self.assertIs(checker.permission_id(field), CheckerPublic,
                              (name, field))


class Security(ZCMLTestCase):
    """A proxied storage and DAO for a reader, a writer and a stranger.
    """

    def setUp(self):
        super().setUp()
        self.old_policy = setSecurityPolicy(ZopeSecurityPolicy)
        self.addCleanup(setSecurityPolicy, self.old_policy)
        # The principals come from the application's authentication,
        # which this test has none of: grant without looking them up.
        grant = principalPermissionManager.grantPermissionToPrincipal
        grant(READ, 'reader', check=False)
        grant(READ, 'editor', check=False)
        grant(WRITE, 'editor', check=False)
        self.storage = TrackingStorage()
        self.storage.saveUserTrack('visits', 0, 'anna', {'page': '/'})
        IClickstreamBulkDao(self.storage).register_session(session(1))

    def login(self, principal_id):
        endInteraction()
        newInteraction(Participation(Principal(principal_id)))
        return ProxyFactory(self.storage)

    def test_editor_reads_and_writes(self):
        storage = self.login('editor')
        self.assertIsNot(removeSecurityProxy(storage), storage)
        # (the registered session above is track 2)
        self.assertEqual(storage.saveUserTrack('visits', 0, 'bob', {}),
                         '0000003')
        self.assertEqual(storage.getUserNames('visits'), ['anna', 'bob'])
        track = storage.getTrack('0000001')
        self.assertEqual((track.userName, track.data['page']),
                         ('anna', '/'))
        self.assertEqual(storage.getRun('visits').finished, False)
        self.assertEqual(len(storage), 3)   # the session is a track too
        dao = IClickstreamBulkDao(storage)
        self.assertIsNot(removeSecurityProxy(dao), dao)
        registered = dao.register_session(session(2))
        self.assertEqual(registered.session_number, 2)
        found = dao.get_session('s2')
        self.assertEqual(found.search_results[0].object_id, 'o1')
        self.assertEqual(found.events, [])
        batch = dao.get_batch(found.batch_id)
        self.assertEqual(batch.session_counter, 2)
        self.assertEqual(batch.status.value, 'collecting')
        # The adapter never hands out the storage it works on.
        with self.assertRaises(ForbiddenAttribute):
            dao.storage

    def test_reader_reads_only(self):
        storage = self.login('reader')
        self.assertEqual(storage.getUserNames('visits'), ['anna'])
        self.assertEqual(storage.query(userName='anna')[0].data,
                         {'page': '/'})
        with self.assertRaises(Unauthorized):
            storage.saveUserTrack('visits', 0, 'eve', {})
        with self.assertRaises(Unauthorized):
            storage.removeTrack('0000001')
        with self.assertRaises(Unauthorized):
            storage.checkIndexes()
        with self.assertRaises(Unauthorized):
            storage.startRun('visits')
        dao = IClickstreamDao(storage)
        self.assertEqual(dao.get_session('s1').session_number, 1)
        with self.assertRaises(Unauthorized):
            dao.register_session(session(3))
        with self.assertRaises(Unauthorized):
            dao.release_batch('r1')
        self.assertEqual(self.storage.getUserNames('visits'), ['anna'])

    def test_privacy_settings(self):
        settings = IPrivacySettings(self.login('reader'))
        self.assertEqual((settings.ip, settings.bots), ('keep', 'drop'))
        with self.assertRaises(Unauthorized):
            settings.set(ip='hash')
        with self.assertRaises(ForbiddenAttribute):
            settings.key
        IPrivacySettings(self.login('editor')).set(ip='truncate')
        self.assertEqual(IPrivacySettings(self.storage).as_dict(),
                         {'ip': 'truncate', 'bots': 'drop'})

    def test_stranger_is_refused(self):
        storage = self.login('stranger')
        for call in (lambda: storage.getUserNames('visits'),
                     lambda: storage.query(userName='anna'),
                     lambda: len(storage),
                     lambda: storage.saveUserTrack('visits', 0, 'e', {})):
            with self.assertRaises(Unauthorized):
                call()
        dao = IClickstreamBulkDao(storage)
        with self.assertRaises(Unauthorized):
            dao.get_session('s1')
        with self.assertRaises(Unauthorized):
            dao.store_sessions([])
        # A track someone else fetched is no way around it either.
        with self.assertRaises(Unauthorized):
            ProxyFactory(self.storage.getTrack('0000001')).data
