"""Nobody gets in who should not: the token, the body limit, bad input.

A real server with ``TRACKSTORE_TOKEN`` set and a small body limit,
spoken to over HTTP (and once over a raw socket).
"""
import pickle
import socket
import time
import unittest

import httpx

from trackstore.tests.webserver import WebServer


TOKEN = 's3cret-token'
LIMIT = 4000
API = '/api/v1/clickstream'


class GuardedLayer:
    """A server that takes its token from the environment."""

    @classmethod
    def setUp(cls):
        cls.server = WebServer('memory://', '--max-body', str(LIMIT),
                               env={'TRACKSTORE_TOKEN': TOKEN}).start()

    @classmethod
    def tearDown(cls):
        cls.server.stop()


def session(sid, **kw):
    return dict({'session_id': sid, 'search_query': 'q',
                 'search_results': []}, **kw)


class Token(unittest.TestCase):

    layer = GuardedLayer

    def setUp(self):
        self.url = GuardedLayer.server.url

    def test_health_is_open(self):
        r = httpx.get(self.url + '/health')
        self.assertEqual(r.status_code, 200)

    def test_every_other_route_needs_the_token(self):
        routes = [('GET', '/'), ('GET', '/docs'), ('GET', '/openapi.json'),
                  ('GET', '/metrics/orders'), ('GET', '/api/v1/dashboard'),
                  ('GET', '/static/dashboard.js'),
                  ('GET', API + '/session?session_id=x'),
                  ('POST', API + '/session'), ('POST', '/hits'),
                  ('POST', API + '/internal/batch/release'),
                  ('GET', '/no/such/route')]
        for headers in ({}, {'Authorization': 'Bearer wrong'},
                        {'Authorization': TOKEN},
                        {'Authorization': 'Basic ' + TOKEN}):
            for method, path in routes:
                r = httpx.request(method, self.url + path, headers=headers,
                                  json={})
                self.assertEqual(r.status_code, 401, (path, headers))
                self.assertEqual(r.headers['www-authenticate'], 'Bearer')
        good = {'Authorization': 'Bearer ' + TOKEN}
        for path in ('/', '/docs', '/metrics/orders', '/api/v1/dashboard',
                     '/static/dashboard.js'):
            r = httpx.get(self.url + path, headers=good)
            self.assertEqual(r.status_code, 200, path)
        r = httpx.post(self.url + API + '/session', headers=good,
                       json=session('tok-1'))
        self.assertEqual(r.status_code, 200)

    def test_browsers_log_in_with_a_cookie(self):
        r = httpx.get(self.url + '/?token=wrong')
        self.assertEqual(r.status_code, 401)
        r = httpx.get(self.url + '/?token=' + TOKEN)
        self.assertEqual(r.status_code, 303)
        self.assertEqual(r.headers['location'], '/')
        cookie = r.headers['set-cookie']
        self.assertIn('HttpOnly', cookie)
        self.assertIn('SameSite=Strict', cookie)
        with httpx.Client(base_url=self.url, cookies=r.cookies) as http:
            self.assertEqual(http.get('/').status_code, 200)
            self.assertEqual(http.get('/api/v1/dashboard').status_code, 200)
        r = httpx.get(self.url + '/', cookies={'trackstore_token': 'bad'})
        self.assertEqual(r.status_code, 401)


class Bodies(unittest.TestCase):

    layer = GuardedLayer

    def setUp(self):
        self.http = GuardedLayer.server.client(token=TOKEN)

    def tearDown(self):
        self.http.close()

    def test_too_large_by_its_length(self):
        big = session('big', search_query='x' * LIMIT)
        r = self.http.post(API + '/session', json=big)
        self.assertEqual(r.status_code, 413)
        self.assertIn('larger than %d bytes' % LIMIT, r.json()['detail'])
        r = self.http.post('/hits', content=b'{}\n' * LIMIT)
        self.assertEqual(r.status_code, 413)
        self.assertEqual(self.http.get(API + '/session', params={
            'session_id': 'big'}).status_code, 404)

    def test_too_large_while_streamed(self):
        # No Content-Length: the body comes in chunks and is cut off as
        # soon as it passes the limit.
        def chunks():
            for i in range(100):
                yield b'{"id": %d, "type": "search"}\n' % i * 10
        r = self.http.post('/hits', content=chunks())
        self.assertEqual(r.status_code, 413)

    def test_refused_before_the_body_is_read(self):
        # Announce a gigabyte and send none of it: the answer comes at
        # once, the server does not wait for the body.
        host, port = GuardedLayer.server.url[7:].split(':')
        with socket.create_connection((host, int(port)), 10) as sock:
            sock.sendall(
                b'POST /hits HTTP/1.1\r\nHost: x\r\n'
                b'Authorization: Bearer ' + TOKEN.encode() + b'\r\n'
                b'Content-Length: 1000000000\r\n\r\n')
            started = time.monotonic()
            answer = sock.recv(4096)
        self.assertTrue(answer.startswith(b'HTTP/1.1 413'), answer)
        self.assertLess(time.monotonic() - started, 5)

    def test_malformed_json_and_wrong_shapes_are_422(self):
        r = self.http.post(API + '/session', content=b'{"session_id": ',
                           headers={'content-type': 'application/json'})
        self.assertEqual(r.status_code, 422)
        self.assertEqual(r.json()['detail'][0]['msg'], 'JSON decode error')
        r = self.http.post(API + '/session', json=session(
            'shape', search_results='not a list'))
        self.assertEqual(r.status_code, 422)
        self.assertEqual(r.json()['detail'][0]['loc'],
                         ['body', 'search_results'])
        r = self.http.post(API + '/session/events', json={
            'session_id': 'x', 'events': [{'object_id': 'a'}]})
        self.assertEqual(r.status_code, 422)
        self.assertIn('event_id', str(r.json()['detail']))
        r = self.http.get(API + '/internal/batch/sessions',
                          params={'batch_id': '1', 'limit': 'many'})
        self.assertEqual(r.status_code, 422)
        r = self.http.post(API + '/internal/batch/release', json={})
        self.assertEqual(r.status_code, 422)

    def test_nothing_is_unpickled_or_evaluated(self):
        class Boom:
            def __reduce__(self):
                return (exec, ("open('/tmp/trackstore-pwned', 'w')",))
        r = self.http.post('/hits', content=pickle.dumps(Boom()))
        self.assertEqual(r.status_code, 422)
        self.assertIn('not JSON', r.text)
        r = self.http.post('/hits', content=b'[1, 2')
        self.assertEqual(r.status_code, 422)
        code = "__import__('os').system('touch /tmp/trackstore-pwned')"
        r = self.http.post(API + '/session', json=session(
            'evil', search_query=code, search_meta={'x': code}))
        self.assertEqual(r.status_code, 200)
        got = self.http.get(API + '/session',
                            params={'session_id': 'evil'}).json()
        self.assertEqual(got['search_query'], code)
        import os
        self.assertFalse(os.path.exists('/tmp/trackstore-pwned'))


class TokenOption(unittest.TestCase):

    def test_the_token_option(self):
        with WebServer('memory://', token='from-option') as server:
            self.assertEqual(httpx.get(
                server.url + '/metrics/orders').status_code, 401)
            with server.client() as http:
                self.assertEqual(http.get('/metrics/orders').status_code,
                                 200)
