"""The FastAPI application.

``create_app(settings)`` wires the routers, the gate (token, body size),
the stricter JSON body reader (``strict.py``) and the dashboard's static
files; the database is opened when the app starts (one per worker
process) and closed when it stops.
``app_from_env()`` is the factory uvicorn's workers import.
"""
import contextlib
import importlib.resources
import threading

from fastapi import FastAPI
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles

from trackstore.web import clickstream
from trackstore.web import hits
from trackstore.web import reports
from trackstore.web.database import Database
from trackstore.web.security import Guard
from trackstore.web.settings import Settings
from trackstore.web.strict import StrictJSON


STATIC = importlib.resources.files('trackstore.web') / 'static'

DESCRIPTION = """\
The clickstream API of the search product (sessions, events, batches),
the order metrics, raw hits in, and a dashboard at `/`.
With a token, every route but `/health` needs `Authorization: Bearer`.
"""


def create_app(settings=None, db=None):
    """The app for ``settings`` (a ``Settings``); ``db`` is an open
    ``ZODB.DB`` to use instead of opening ``settings.db`` (the caller
    closes it)."""
    settings = settings or Settings()

    @contextlib.asynccontextmanager
    async def lifespan(app):
        database = Database(settings.db, db=db)
        app.state.database = database
        warm(app)
        try:
            yield
        finally:
            if db is None:
                database.close()

    app = FastAPI(title='trackstore', description=DESCRIPTION,
                  version='0.1', lifespan=lifespan)
    app.state.settings = settings
    app.state.caches = reports.Caches()
    app.include_router(clickstream.router)
    app.include_router(clickstream.internal)
    app.include_router(hits.router)
    app.include_router(reports.router)
    app.mount('/static', StaticFiles(directory=str(STATIC)), name='static')
    app.add_api_route('/', index, include_in_schema=False)
    # The middleware added last is the outermost: the gate (token,
    # size) comes before the body is read for its depth.
    app.add_middleware(StrictJSON)
    app.add_middleware(Guard, token=settings.token,
                       max_body=settings.max_body)
    return app


def index():
    """The dashboard page."""
    return FileResponse(str(STATIC / 'index.html'))


def warm(app):
    """Compute the reports once in the background, so that the first
    visitor of a large store does not wait for them."""
    def run():
        try:
            reports.order_metrics(app)
            reports.dashboard(app)
        except Exception:       # pragma: no cover - only a head start
            pass
    threading.Thread(target=run, name='trackstore-warm',
                     daemon=True).start()


def app_from_env():
    """The app as a uvicorn worker builds it (``Settings.from_env``)."""
    return create_app(Settings.from_env())
