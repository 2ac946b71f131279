"""The app against what clients should not send: no 5xx, ever.

schemathesis reads the running app's own ``/openapi.json`` and sends
every operation generated requests, valid by the schema and not; none
may answer 5xx. Then bodies made to hurt: oversized, deeply nested and
not UTF-8 get a 4xx with a reason, and the server goes on answering.
A real ``trackstore serve`` on a FileStorage, spoken to over HTTP.
"""
import os
import shutil
import tempfile
import time
import unittest

import hypothesis.errors
import orjson
import schemathesis
from hypothesis import HealthCheck
from hypothesis import given
from hypothesis import settings
from schemathesis import GenerationMode

from trackstore.sessions.hits import DEFAULT_MAX_DEPTH
from trackstore.tests.webserver import WebServer


LIMIT = 200000
API = '/api/v1/clickstream'
EXAMPLES = 60


class FuzzLayer:
    """A server on a FileStorage of its own, with a small body limit."""

    @classmethod
    def setUp(cls):
        cls.dir = tempfile.mkdtemp(prefix='trackstore-fuzz-')
        cls.server = WebServer(
            'file://' + os.path.join(cls.dir, 'Data.fs'),
            '--max-body', str(LIMIT),
            log=os.path.join(cls.dir, 'server.log')).start()

    @classmethod
    def tearDown(cls):
        cls.server.stop()
        shutil.rmtree(cls.dir, ignore_errors=True)


def nested(depth):
    """A JSON value ``depth`` levels deep, as text."""
    return '{"a": ' * (depth - 1) + '[0]' + '}' * (depth - 1)


def session(sid, **fields):
    return dict({'session_id': sid, 'search_query': 'q',
                 'search_results': [], 'created_at': int(time.time())},
                **fields)


class Base(unittest.TestCase):

    layer = FuzzLayer

    def setUp(self):
        self.url = FuzzLayer.server.url
        self.http = FuzzLayer.server.client()
        self.addCleanup(self.http.close)

    def assertStillUp(self):
        self.assertEqual(FuzzLayer.server.process.poll(), None)
        self.assertEqual(self.http.get('/health').status_code, 200)

    def post(self, path, content):
        return self.http.post(path, content=content, headers={
            'content-type': 'application/json'})


class Schema(Base):

    def test_no_server_errors(self):
        schema = schemathesis.openapi.from_url(self.url + '/openapi.json')
        errors = []
        operations = [result.ok() for result in schema.get_all_operations()]
        self.assertGreaterEqual(len(operations), 10)
        for operation in operations:
            for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
                self.fuzz(operation, mode, errors)
        self.assertEqual(errors, [])
        self.assertStillUp()

    def fuzz(self, operation, mode, errors):
        @settings(max_examples=EXAMPLES, deadline=None, database=None,
                  suppress_health_check=list(HealthCheck))
        @given(case=operation.as_strategy(generation_mode=mode))
        def send(case):
            response = case.call(base_url=self.url)
            if response.status_code >= 500:
                errors.append('%s: %s\n%s' % (
                    response.status_code, case.as_curl_command(),
                    response.text[:500]))
        try:
            send()
        except hypothesis.errors.Unsatisfiable:
            # An operation without parameters (GET /health) has no
            # request that breaks its schema.
            self.assertIs(mode, GenerationMode.NEGATIVE, operation.label)


class Bodies(Base):

    def test_oversized(self):
        big = orjson.dumps(session('big', search_query='x' * LIMIT))
        for path in (API + '/session', API + '/session/events', '/hits'):
            r = self.post(path, big)
            self.assertEqual(r.status_code, 413, path)
            self.assertIn('larger than %d bytes' % LIMIT, r.text)
        self.assertEqual(self.http.get(API + '/session', params={
            'session_id': 'big'}).status_code, 404)
        self.assertStillUp()

    def test_deeply_nested(self):
        # Within the limit: stored, and read back as it was sent.
        ok = '{"session_id": "shallow", "search_query": %s, ' \
             '"search_results": [], "created_at": %d}' % (
                 nested(DEFAULT_MAX_DEPTH - 1), time.time())
        r = self.post(API + '/session', ok.encode())
        self.assertEqual(r.status_code, 200, r.text)
        got = self.http.get(API + '/session', params={
            'session_id': 'shallow'}).json()
        self.assertEqual(got['search_query'],
                         orjson.loads(nested(DEFAULT_MAX_DEPTH - 1)))
        # Deeper: refused before any route reads it, nothing stored.
        for depth in (DEFAULT_MAX_DEPTH + 1, 500, 1000, 5000):
            body = '{"session_id": "deep-%d", "search_query": "q", ' \
                   '"search_results": [], "search_meta": %s}' % (
                       depth, nested(depth))
            r = self.post(API + '/session', body.encode())
            self.assertIn(r.status_code, (400, 422), (depth, r.text))
            if depth < 1000:
                self.assertEqual(r.json()['detail'],
                                 'the body nests deeper than %d levels'
                                 % DEFAULT_MAX_DEPTH)
            self.assertEqual(self.http.get(API + '/session', params={
                'session_id': 'deep-%d' % depth}).status_code, 404)
        events = '{"session_id": "shallow", "events": [{"event_id": "e", ' \
                 '"object_id": "o", "meta": %s}]}' % nested(400)
        self.assertEqual(self.post(API + '/session/events',
                                   events.encode()).status_code, 400)
        # A hit is a line of its own: rejected with its reason.
        hit = ('{"id": 1, "type": "x", "event": {"timestamp": '
               '"2022-04-28T07:38:46.290271", "deep": %s}}' % nested(600))
        r = self.post('/hits', hit.encode())
        self.assertEqual(r.status_code, 422)
        self.assertIn('nested too deep', r.text)
        self.assertStillUp()

    def test_not_utf8(self):
        body = b'{"session_id": "caf\xe9", "search_query": "q", ' \
               b'"search_results": []}'
        r = self.post(API + '/session', body)
        self.assertEqual(r.status_code, 400)
        self.assertIn('not UTF-8', r.json()['detail'])
        for raw in (b'\xff\xfe\x00{', b'\xc3(', b'{"a": "\xed\xa0\x80"}'):
            r = self.post(API + '/internal/batch/release', raw)
            self.assertGreaterEqual(r.status_code, 400)
            self.assertLess(r.status_code, 500)
        r = self.post('/hits', b'{"id": 1, "type": "s\xff"}\n')
        self.assertEqual(r.status_code, 422)
        self.assertIn('not JSON', r.text)
        self.assertStillUp()

    def test_many_bad_requests_in_a_row(self):
        # The server is not worn down by them: it still stores and
        # answers a good request after.
        for n in range(30):
            self.post(API + '/session', b'\xff' * n)
            self.post(API + '/session', nested(40 + n).encode())
            self.post('/hits', b'[' * (n * 100))
        r = self.http.post(API + '/session', json=session('after'))
        self.assertEqual(r.status_code, 200)
        self.assertStillUp()
