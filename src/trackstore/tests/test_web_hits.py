"""POST /hits and the cached reports, over real HTTP."""
import io
import shutil
import tempfile
import unittest

import orjson

from trackstore.sessions.generate import generate
from trackstore.tests.webserver import WebServer


class HitsLayer:

    @classmethod
    def setUp(cls):
        cls.dir = tempfile.mkdtemp(prefix='trackstore-web-hits-')
        cls.server = WebServer('file://%s/Data.fs' % cls.dir,
                               log=cls.dir + '/serve.log').start()

    @classmethod
    def tearDown(cls):
        cls.server.stop()
        shutil.rmtree(cls.dir, ignore_errors=True)


def hit_lines(customers=30, days=3, seed=11):
    out = io.BytesIO()
    generate(customers, days, seed, out)
    return out.getvalue().splitlines(keepends=True)


def hit(hid, kind='search', customer=7, ts='2022-05-01T10:00:00', **kw):
    event = {'user-agent': 'UA', 'ip': '10.0.0.1', 'customer-id': customer,
             'timestamp': ts}
    event.update(kw)
    return {'id': hid, 'type': kind, 'event': event}


class PostHits(unittest.TestCase):

    layer = HitsLayer

    def setUp(self):
        self.http = HitsLayer.server.client()

    def tearDown(self):
        self.http.close()

    def post(self, content, status=200):
        r = self.http.post('/hits', content=content)
        self.assertEqual(r.status_code, status, r.text)
        return r.json()

    def test_json_lines_array_and_one_hit(self):
        good = []
        for line in hit_lines():
            try:
                record = orjson.loads(line)
            except orjson.JSONDecodeError:
                continue
            if 'timestamp' in record.get('event', {}):
                good.append(line)
        body = b''.join(good[:400]) + b'not json\n' + orjson.dumps(
            {'id': 1, 'type': 'search'}) + b'\n'
        answer = self.post(body)
        self.assertEqual(answer['read'], 402)
        self.assertEqual(answer['stored'] + answer['rejected'], 402)
        self.assertGreaterEqual(answer['rejected'], 2)
        self.assertEqual(answer['skipped'], 0)
        reasons = {r['line']: r['reason'] for r in answer['rejects']}
        self.assertTrue(reasons[401].startswith('not JSON'))
        self.assertIn('timestamp', reasons[402])
        self.assertGreater(answer['sessions'], 0)
        # the same body again: everything is a duplicate
        again = self.post(body)
        self.assertEqual(again['stored'], 0)
        self.assertEqual(again['skipped'], answer['stored'])
        # a JSON array, and one hit spread over several lines
        array = orjson.dumps([hit(900001),
                              hit(900002, 'page_view', page='/p')])
        self.assertEqual(self.post(array)['stored'], 2)
        one = orjson.dumps(hit(900003, 'placed_order', order=5),
                           option=orjson.OPT_INDENT_2)
        self.assertEqual(self.post(one)['stored'], 1)
        self.assertEqual(self.post(one)['skipped'], 1)

    def test_a_body_of_nothing_but_rejects_is_422(self):
        r = self.http.post('/hits', content=b'{"id": 5}\n')
        self.assertEqual(r.status_code, 422)
        self.assertIn('missing', r.json()['detail']['rejects'][0]['reason'])
        r = self.http.post('/hits', content=b'   ')
        self.assertEqual(r.status_code, 422)

    def test_bots_are_counted_and_left_out(self):
        # Not a 422: the body was read, its one hit is a known crawler.
        bot = hit(900101, ts='2022-05-02T10:00:00', **{
            'user-agent': 'Googlebot/2.1 (+http://www.google.com/bot.html)'})
        answer = self.post(orjson.dumps(bot))
        self.assertEqual((answer['read'], answer['stored'], answer['bots']),
                         (1, 0, 1))
        self.assertEqual(answer['sessions'], 0)

    def test_reports_are_cached_until_what_they_show_changes(self):
        self.post(b''.join(hit_lines(customers=10, seed=12)[:200]))
        first = self.http.get('/metrics/orders').json()
        dashboard = self.http.get('/api/v1/dashboard').json()
        computed = self.http.get('/health').json()['reports_computed']
        for i in range(5):
            self.assertEqual(self.http.get('/metrics/orders').json(),
                             first)
            self.http.get('/api/v1/dashboard')
        self.assertEqual(self.http.get('/health').json()[
            'reports_computed'], computed)
        # a registered search session is no visit: the metrics are
        # kept, the dashboard (which counts batches) is computed again
        r = self.http.post('/api/v1/clickstream/session', json={
            'session_id': 'not-a-visit', 'search_query': 'q',
            'search_results': []})
        self.assertEqual(r.status_code, 200)
        self.assertEqual(self.http.get('/metrics/orders').json(), first)
        self.assertEqual(self.http.get('/health').json()[
            'reports_computed'], computed)
        self.http.get('/api/v1/dashboard')
        computed += 1
        self.assertEqual(self.http.get('/health').json()[
            'reports_computed'], computed)
        # the dashboard's order figures are those of /metrics/orders
        for key in ('median_visits_before_order',
                    'median_session_duration_minutes_before_order',
                    'ordering_sessions', 'visits_before_order'):
            self.assertEqual(dashboard['orders'][key], first[key])
        # new visits make the next request compute again, once
        self.post(orderly_customer_hits())
        after = self.http.get('/metrics/orders').json()
        self.http.get('/metrics/orders')
        self.assertEqual(self.http.get('/health').json()[
            'reports_computed'], computed + 1)
        self.assertEqual(after['ordering_sessions'],
                         first['ordering_sessions'] + 1)


def orderly_customer_hits():
    """A new customer's two visits, the second with an order."""
    hits = [hit(800001, customer=424242, ts='2022-06-01T10:00:00'),
            hit(800002, customer=424242, ts='2022-06-01T10:10:00'),
            hit(800003, customer=424242, ts='2022-06-01T15:00:00'),
            hit(800004, 'placed_order', customer=424242,
                ts='2022-06-01T15:05:00', order=1)]
    return b''.join(orjson.dumps(h) + b'\n' for h in hits)
