"""The dashboard, drawn by a real browser on generated data.

``trackstore generate`` and ``trackstore ingest`` fill a FileStorage,
``trackstore serve`` serves it, headless Chromium (Debian's
``chromium``) opens ``/`` and runs the page's script, and the DOM it
dumps must hold every chart with exactly the data ``/api/v1/dashboard``
answers. With ``TRACKSTORE_DASHBOARD_SCREENSHOT=path`` the test also
saves a screenshot (that is how docs/dashboard.png is made).
"""
import collections
import html.parser
import os
import shutil
import subprocess
import tempfile
import unittest

from trackstore.tests.webserver import TRACKSTORE
from trackstore.tests.webserver import WebServer


CHROMIUM = shutil.which('chromium') or shutil.which('chromium-browser')
SCREENSHOT_ENV = 'TRACKSTORE_DASHBOARD_SCREENSHOT'
# CI (.ci/run) installs chromium and sets this: there a missing browser
# fails the test instead of skipping it.
REQUIRE_ENV = 'TRACKSTORE_REQUIRE_BROWSER'


def chromium(*args, timeout=120):
    profile = tempfile.mkdtemp(prefix='trackstore-chromium-')
    try:
        proc = subprocess.run(
            [CHROMIUM, '--headless=new', '--disable-gpu', '--no-sandbox',
             '--no-first-run', '--disable-extensions',
             '--user-data-dir=' + profile, '--hide-scrollbars',
             '--virtual-time-budget=10000'] + list(args),
            capture_output=True, timeout=timeout)
    finally:
        shutil.rmtree(profile, ignore_errors=True)
    return proc


class Charts(html.parser.HTMLParser):
    """Collects ``data-chart`` svgs with their ``datum`` elements, and
    the other ``data-key``/``data-value`` rows by their container."""

    def __init__(self):
        super().__init__()
        self.charts = collections.defaultdict(list)
        self.rows = collections.defaultdict(list)
        self.body = {}
        self._chart = None
        self._ids = []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == 'body':
            self.body = attrs
        if tag == 'svg' and 'data-chart' in attrs:
            self._chart = attrs['data-chart']
            self.charts[self._chart]
        elif 'datum' in (attrs.get('class') or '').split() and self._chart:
            self.charts[self._chart].append(
                (attrs['data-key'], attrs['data-value']))
        elif 'data-key' in attrs and 'data-value' in attrs:
            kind = 'batches' if tag == 'tr' else 'care'
            self.rows[kind].append((attrs['data-key'], attrs['data-value'],
                                    attrs.get('data-status')))

    def handle_endtag(self, tag):
        if tag == 'svg':
            self._chart = None


class DashboardLayer:

    @classmethod
    def setUp(cls):
        cls.dir = tempfile.mkdtemp(prefix='trackstore-dashboard-')
        uri = 'file://%s/Data.fs' % cls.dir
        run = dict(cwd=cls.dir, check=True, capture_output=True,
                   timeout=600)
        subprocess.run([TRACKSTORE, 'generate', '--customers', '150',
                        '--days', '6', '--seed', '5', '-o', 'hits.jsonl'],
                       **run)
        subprocess.run([TRACKSTORE, 'ingest', 'hits.jsonl', '--db', uri],
                       **run)
        cls.server = WebServer(uri, log=cls.dir + '/serve.log').start()
        with cls.server.client() as http:
            # a released batch beside the collecting one
            http.post('/api/v1/clickstream/internal/batch/release',
                      json={'release_id': 'r1'}).raise_for_status()
            http.post('/api/v1/clickstream/session', json={
                'session_id': 'api-1', 'search_query': 'lamp',
                'search_results': []}).raise_for_status()

    @classmethod
    def tearDown(cls):
        cls.server.stop()
        shutil.rmtree(cls.dir, ignore_errors=True)


@unittest.skipIf(CHROMIUM is None and not os.environ.get(REQUIRE_ENV),
                 'chromium is not installed (.ci/run installs it: '
                 'apt-get install chromium)')
class Dashboard(unittest.TestCase):

    layer = DashboardLayer

    def test_the_charts_show_what_the_api_says(self):
        server = DashboardLayer.server
        with server.client() as http:
            data = http.get('/api/v1/dashboard').json()
            page = http.get('/')
            self.assertNotIn('http://', page.text.replace(
                'http://www.w3.org', ''))
            self.assertNotIn('https://', page.text)
        proc = chromium('--dump-dom', server.url + '/')
        self.assertEqual(proc.returncode, 0, proc.stderr[-2000:])
        dom = Charts()
        dom.feed(proc.stdout.decode())
        self.assertEqual(dom.body.get('data-drawn'), 'true')
        days = data['days']
        self.assertGreaterEqual(len(days), 6)
        for name in ('visits', 'customers', 'orders', 'conversion'):
            drawn = dom.charts[name + '-per-day']
            self.assertEqual([k for k, v in drawn],
                             [d['day'] for d in days])
            self.assertEqual([float(v) for k, v in drawn],
                             [d[name] for d in days])
        for chart, key in (('visits-before-order', 'visits_before_order'),
                           ('minutes-before-order',
                            'minutes_before_order')):
            self.assertEqual(
                [(k, int(v)) for k, v in dom.charts[chart]],
                [(b['bin'], b['count']) for b in data[key]])
            self.assertEqual(sum(b['count'] for b in data[key]),
                             data['orders']['ordering_sessions'])
        for chart, key in (('top-pages', 'top_pages'),
                           ('top-queries', 'top_queries')):
            self.assertEqual(
                [(k, int(v)) for k, v in dom.charts[chart]],
                [(t['name'], t['count']) for t in data[key]])
            self.assertEqual(len(data[key]), 10)
        self.assertEqual(
            sorted(dom.rows['batches']),
            sorted((b['batch_id'], str(b['session_counter']), b['status'])
                   for b in data['batches']))
        self.assertEqual(
            sorted(b['status'] for b in data['batches']),
            ['collecting', 'released'])
        care = {k: v for k, v, s in dom.rows['care']}
        self.assertEqual(care['late'], str(data['hits']['late']))
        self.assertEqual(care['bots'], str(data['hits']['bots']))
        self.assertGreater(data['totals']['visits'], 500)
        self.assertEqual(sum(d['visits'] for d in days),
                         data['totals']['visits'])
        screenshot = os.environ.get(SCREENSHOT_ENV)
        if screenshot:
            proc = chromium('--window-size=1400,1760',
                            '--screenshot=' + os.path.abspath(screenshot),
                            server.url + '/')
            self.assertEqual(proc.returncode, 0, proc.stderr[-2000:])
