"""A real ``trackstore serve`` in a subprocess, for the web tests.

The tests talk to it over HTTP on a free 127.0.0.1 port, as any client
would; nothing is called in-process.
"""
import os
import subprocess
import sys
import time

import httpx

from trackstore.tests.layers import free_port


TRACKSTORE = os.path.join(os.path.dirname(sys.executable), 'trackstore')


class WebServer:
    """``trackstore serve --db URI --port P [options]`` until ``stop()``.
    """

    def __init__(self, uri, *options, token=None, workers=1, log=None,
                 env=None, cwd=None):
        self.uri = uri
        self.port = free_port()
        self.url = 'http://127.0.0.1:%d' % self.port
        self.options = list(options)
        self.token = token
        self.workers = workers
        self.log = log or os.devnull
        self.env = dict(os.environ)
        # Only the token a test asks for.
        self.env.pop('TRACKSTORE_TOKEN', None)
        self.env.update(env or {})
        self.cwd = cwd
        self.process = None

    @property
    def command(self):
        command = [TRACKSTORE, 'serve', '--db', self.uri, '--port',
                   str(self.port), '--workers', str(self.workers),
                   '--log-level', 'warning'] + self.options
        if self.token:
            command += ['--token', self.token]
        return command

    def start(self, timeout=60):
        with open(self.log, 'ab') as log:
            self.process = subprocess.Popen(
                self.command, stdout=log, stderr=subprocess.STDOUT,
                env=self.env, cwd=self.cwd)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError('trackstore serve exited with %s (%s)'
                                   % (self.process.returncode, self.log))
            try:
                if httpx.get(self.url + '/health', timeout=2) \
                        .status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        self.stop()
        raise RuntimeError('trackstore serve did not answer within %ss'
                           % timeout)

    def client(self, token=None, **kw):
        """An ``httpx.Client`` for the server (with the token given)."""
        headers = {}
        token = token or self.token
        if token:
            headers['Authorization'] = 'Bearer ' + token
        return httpx.Client(base_url=self.url, headers=headers,
                            timeout=60, **kw)

    def stop(self):
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
