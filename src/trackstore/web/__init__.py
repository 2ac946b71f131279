"""The web face: the clickstream API, the order metrics and a dashboard.

``create_app(settings)`` builds the FastAPI application;
``trackstore serve`` runs it under uvicorn (see ``server.py``). The
routes are thin: they parse, call the DAO, ``trackstore.metrics`` or the
loader in one unit of work, and format the answer.
"""
from trackstore.web.app import create_app
from trackstore.web.settings import Settings


__all__ = ['Settings', 'create_app']
