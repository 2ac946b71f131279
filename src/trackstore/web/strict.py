"""The stricter body reader: JSON bodies must be UTF-8 and shallow.

FastAPI takes any JSON that its parser reads; a session's
``search_meta`` or ``payload_filter`` may be anything, and the session
is pickled into the store, which recurses: a body nested a few hundred
levels deep passed validation and then failed with a 500. This ASGI
middleware reads a JSON body before the route does (the ``Guard`` in
front of it has bounded its size) and answers 400, with the reason,
when it is not UTF-8 or nests deeper than the hits may
(``trackstore.sessions.hits.DEFAULT_MAX_DEPTH``). Bodies that are not
JSON at all go on to the route, whose answer (422) says what is wrong.

``POST /hits`` reads JSON Lines and checks every hit itself (a bad line
is a reject, not a refused body), so its body is not looked at here.
"""
import orjson

from trackstore.sessions.hits import DEFAULT_MAX_DEPTH
from trackstore.sessions.hits import depth
from trackstore.web.security import reply


OWN_READERS = frozenset(['/hits'])
BODY_METHODS = frozenset(['POST', 'PUT', 'PATCH'])


class StrictJSON:
    """ASGI middleware: 400 for JSON bodies that are not UTF-8 or nest
    deeper than ``max_depth``."""

    def __init__(self, app, max_depth=DEFAULT_MAX_DEPTH):
        self.app = app
        self.max_depth = max_depth

    async def __call__(self, scope, receive, send):
        if (scope['type'] != 'http' or scope['method'] not in BODY_METHODS
                or scope['path'] in OWN_READERS):
            return await self.app(scope, receive, send)
        body, more = await _read(receive)
        why = self.refusal(body)
        if why is not None:
            return await reply(send, 400, {'detail': why})
        await self.app(scope, _replay(body, more, receive), send)

    def refusal(self, body):
        """Why ``body`` is refused, or None."""
        if not body:
            return None
        try:
            value = orjson.loads(body)
        except orjson.JSONDecodeError:
            try:
                body.decode('utf-8')
            except UnicodeDecodeError as e:
                return 'the body is not UTF-8: %s at byte %d' % (
                    e.reason, e.start)
            return None
        if depth(value) > self.max_depth:
            return 'the body nests deeper than %d levels' % self.max_depth
        return None


async def _read(receive):
    """The whole body, and whether the client disconnected meanwhile."""
    chunks = []
    while True:
        message = await receive()
        if message['type'] != 'http.request':
            return b''.join(chunks), message
        chunks.append(message.get('body', b''))
        if not message.get('more_body'):
            return b''.join(chunks), None


def _replay(body, ended, receive):
    """A ``receive`` that gives the body read already in one message,
    then what the client sends next."""
    sent = False

    async def replay():
        nonlocal sent
        if not sent:
            sent = True
            if ended is not None:
                return ended
            return {'type': 'http.request', 'body': body,
                    'more_body': False}
        return await receive()
    return replay
