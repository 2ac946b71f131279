"""The gate in front of every route: the bearer token and the body size.

An ASGI middleware rather than FastAPI dependencies, so that it runs
before any route reads the body: a body larger than the limit is
refused with 413 from its ``Content-Length`` alone, and a chunked body
is cut off as soon as it passes the limit, never read whole.

With a token, every path but ``/health`` needs ``Authorization: Bearer
<token>``. A browser cannot send that header when it opens the
dashboard, so ``/?token=<token>`` answers with a cookie holding the
token (HttpOnly, SameSite=Strict) and a redirect to ``/``; the cookie
counts as the header does.
"""
import hmac
import http.cookies
import urllib.parse

import orjson


OPEN_PATHS = frozenset(['/health'])
COOKIE = 'trackstore_token'


class BodyTooLarge(Exception):
    """The request body passed the size limit while it was read."""


class Guard:
    """ASGI middleware: 401 without the token, 413 for large bodies."""

    def __init__(self, app, token=None, max_body=None):
        self.app = app
        self.token = token.encode() if token else None
        self.max_body = max_body

    async def __call__(self, scope, receive, send):
        if scope['type'] != 'http':
            return await self.app(scope, receive, send)
        headers = dict(scope['headers'])
        if self.token and scope['path'] not in OPEN_PATHS:
            if scope['path'] == '/' and self._token_in_query(scope):
                return await self._login(send)
            if not self._authorized(headers):
                return await reply(send, 401, {
                    'detail': 'a valid "Authorization: Bearer <token>" '
                              'header is required'},
                    [(b'www-authenticate', b'Bearer')])
        if self.max_body is None:
            return await self.app(scope, receive, send)
        length = headers.get(b'content-length')
        if length is not None and _too_long(length, self.max_body):
            return await self._too_large(send)
        return await self._limited(scope, receive, send)

    async def _limited(self, scope, receive, send):
        seen = 0
        started = False

        async def counting_receive():
            nonlocal seen
            message = await receive()
            seen += len(message.get('body', b''))
            if seen > self.max_body:
                raise BodyTooLarge()
            return message

        async def tracking_send(message):
            nonlocal started
            started = True
            await send(message)

        try:
            await self.app(scope, counting_receive, tracking_send)
        except BodyTooLarge:
            if started:
                raise
            await self._too_large(send)

    async def _too_large(self, send):
        await reply(send, 413, {
            'detail': 'request body larger than %d bytes' % self.max_body})

    def _authorized(self, headers):
        given = headers.get(b'authorization', b'')
        scheme, _, value = given.partition(b' ')
        if scheme.lower() == b'bearer' and self._matches(value.strip()):
            return True
        cookie = _cookie(headers.get(b'cookie', b''))
        return cookie is not None and self._matches(cookie)

    def _matches(self, value):
        # Constant time, so the token cannot be guessed byte by byte.
        return hmac.compare_digest(value, self.token)

    def _token_in_query(self, scope):
        query = urllib.parse.parse_qs(scope.get('query_string', b''))
        values = query.get(b'token')
        return bool(values) and self._matches(values[0])

    async def _login(self, send):
        cookie = '%s=%s; HttpOnly; SameSite=Strict; Path=/' % (
            COOKIE, urllib.parse.quote(self.token.decode(), safe=''))
        await send({'type': 'http.response.start', 'status': 303,
                    'headers': [(b'location', b'/'),
                                (b'set-cookie', cookie.encode()),
                                (b'content-length', b'0')]})
        await send({'type': 'http.response.body', 'body': b''})


def _too_long(length, limit):
    try:
        return int(length) > limit
    except ValueError:
        return True


def _cookie(raw):
    jar = http.cookies.SimpleCookie()
    try:
        jar.load(raw.decode('latin-1'))
    except http.cookies.CookieError:
        return None
    morsel = jar.get(COOKIE)
    if morsel is None:
        return None
    return urllib.parse.unquote(morsel.value).encode()


async def reply(send, status, body, headers=()):
    """Send a whole JSON response."""
    data = orjson.dumps(body)
    await send({'type': 'http.response.start', 'status': status,
                'headers': [(b'content-type', b'application/json'),
                            (b'content-length', str(len(data)).encode())]
                + list(headers)})
    await send({'type': 'http.response.body', 'body': data})
