"""Read-only reports: the order metrics, the dashboard data, health.

Both reports are cached as the JSON bytes of the answer
(``KeyedCache``), never recomputed over every session per request.
The order metrics depend on the stored visits only, so they are kept
until a visit changes (``visits_version``): registrations, events and
releases, which go on all the time on a busy server, leave them be. The
dashboard shows batches and counts too and is kept per database
snapshot (until anything is committed).
"""
import os

import orjson
from fastapi import APIRouter
from fastapi import Query
from fastapi import Request

from trackstore import metrics
from trackstore.clickstream.records import visits_version
from trackstore.web.cache import KeyedCache
from trackstore.web.dashboard import dashboard_data
from trackstore.web.hits import load_totals
from trackstore.web.schemas import Health
from trackstore.web.schemas import OrderMetrics
from trackstore.web.units import answer


router = APIRouter(tags=['reports'])


class Caches:
    """The app's report caches (one per report and option)."""

    def __init__(self):
        self.orders = {False: KeyedCache(), True: KeyedCache()}
        self.dashboard = KeyedCache()

    @property
    def computed(self):
        return self.dashboard.computed + sum(
            c.computed for c in self.orders.values())


def order_metrics(app, include_anonymous=False):
    """The order metrics (JSON bytes) of the visits a new connection
    sees."""
    cache = app.state.caches.orders[include_anonymous]
    return app.state.database.read(lambda storage, snapshot: cache.get(
        visits_version(storage), lambda: orjson.dumps(
            metrics.compute(storage, include_anonymous))))


def dashboard(app):
    """The dashboard's data (JSON bytes) for the snapshot a new
    connection sees."""
    cache = app.state.caches.dashboard
    return app.state.database.read(lambda storage, snapshot: cache.get(
        snapshot, lambda: orjson.dumps(
            dashboard_data(storage, load_totals(storage)))))


@router.get('/metrics/orders', response_model=OrderMetrics)
def get_order_metrics(request: Request,
                      include_anonymous: bool = Query(False)):
    """Sessions and minutes before an order: the medians (minutes
    truly in minutes), the count and the percentiles."""
    return answer(request, order_metrics(request.app, include_anonymous))


@router.get('/api/v1/dashboard')
def get_dashboard(request: Request):
    """Everything the dashboard page draws, as JSON."""
    return answer(request, dashboard(request.app))


@router.get('/health', response_model=Health)
def health(request: Request):
    """Whether the app reaches its database (no token needed)."""
    database = request.app.state.database
    database.read(lambda storage, snapshot: None)
    return Health(status='ok', database=database.safe_uri,
                  pid=os.getpid(), commits=database.commits,
                  conflicts=database.conflicts,
                  reports_computed=request.app.state.caches.computed)
