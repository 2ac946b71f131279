"""The tests of trackstore, run with zope.testrunner.

Tests that start Python subprocesses (the ``trackstore`` command, a ZEO
server, worker processes) start them with ``sys.executable`` and
``python_env()``: a test runner made by buildout (``bin/test``) or by
tox finds the package and its dependencies through its own ``sys.path``,
not through a virtualenv's ``bin/`` directory, so a child process sees
the same modules only when it is given that path.
"""
import os
import sys


#: The ``trackstore`` command as the test runner's Python runs it.
TRACKSTORE = [sys.executable, '-m', 'trackstore']


def python_env(env=None, **extra):
    """A copy of ``env`` (default: ``os.environ``) in which a Python
    subprocess imports from the same paths as this process, plus
    ``extra``."""
    env = dict(os.environ if env is None else env, **extra)
    env['PYTHONPATH'] = os.pathsep.join(p for p in sys.path if p)
    return env


def stored_visits(storage):
    """The stored sessions as ``(id, client, user, hit ids)``, sorted:
    what must not depend on the order or the loads the hits came in."""
    from trackstore.clickstream.dao import ClickstreamDao
    return sorted(
        (s['session_id'], s['search_meta']['client'], s['user_id'],
         tuple(e['event_id'] for e in s['events']))
        for s in ClickstreamDao(storage).iter_records())


def visits_at(uri):
    """``stored_visits`` of the database at ``uri``."""
    from trackstore.db import get_storage
    from trackstore.db import open_db
    db = open_db(uri)
    try:
        conn = db.open()
        try:
            return stored_visits(get_storage(conn))
        finally:
            conn.close()
    finally:
        db.close()
