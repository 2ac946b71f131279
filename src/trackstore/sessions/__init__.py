"""Raw hits in, sessions out: the pure sessionizing engine.

API for the ingest pipeline (all names importable from here)::

    from trackstore.sessions import (
        read_records, parse_line, Hit, Reject, RejectsWriter,
        Rules, parse_duration, sessionize, StreamEngine,
        CollectingCloser, PrintingCloser, generate)

Reading and validating
    ``read_records(source)`` yields ``(lineno, raw_bytes)`` from a path,
    ``'-'`` (stdin) or a binary file object; JSON Lines, one JSON array
    (streamed item by item) or gzip of either (magic bytes). Bounded
    memory. ``open_input(source)`` -> ``(binary stream, is_array)`` if
    you want to count bytes for a progress bar and then call
    ``read_records(stream)`` yourself (it sniffs again; harmless).
    ``parse_line(raw, lineno)`` -> ``Hit`` or ``Reject(lineno, reason,
    raw)``; it never raises on bad input (test ``x.__class__ is Reject``).
    ``RejectsWriter(path_or_binary_file)``: ``.write(reject)`` writes
    ``{"line", "reason", "raw"}`` JSON lines (the file is created at the
    first reject); ``.count``, ``.reasons`` (Counter), ``.close()``.

Hit (slots)
    ``id`` (int or str as in the input, the dedupe key), ``idkey``
    (``str(id)``), ``type``, ``us`` (int microseconds since the epoch,
    UTC), ``ts`` (float seconds), ``customer`` (str or None), ``stamp``,
    ``client``, ``event`` (the event dict as read), ``fields`` (the type's
    own fields), ``size``; ``to_row()`` / ``Hit.from_row(row)``.

Rules
    ``Rules(timeout=1800, max_events=10000, max_length=86400)``;
    durations are seconds or text: ``parse_duration('30m') == 1800.0``.

Batch
    ``sessionize(hits, rules=None, timeout=None)`` -> list of
    ``ClosedSession`` ordered by first hit.

Stream
    ``engine = StreamEngine(closer, rules=Rules(...), lateness=60,
    tick=60, compact_bytes=65536)``; ``engine.add(hit)`` per hit;
    ``engine.ping(t_seconds)`` moves event time without hits;
    ``engine.flush()`` closes every open session (end of input);
    ``engine.stats()`` -> dict of hits, late, opened, closed, open, held,
    compactions, capped_events, capped_length, merged.
    Persistence: ``state = engine.state()`` (plain picklable dicts/lists/
    bytes: store it in ZODB at each commit, together with what the
    closer stored in that transaction) and
    ``StreamEngine.from_state(state, closer)`` to continue exactly.
    For big streams, ``engine.state(identities=False)`` plus
    ``engine.identities.take_changes()`` merged into a persistent
    mapping, restored with ``Identities.from_state({'owners': ...,
    'customers': ...})`` passed as ``from_state(..., identities=...)``.

    Semantics worth knowing: a hit is processed once event time (the
    highest time seen minus ``lateness``) has passed it, so the latest
    hits are held (``engine.held``) until later hits, a ping or
    ``flush()``. Hits within the lateness give exactly the batch
    sessions. A hit is *late* (counted in ``stats()['late']``, handed to
    the closer at once as its own session with ``late=True``) when it
    would have joined a session already closed, or its own session would
    have expired by now. The engine does not dedupe hit ids (the loader
    does). ``merged`` counts hits of a later client credited to a
    stamp's first owner. ``engine.rules`` may be replaced between hits.

Closers (``ICloser``: ``close(session)``)
    ``CollectingCloser()`` (``.sessions`` list), ``PrintingCloser(stream)``;
    the closer that stores is ``trackstore.hitstore.StoringCloser``
    (this package knows nothing of where sessions are stored).

ClosedSession
    ``session_id`` (deterministic, the same from batch and stream),
    ``client`` (``'c:<customer>'`` / ``'a:<visitor>'``), ``customer``
    (None for anonymous), ``user_id`` (customer, or stitched customer for
    an anonymous session), ``hits`` (sorted), ``late``, ``reason``,
    ``first_us``, ``last_us``, ``first_ts``, ``last_ts``, ``duration``
    (s), ``has_order``, ``stitched``, ``signature()``.

Generator
    ``generate(customers, days, seed, out)`` writes seed-002 JSON Lines
    to a path or binary file object, returns the number of lines.
"""
from trackstore.sessions.batch import sessionize
from trackstore.sessions.closed import ClosedSession
from trackstore.sessions.closed import session_id
from trackstore.sessions.closers import CollectingCloser
from trackstore.sessions.closers import PrintingCloser
from trackstore.sessions.generate import generate
from trackstore.sessions.hits import Hit
from trackstore.sessions.hits import Reject
from trackstore.sessions.hits import RejectsWriter
from trackstore.sessions.hits import format_us
from trackstore.sessions.hits import make_hit
from trackstore.sessions.hits import open_input
from trackstore.sessions.hits import parse_line
from trackstore.sessions.hits import parse_record
from trackstore.sessions.hits import parse_timestamp
from trackstore.sessions.hits import read_hits
from trackstore.sessions.hits import read_records
from trackstore.sessions.identities import Identities
from trackstore.sessions.rules import Rules
from trackstore.sessions.rules import parse_duration
from trackstore.sessions.stream import StreamEngine


__all__ = [
    'ClosedSession', 'CollectingCloser', 'Hit', 'Identities',
    'PrintingCloser', 'Reject', 'RejectsWriter', 'Rules',
    'StreamEngine', 'generate',
    'format_us', 'make_hit', 'open_input', 'parse_duration', 'parse_line',
    'parse_record', 'parse_timestamp', 'read_hits', 'read_records',
    'session_id', 'sessionize',
]
