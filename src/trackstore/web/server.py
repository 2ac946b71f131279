"""``trackstore serve``: the app under uvicorn.

uvicorn's worker processes import the app factory by name, so the
settings reach them through the environment (``Settings.to_env``).
Several workers need a database that several processes can open: a
ZEO server or PostgreSQL, not a FileStorage.
"""
import os

from trackstore.db import scheme_of


class ServeError(Exception):
    """The server cannot start with these options."""


def check(settings, workers):
    scheme = scheme_of(settings.db or 'file://')
    if workers > 1 and scheme in ('file', 'memory'):
        raise ServeError(
            '%d workers cannot share a %s database; use a ZEO server '
            '(zeo://host:port) or PostgreSQL, or --workers 1 (see '
            'docs/deployment.txt)' % (workers, scheme))


def address(host, port):
    shown = '[%s]' % host if ':' in host else host
    return 'http://%s:%d/' % (shown, port)


def serve(settings, host='127.0.0.1', port=8000, workers=1,
          log_level='info'):
    """Run the app until interrupted."""
    import uvicorn
    check(settings, workers)
    os.environ.update(settings.to_env())
    uvicorn.run('trackstore.web.app:app_from_env', factory=True,
                host=host, port=port, workers=workers,
                log_level=log_level, access_log=False)
