"""Read-only reports: the order metrics, the dashboard data, health.

Both reports are cached per database snapshot (``SnapshotCache``), as
the JSON bytes of the answer: a request that finds nothing committed
since the last computation gets them as they are, never a
recomputation over every session.
"""
import os

import orjson
from fastapi import APIRouter
from fastapi import Query
from fastapi import Request

from trackstore import metrics
from trackstore.web.cache import SnapshotCache
from trackstore.web.dashboard import dashboard_data
from trackstore.web.hits import load_totals
from trackstore.web.schemas import Health
from trackstore.web.schemas import OrderMetrics
from trackstore.web.units import answer


router = APIRouter(tags=['reports'])


class Caches:
    """The app's report caches (one per report and option)."""

    def __init__(self):
        self.orders = {False: SnapshotCache(), True: SnapshotCache()}
        self.dashboard = SnapshotCache()

    @property
    def computed(self):
        return self.dashboard.computed + sum(
            c.computed for c in self.orders.values())


def order_metrics(app, include_anonymous=False):
    """The order metrics (JSON bytes) for the snapshot a new connection
    sees."""
    cache = app.state.caches.orders[include_anonymous]
    return app.state.database.read(lambda storage, snapshot: cache.get(
        snapshot, lambda: orjson.dumps(
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
