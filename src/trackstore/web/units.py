"""The glue between a request, a unit of work and the answer.

Routes call ``read`` or ``write`` with a function of the storage; the
function runs in the request's own connection and transaction (see
``database.py``). ``answer`` turns the result into the JSON response,
with the conflicts ``write`` retried in the ``X-Conflict-Retries``
header (which the benchmark sums).

The routes return a ready ``Response``: FastAPI then neither validates
the answer against its model again nor serializes it in a second trip
through the thread pool (a third of a simple request's time); the
models still document the answers in /docs.
"""
import orjson
from fastapi import Response

from trackstore.clickstream.dao import ClickstreamDao
from trackstore.interfaces import IClickstreamDao


def dao(storage):
    """The storage's clickstream DAO: the registered adapter when a site
    configured one (configure.zcml), else the default one."""
    return IClickstreamDao(storage, None) or ClickstreamDao(storage)


def read(request, fn, *args):
    """``fn(storage, *args)`` in a read-only unit of work."""
    return request.app.state.database.read(
        lambda storage, snapshot: fn(storage, *args))


def write(request, fn, *args):
    """``fn(storage, *args)`` committed, retried on conflicts."""
    result, conflicts = request.app.state.database.write(fn, *args)
    request.state.conflicts = conflicts
    return result


def answer(request, value, status_code=200):
    """The JSON response for a model, a dict or JSON bytes."""
    if isinstance(value, bytes):
        body = value
    elif hasattr(value, 'model_dump_json'):
        body = value.model_dump_json()
    else:
        body = orjson.dumps(value)
    response = Response(body, status_code=status_code,
                        media_type='application/json')
    conflicts = getattr(request.state, 'conflicts', None)
    if conflicts is not None:
        response.headers['X-Conflict-Retries'] = str(conflicts)
    return response
