"""Privacy at ingest: addresses kept, truncated or hashed per database,
bots counted and left out; real file storages, real loads."""
import ipaddress
import os
import shutil
import tempfile
import unittest

import transaction
from hypothesis import given
from hypothesis import settings
from hypothesis import strategies as st
from zope.interface.verify import verifyObject

from trackstore.db import get_storage
from trackstore.db import open_db
from trackstore.db import transact
from trackstore.ingest import ingest
from trackstore.interfaces import IPrivacySettings
from trackstore.privacy import Policy
from trackstore.privacy import hash_ip
from trackstore.privacy import privacy_settings
from trackstore.privacy import truncate_ip
from trackstore.sessions.hits import parse_record
from trackstore.tests import stored_visits
from trackstore.tests.userdata import hit
from trackstore.tests.userdata import minutes
from trackstore.tests.userdata import write_hits


GOOGLEBOT = 'Mozilla/5.0 (compatible; Googlebot/2.1; ' \
    '+http://www.google.com/bot.html)'


class Truncation(unittest.TestCase):

    def test_ipv4_loses_its_last_octet(self):
        self.assertEqual(truncate_ip('200.15.173.55'), '200.15.173.0')
        self.assertEqual(truncate_ip('10.0.0.255'), '10.0.0.0')
        self.assertEqual(truncate_ip('0.0.0.0'), '0.0.0.0')

    def test_ipv6_loses_its_last_80_bits(self):
        self.assertEqual(
            truncate_ip('2001:db8:85a3:8d3:1319:8a2e:370:7348'),
            '2001:db8:85a3::')
        self.assertEqual(truncate_ip('2001:db8:ffff:ffff::1'),
                         '2001:db8:ffff::')
        self.assertEqual(truncate_ip('fe80::1%eth0'), 'fe80::')
        # an IPv4 address written as IPv6 keeps what IPv4 keeps
        self.assertEqual(truncate_ip('::ffff:200.15.173.55'),
                         '::ffff:200.15.173.0')

    def test_what_is_no_address_gives_none(self):
        for value in ('localhost', '1.2.3.4:80', '', '1.2.3', 17, None,
                      ['1.2.3.4']):
            self.assertIsNone(truncate_ip(value), value)

    @given(st.integers(0, 2 ** 32 - 1))
    def test_any_ipv4(self, n):
        text = truncate_ip(str(ipaddress.IPv4Address(n)))
        self.assertEqual(int(ipaddress.IPv4Address(text)), n >> 8 << 8)
        self.assertEqual(truncate_ip(text), text)

    @given(st.integers(0, 2 ** 128 - 1))
    def test_any_ipv6(self, n):
        address = ipaddress.IPv6Address(n)
        text = truncate_ip(str(address))
        if address.ipv4_mapped is None:
            self.assertEqual(int(ipaddress.IPv6Address(text)),
                             n >> 80 << 80)
        else:
            self.assertEqual(int(ipaddress.IPv6Address(text)),
                             n >> 8 << 8)
        self.assertEqual(truncate_ip(text), text)


class Hashing(unittest.TestCase):

    @settings(max_examples=50)
    @given(st.binary(min_size=16, max_size=32),
           st.binary(min_size=16, max_size=32), st.text())
    def test_keyed(self, key, other, value):
        self.assertEqual(hash_ip(key, value), hash_ip(key, value))
        if key != other:
            self.assertNotEqual(hash_ip(key, value), hash_ip(other, value))


def parsed(record):
    return parse_record(record, 1)


class Policies(unittest.TestCase):

    def test_keep_keeps_the_hit(self):
        h = parsed(hit(1, 'search', minutes(0), ip='10.1.2.3'))
        self.assertIs(Policy('keep', 'drop').apply(h), h)

    def test_truncate_derives_the_stamp_again(self):
        a = parsed(hit(1, 'search', minutes(0), ip='10.1.2.3'))
        b = parsed(hit(2, 'search', minutes(0), ip='10.1.2.99'))
        self.assertNotEqual(a.stamp, b.stamp)
        policy = Policy('truncate', 'keep')
        ta, tb = policy.apply(a), policy.apply(b)
        self.assertEqual(ta.event['ip'], '10.1.2.0')
        self.assertEqual(ta.stamp, tb.stamp)
        # the hit read is not changed
        self.assertEqual(a.event['ip'], '10.1.2.3')

    def test_an_explicit_stamp_stays(self):
        h = parsed(hit(1, 'search', minutes(0), ip='10.1.2.3',
                       **{'session-stamp': 's-1'}))
        self.assertEqual(Policy('hash', key=b'k' * 32).apply(h).stamp,
                         's-1')

    def test_truncate_drops_what_is_no_address(self):
        h = parsed(hit(1, 'search', minutes(0), ip='10.1.2.3:8080'))
        self.assertNotIn('ip', Policy('truncate').apply(h).event)

    def test_bots(self):
        h = parsed(hit(1, 'search', minutes(0), **{'user-agent': GOOGLEBOT}))
        drop = Policy('keep', 'drop')
        self.assertIsNone(drop.apply(h))
        self.assertEqual(drop.bots, 1)
        keep = Policy('keep', 'keep')
        self.assertIs(keep.apply(h), h)
        self.assertEqual(keep.bots, 0)
        self.assertTrue(keep.changes_nothing)

    @settings(max_examples=50)
    @given(st.lists(st.one_of(
        st.booleans(), st.integers(), st.floats(allow_nan=False),
        st.text(max_size=8), st.ip_addresses().map(str)), max_size=12),
        st.randoms())
    def test_one_answer_whatever_came_first(self, values, random):
        hits = [parsed(hit(n, 'search', minutes(0), ip=value))
                for n, value in enumerate(values)]
        shuffled = random.sample(hits, len(hits))
        for mode in ('truncate', 'hash'):
            answers = []
            for order in (hits, shuffled):
                policy = Policy(mode, 'keep', b'k' * 32)
                answers.append(sorted(
                    (h.id, repr(policy.apply(h).event.get('ip')))
                    for h in order))
            self.assertEqual(answers[0], answers[1], mode)

    def test_wrong_modes_are_refused(self):
        with self.assertRaises(ValueError) as e:
            Policy('mask')
        self.assertIn('keep, truncate, hash', str(e.exception))
        with self.assertRaises(ValueError):
            Policy('keep', 'ban')


def visitors():
    """Two anonymous visitors on one /24 with one browser, a customer
    whose address changes within a visit, and a crawler."""
    return [
        hit(1, 'search', minutes(0), ip='10.0.0.1', query='a'),
        hit(2, 'page_view', minutes(3), ip='10.0.0.1', page='/1'),
        hit(3, 'search', minutes(1), ip='10.0.0.2', query='b'),
        hit(4, 'search', minutes(0), '42', ip='10.7.0.1', query='c'),
        hit(5, 'placed_order', minutes(5), '42', ip='10.7.0.9', order='o'),
        hit(6, 'page_view', minutes(2), ip='66.249.66.1', page='/',
            **{'user-agent': GOOGLEBOT}),
        hit(7, 'page_view', minutes(4), ip='66.249.66.1', page='/2',
            **{'user-agent': GOOGLEBOT}),
    ]


def groups(storage):
    """The stored sessions as sets of hit ids."""
    return sorted(visit[3] for visit in stored_visits(storage))


class Databases(unittest.TestCase):
    """Settings kept per database; loads obey them."""

    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix='trackstore-privacy-')
        self.addCleanup(shutil.rmtree, self.dir, True)
        self.source = write_hits(os.path.join(self.dir, 'hits.jsonl'),
                                 visitors())

    def path(self, name):
        return os.path.join(self.dir, name + '.fs')

    def configure(self, name, **modes):
        db = open_db(self.path(name))
        try:
            return transact(
                db, lambda s: privacy_settings(s).set(**modes))
        finally:
            db.close()

    def read(self, name, fn):
        db = open_db(self.path(name))
        try:
            conn = db.open()
            try:
                return fn(get_storage(conn))
            finally:
                conn.close()
        finally:
            db.close()

    def load(self, name, source=None, **kw):
        return ingest(source or self.source, self.path(name),
                      rejects=os.path.join(self.dir, name + '.rejects'),
                      **kw)

    def test_defaults_keep_addresses_and_drop_bots(self):
        report = self.load('plain')
        self.assertEqual((report.read, report.stored, report.bots),
                         (7, 5, 2))
        self.assertIn('2 bot hits left out', report.summary())
        self.assertEqual(report.as_dict()['bots'], 2)
        self.assertEqual(self.read('plain', groups),
                         [('1', '2'), ('3',), ('4', '5')])
        self.assertEqual(self.read('plain', modes),
                         {'ip': 'keep', 'bots': 'drop'})
        # a load run again counts its bots again, stores nothing
        again = self.load('plain')
        self.assertEqual((again.duplicates, again.bots), (5, 2))

    def test_bots_kept_when_asked(self):
        self.configure('bots', bots='keep')
        report = self.load('bots')
        self.assertEqual((report.stored, report.bots), (7, 0))
        self.assertIn(('6', '7'), self.read('bots', groups))

    def test_truncation_joins_visitors_of_one_network(self):
        self.configure('cut', ip='truncate')
        self.load('cut')
        self.assertEqual(self.read('cut', groups),
                         [('1', '3', '2'), ('4', '5')])

    def test_one_answer_in_any_order_and_split(self):
        hits = visitors()
        for name, parts in (('whole', [hits]),
                            ('split', [hits[::-2], hits[-2::-2]])):
            self.configure(name, ip='truncate')
            for n, part in enumerate(parts):
                self.load(name, write_hits(
                    os.path.join(self.dir, '%s-%d.jsonl' % (name, n)),
                    part))
        self.assertEqual(self.read('split', stored_visits),
                         self.read('whole', stored_visits))

    def test_hashing_keeps_the_sessions_and_differs_by_database(self):
        self.load('plain')
        for name in ('h1', 'h2'):
            self.configure(name, ip='hash')
            self.load(name)
            self.assertEqual(self.read(name, groups),
                             self.read('plain', groups))
        stamps = [set(self.read(name, stamps_of))
                  for name in ('plain', 'h1', 'h2')]
        self.assertEqual(len(stamps[0] | stamps[1] | stamps[2]),
                         3 * len(stamps[0]))

    def test_settings_and_key_persist(self):
        self.configure('kept', ip='hash', bots='keep')
        first = self.read('kept', lambda s: hashed(s, '10.0.0.1'))
        self.assertTrue(self.read('kept', lambda s: verifyObject(
            IPrivacySettings, privacy_settings(s))))
        self.assertEqual(self.read('kept', modes),
                         {'ip': 'hash', 'bots': 'keep'})
        self.assertEqual(self.read('kept', lambda s: hashed(s, '10.0.0.1')),
                         first)
        self.configure('other', ip='hash')
        self.assertNotEqual(
            self.read('other', lambda s: hashed(s, '10.0.0.1')), first)
        with self.assertRaises(ValueError):
            self.configure('kept', ip='nothing')

    def test_reading_the_settings_writes_nothing(self):
        db = open_db(self.path('ro'))
        try:
            conn = db.open()
            storage = get_storage(conn)
            privacy_settings(storage, create=False)
            self.assertFalse(conn._registered_objects)
            transaction.abort()
            conn.close()
        finally:
            db.close()

    def test_a_live_stream_keeps_no_address_as_it_came(self):
        # A stream saves its open sessions with every commit; under
        # truncate they hold the truncated address only.
        for name, mode, found in (('live-keep', 'keep', True),
                                  ('live-cut', 'truncate', False)):
            self.configure(name, ip=mode)
            self.load(name, follow=True, batch_size=1)
            with open(self.path(name), 'rb') as f:
                data = f.read()
            self.assertEqual(b'10.7.0.9' in data, found, name)


def hashed(storage, ip):
    record = hit(1, 'search', minutes(0), ip=ip)
    return Policy.of(storage).apply(parsed(record)).event['ip']


def stamps_of(storage):
    """The clients of the anonymous visits: their stamps."""
    return [visit[1] for visit in stored_visits(storage)
            if visit[1].startswith('a:')]


def modes(storage):
    return privacy_settings(storage, create=False).as_dict()
