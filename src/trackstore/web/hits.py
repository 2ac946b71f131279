"""POST /hits: raw hits over HTTP, into the same loader as a file.

The body is one hit, a JSON array of hits or JSON Lines. It is handed
to the ingest module as it is (``load_body``, the one function to adapt
when the loader's interface changes): the same validation, dedupe by hit
id, sessionizing and rejects as ``trackstore ingest``. The answer says
what was stored, skipped as duplicates, and rejected with the line and
the reason, and the hits of bots left out (``trackstore.privacy``). A
body whose records are all rejected is a 422.
"""
import os
import tempfile

import orjson
from fastapi import APIRouter
from fastapi import HTTPException
from fastapi import Request
from starlette.concurrency import run_in_threadpool

from trackstore.web.schemas import HitsOut
from trackstore.web.units import answer


#: Rejects listed in an answer (the count is always complete).
MAX_REJECTS_SHOWN = 100

router = APIRouter(tags=['hits'])


def as_records(body):
    """The body as the loader reads it: one hit (a JSON object, maybe
    spread over several lines) becomes one JSON line; arrays and JSON
    Lines pass unchanged."""
    stripped = body.strip()
    if stripped.startswith(b'{'):
        try:
            value = orjson.loads(stripped)
        except orjson.JSONDecodeError:
            return body     # JSON Lines (or broken: the loader says so)
        if isinstance(value, dict):
            # Line ends in JSON text are blanks between tokens, so the
            # object is one line with them made spaces (orjson would
            # not write it again when it nests deeper than it writes).
            return b' '.join(stripped.splitlines()) + b'\n'
    return body


def load_body(db, body, timeout):
    """Load the hits of ``body`` (bytes) into ``db`` with the ingest
    module's loader; returns ``(report as a dict, rejects)``."""
    from trackstore.ingest import Loader
    with tempfile.TemporaryDirectory(prefix='trackstore-hits-') as tmp:
        path = os.path.join(tmp, 'hits.jsonl')
        with open(path, 'wb') as f:
            f.write(as_records(body))
        rejects_path = os.path.join(tmp, 'rejects.jsonl')
        with Loader(db, timeout=timeout, rejects=rejects_path) as loader:
            report = loader.load(path)
        return report.as_dict(), read_rejects(rejects_path)


def read_rejects(path):
    if not os.path.exists(path):
        return []
    rejects = []
    with open(path, 'rb') as f:
        for line in f:
            if len(rejects) >= MAX_REJECTS_SHOWN:
                break
            reject = orjson.loads(line)
            rejects.append({'line': reject['line'],
                            'reason': reject['reason']})
    return rejects


def load_totals(storage):
    """The ingest's counts over all loads (``stored``, ``duplicates``,
    ``late``, ...), or ``{}`` when nothing was loaded."""
    from trackstore.hitstore import hit_state
    state = hit_state(storage, create=False)
    totals = getattr(state, 'totals', None)
    return dict(totals.items()) if totals is not None else {}


@router.post('/hits', response_model=HitsOut)
async def post_hits(request: Request):
    """Take hits (one JSON object, a JSON array or JSON Lines) into the
    sessionizer; answer with what was stored, skipped and rejected."""
    body = await request.body()
    if not body.strip():
        raise HTTPException(422, 'the body holds no hits')
    database = request.app.state.database
    report, rejects = await run_in_threadpool(
        load_body, database.db, body,
        request.app.state.settings.session_timeout)
    request.state.conflicts = report['conflicts']
    taken = HitsOut(
        read=report['read'], stored=report['stored'],
        skipped=report['duplicates'], rejected=report['rejected'],
        rejects=rejects, bots=report['bots'], late=report['late'],
        sessions=report['sessions'], replaced=report['replaced'])
    if taken.rejected and not (taken.stored or taken.skipped
                               or taken.bots):
        raise HTTPException(422, {
            'message': 'no hit in the body could be read',
            'rejects': rejects})
    return answer(request, taken)
