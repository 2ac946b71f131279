"""Four server workers on one ZEO database: registrations from many
clients at once keep every batch invariant, and the conflicts they
retried are counted (``X-Conflict-Retries``) and printed."""
import collections
import concurrent.futures
import os
import shutil
import subprocess
import tempfile
import unittest

from trackstore.tests.layers import ZEOServer
from trackstore.tests.webserver import TRACKSTORE
from trackstore.tests.webserver import WebServer


API = '/api/v1/clickstream'
CLIENTS = 8
SESSIONS = 960


class FourWorkersLayer:

    @classmethod
    def setUp(cls):
        cls.dir = tempfile.mkdtemp(prefix='trackstore-web-zeo-')
        cls.zeo = ZEOServer(os.path.join(cls.dir, 'Data.fs')).start()
        cls.server = WebServer(cls.zeo.uri, workers=4,
                               log=cls.dir + '/serve.log').start()

    @classmethod
    def tearDown(cls):
        cls.server.stop()
        cls.zeo.stop()
        shutil.rmtree(cls.dir, ignore_errors=True)


class ConcurrentRegistrations(unittest.TestCase):

    layer = FourWorkersLayer

    def register_all(self, client_no):
        conflicts = commits = 0
        sids = []
        with FourWorkersLayer.server.client() as http:
            for i in range(SESSIONS // CLIENTS):
                sid = 'z-%d-%d' % (client_no, i)
                r = http.post(API + '/session', json={
                    'session_id': sid, 'search_query': 'q',
                    'search_results': [{'object_id': 'a'}]})
                r.raise_for_status()
                conflicts += int(r.headers['x-conflict-retries'])
                commits += 1
                # another worker may answer: it sees the commit at once
                got = http.get(API + '/session', params={'session_id': sid})
                self.assertEqual(got.status_code, 200)
                sids.append(sid)
                if i == 10:
                    r = http.post(API + '/internal/batch/release',
                                  json={'release_id': 'mid-%d' % (
                                      client_no % 2)})
                    conflicts += int(r.headers.get('x-conflict-retries', 0))
                    commits += 1
        return sids, conflicts, commits

    def test_invariants_and_conflict_rate(self):
        with concurrent.futures.ThreadPoolExecutor(CLIENTS) as pool:
            results = list(pool.map(self.register_all, range(CLIENTS)))
        sids = [sid for r in results for sid in r[0]]
        conflicts = sum(r[1] for r in results)
        commits = sum(r[2] for r in results)
        print('\n    4 workers on ZEO, %d clients: %d commits, %d conflicts '
              'retried (%.1f per 1,000 commits)' % (
                  CLIENTS, commits, conflicts, 1000.0 * conflicts / commits))
        with FourWorkersLayer.server.client() as http:
            batches = http.get('/api/v1/dashboard').json()['batches']
            paged = collections.defaultdict(list)
            for batch in batches:
                after = 0
                while True:
                    page = http.get(API + '/internal/batch/sessions', params={
                        'batch_id': batch['batch_id'], 'after_number': after,
                        'limit': 100, 'events_limit': 0}).json()
                    if not page['sessions']:
                        break
                    for s in page['sessions']:
                        paged[batch['batch_id']].append(
                            (s['session_number'], s['session_id']))
                    after = page['last_number']
        # every session in exactly one batch, numbers unique in a batch
        found = [sid for entries in paged.values() for n, sid in entries]
        self.assertEqual(sorted(found), sorted(sids))
        for batch in batches:
            numbers = [n for n, sid in paged[batch['batch_id']]]
            self.assertEqual(len(numbers), len(set(numbers)))
            # the counter is exact
            self.assertEqual(batch['session_counter'], len(numbers))
        statuses = [b['status'] for b in batches]
        self.assertEqual(statuses.count('collecting'), 1)
        # the two release keys released at most two batches, each once
        self.assertLessEqual(statuses.count('released'), 2)
        self.assertGreaterEqual(statuses.count('released'), 1)


class FileStorageIsOneWorker(unittest.TestCase):

    def test_refused(self):
        proc = subprocess.run(
            [TRACKSTORE, 'serve', '--db', 'file:///tmp/x/Data.fs',
             '--workers', '4'], capture_output=True, text=True, timeout=60)
        self.assertEqual(proc.returncode, 1)
        self.assertIn('ZEO', proc.stderr)
