"""The clickstream routes, /metrics/orders and /health over real HTTP.

One ``trackstore serve`` on a FileStorage for the whole class; every
test uses session ids of its own.
"""
import itertools
import shutil
import tempfile
import time
import unittest

from trackstore.tests.webserver import WebServer


API = '/api/v1/clickstream'
_ids = itertools.count(1)


def new_id(prefix='s'):
    return '%s-%d-%d' % (prefix, time.time_ns(), next(_ids))


def session(sid, **kw):
    body = {'session_id': sid, 'search_query': 'red lamp',
            'search_results': [{'object_id': 'a', 'rank': 1.0},
                               {'object_id': 'b', 'meta': {'x': 1}}]}
    body.update(kw)
    return body


class ServerLayer:
    """One server for the module's tests (a zope.testrunner layer)."""

    @classmethod
    def setUp(cls):
        cls.dir = tempfile.mkdtemp(prefix='trackstore-web-')
        # Limits other than the defaults, to see that they are settable.
        cls.server = WebServer('file://%s/Data.fs' % cls.dir,
                               '--max-past', '3600', '--max-future', '60',
                               log=cls.dir + '/serve.log').start()

    @classmethod
    def tearDown(cls):
        cls.server.stop()
        shutil.rmtree(cls.dir, ignore_errors=True)


class ClickstreamRoutes(unittest.TestCase):

    layer = ServerLayer

    def setUp(self):
        self.http = ServerLayer.server.client()

    def tearDown(self):
        self.http.close()

    def register(self, sid=None, **kw):
        sid = sid or new_id()
        r = self.http.post(API + '/session', json=session(sid, **kw))
        self.assertEqual(r.status_code, 200, r.text)
        return r.json()

    def test_register_and_get(self):
        before = int(time.time())
        stored = self.register(user_id='u1')
        self.assertGreaterEqual(stored['created_at'], before)
        self.assertEqual(stored['session_number'] > 0, True)
        self.assertIsInstance(stored['batch_id'], str)
        got = self.http.get(API + '/session',
                            params={'session_id': stored['session_id']})
        self.assertEqual(got.status_code, 200)
        body = got.json()
        self.assertEqual(body['events'], [])
        self.assertIs(body['is_irrelevant'], False)
        self.assertEqual(body['search_results'][1]['meta'], {'x': 1})
        self.assertEqual(body['session_number'], stored['session_number'])
        # registering the id again answers with the stored session
        again = self.register(stored['session_id'], search_query='other')
        self.assertEqual(again, stored)

    def test_unknown_session_is_404(self):
        for method, path, kw in (
                ('GET', '/session', {'params': {'session_id': 'nope'}}),
                ('POST', '/session/irrelevant',
                 {'json': {'session_id': 'nope'}}),
                ('POST', '/session/events', {'json': {
                    'session_id': 'nope',
                    'events': [{'event_id': 'e', 'object_id': 'a'}]}}),
                ('POST', '/internal/session/use-for-improvement',
                 {'json': {'session_id': 'nope'}})):
            r = self.http.request(method, API + path, **kw)
            self.assertEqual(r.status_code, 404, (path, r.text))
            self.assertIn('nope', r.json()['detail'])

    def test_created_at_limits(self):
        now = int(time.time())
        ok = self.register(created_at=now - 3500)
        self.assertEqual(ok['created_at'], now - 3500)
        for created_at, word in ((now - 3700, 'past'),
                                 (now + 120, 'future')):
            r = self.http.post(API + '/session', json=session(
                new_id(), created_at=created_at))
            self.assertEqual(r.status_code, 400, r.text)
            self.assertIn(word, r.json()['detail'])
        sid = self.register()['session_id']
        r = self.http.post(API + '/session/events', json={
            'session_id': sid, 'events': [
                {'event_id': 'e', 'object_id': 'a',
                 'created_at': now + 3600}]})
        self.assertEqual(r.status_code, 400)

    def test_events(self):
        sid = self.register()['session_id']
        now = int(time.time())
        r = self.http.post(API + '/session/events', json={
            'session_id': sid, 'events': [
                {'event_id': 'e2', 'object_id': 'b', 'created_at': now},
                {'event_id': 'e1', 'object_id': 'a',
                 'created_at': now - 10, 'meta': {'pos': 1}},
                {'event_id': 'e1', 'object_id': 'a'}]})
        self.assertEqual(r.status_code, 200, r.text)
        self.assertEqual(r.json(), {'session_id': sid,
                                    'stored': ['e2', 'e1'],
                                    'skipped': ['e1']})
        r = self.http.post(API + '/session/events', json={
            'session_id': sid, 'events': [
                {'event_id': 'e2', 'object_id': 'b'},
                {'event_id': 'e3', 'object_id': 'c',
                 'event_type': 'add_to_cart'}]})
        self.assertEqual(r.json()['stored'], ['e3'])
        self.assertEqual(r.json()['skipped'], ['e2'])
        events = self.http.get(API + '/session', params={
            'session_id': sid}).json()['events']
        # oldest first; the event type defaults to "click"
        self.assertEqual([e['event_id'] for e in events],
                         ['e1', 'e2', 'e3'])
        self.assertEqual([e['event_type'] for e in events],
                         ['click', 'click', 'add_to_cart'])
        self.assertEqual(events[0]['meta'], {'pos': 1})

    def test_irrelevant_and_use_for_improvement(self):
        plain = self.register()['session_id']
        url = API + '/internal/session/use-for-improvement'
        r = self.http.post(url, json={'session_id': plain})
        self.assertEqual(r.json(), {'session_id': plain, 'queued': False})
        r = self.http.post(API + '/session/irrelevant',
                           json={'session_id': plain})
        self.assertEqual(r.status_code, 200)
        self.assertIs(r.json()['is_irrelevant'], True)
        got = self.http.get(API + '/session', params={'session_id': plain})
        self.assertIs(got.json()['is_irrelevant'], True)
        r = self.http.post(url, json={'session_id': plain})
        self.assertEqual(r.json(), {'session_id': plain, 'queued': True})
        clicked = self.register()['session_id']
        self.http.post(API + '/session/events', json={
            'session_id': clicked,
            'events': [{'event_id': 'e', 'object_id': 'a'}]})
        r = self.http.post(url, json={'session_id': clicked})
        self.assertEqual(r.json()['queued'], True)

    def test_release_and_page_a_batch(self):
        release = API + '/internal/batch/release'
        self.register()
        first = self.http.post(release, json={'release_id': new_id('r')})
        self.assertEqual(first.status_code, 200)
        # nothing collecting now: a new key is a 404 ...
        r = self.http.post(release, json={'release_id': new_id('r')})
        self.assertEqual(r.status_code, 404)
        # ... and the used key answers as the first time
        again = self.http.post(release, json={
            'release_id': first.json()['release_id']})
        self.assertEqual(again.json(), first.json())
        self.assertEqual(set(first.json()),
                         {'release_id', 'batch_id', 'released_at'})
        sids = [self.register()['session_id'] for i in range(5)]
        batch = self.http.get(API + '/session', params={
            'session_id': sids[0]}).json()['batch_id']
        self.assertNotEqual(batch, first.json()['batch_id'])
        pages, after = [], 0
        while True:
            r = self.http.get(API + '/internal/batch/sessions', params={
                'batch_id': batch, 'after_number': after, 'limit': 2})
            self.assertEqual(r.status_code, 200)
            page = r.json()
            self.assertEqual(page['batch_id'], batch)
            if not page['sessions']:
                self.assertIsNone(page['last_number'])
                break
            pages.append([s['session_id'] for s in page['sessions']])
            self.assertEqual(page['last_number'],
                             page['sessions'][-1]['session_number'])
            after = page['last_number']
        self.assertEqual(pages, [sids[:2], sids[2:4], sids[4:]])
        r = self.http.get(API + '/internal/batch/sessions',
                          params={'batch_id': 'no-such-batch'})
        self.assertEqual(r.json()['sessions'], [])
        # A digit that int() does not take once made this a 500.
        r = self.http.get(API + '/internal/batch/sessions',
                          params={'batch_id': '\u00b2'})
        self.assertEqual((r.status_code, r.json()['sessions']), (200, []))

    def test_metrics_orders_and_health(self):
        r = self.http.get('/metrics/orders')
        self.assertEqual(r.status_code, 200)
        body = r.json()
        for key in ('median_visits_before_order',
                    'median_session_duration_minutes_before_order',
                    'ordering_sessions', 'visits_before_order',
                    'session_duration_minutes_before_order'):
            self.assertIn(key, body)
        self.assertEqual(set(body['visits_before_order']),
                         {'p25', 'p50', 'p75', 'p90', 'mean'})
        health = self.http.get('/health').json()
        self.assertEqual(health['status'], 'ok')
        self.assertGreater(health['commits'], 0)

    def test_docs(self):
        self.assertEqual(self.http.get('/docs').status_code, 200)
        spec = self.http.get('/openapi.json').json()
        for path in (API + '/session', API + '/session/events',
                     API + '/session/irrelevant',
                     API + '/internal/batch/sessions',
                     API + '/internal/batch/release',
                     API + '/internal/session/use-for-improvement',
                     '/metrics/orders', '/hits', '/health'):
            self.assertIn(path, spec['paths'])


class DemoServes(unittest.TestCase):
    """``trackstore demo`` ends by serving the dashboard on its data."""

    def test_demo_prints_the_address_and_serves(self):
        import os
        import subprocess

        import httpx

        from trackstore.tests.layers import free_port
        from trackstore.tests.webserver import TRACKSTORE
        workdir = tempfile.mkdtemp(prefix='trackstore-demo-')
        port = free_port()
        out = os.path.join(workdir, 'out.txt')
        with open(out, 'wb') as f:
            proc = subprocess.Popen(
                [TRACKSTORE, 'demo', '--customers', '20', '--days', '2',
                 '--port', str(port)], cwd=workdir, stdout=f,
                stderr=subprocess.STDOUT)
        try:
            url = 'http://127.0.0.1:%d/' % port
            deadline = time.monotonic() + 300
            while time.monotonic() < deadline:
                if proc.poll() is not None:
                    with open(out) as f:
                        self.fail('demo exited: %s' % f.read())
                try:
                    r = httpx.get(url + 'api/v1/dashboard', timeout=5)
                    break
                except httpx.HTTPError:
                    time.sleep(0.2)
            self.assertGreater(r.json()['totals']['visits'], 0)
            with open(out) as f:
                self.assertIn('dashboard of the demo data: ' + url,
                              f.read())
        finally:
            proc.terminate()
            proc.wait(30)
            shutil.rmtree(workdir, ignore_errors=True)
