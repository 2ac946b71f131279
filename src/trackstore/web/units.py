"""The glue between a request and a unit of work.

Routes call ``read`` or ``write`` with a function of the storage; the
function runs in the request's own connection and transaction (see
``database.py``), and ``write`` reports how many conflicts it retried in
the ``X-Conflict-Retries`` header, which the benchmark sums.
"""
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


def write(request, response, fn, *args):
    """``fn(storage, *args)`` committed, retried on conflicts."""
    result, conflicts = request.app.state.database.write(fn, *args)
    response.headers['X-Conflict-Retries'] = str(conflicts)
    return result
