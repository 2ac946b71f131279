"""The streaming sessionizer: proto-sessions closed by event-time ticks.

After seed 004. Each client (see identities) has at most one open
proto-session. Its expiry is the time its next hit would no longer join
it: the last hit plus the timeout (or the first hit plus the length
cap, when that comes first). The client is filed under the expiry's
bucket, ``floor(expiry / tick)``; a later hit moves it to a later
bucket. Time is event time: it moves with the hits and with ``ping(t)``,
never with the wall clock, so replaying old data gives the same
sessions. When time enters a new bucket, every client filed under an
earlier bucket is closed: its hits, sorted by time, go to the closer.
The bucket only finds candidates; a session closes only when time is
strictly past its expiry, so a gap of exactly the timeout stays in.

Out-of-order arrival: hits are held in a small reorder heap until the
highest time seen is more than ``lateness`` ahead of them, and are
processed in hit order (time, then id). Hits arriving within the
lateness therefore give exactly the batch sessions. A hit arriving
later than that still joins its client's open session when it fits;
when it is older than what was already closed for its client (its last
closed hit, or anything more than the timeout behind the current time),
it is counted in ``late`` and handed to the closer as a session of its
own with ``late=True``: never dropped.

Large open sessions are compacted: when an open session's uncompressed
hits exceed ``compact_bytes`` they are packed into a zlib-compressed
chunk, expanded again when the session closes or is saved.

All state is plain dicts and lists (fast per hit); ``state()`` and
``StreamEngine.from_state()`` save and restore it, so a restarted
process continues exactly where the saved state left off.
"""
import heapq
import zlib
from collections import deque

import orjson

from trackstore.sessions.closed import ClosedSession
from trackstore.sessions.hits import Hit
from trackstore.sessions.identities import MAX_ID
from trackstore.sessions.identities import Identities
from trackstore.sessions.rules import DEFAULT_LATENESS
from trackstore.sessions.rules import DEFAULT_TICK
from trackstore.sessions.rules import Rules
from trackstore.sessions.rules import parse_duration
from trackstore.sessions.rules import to_us


DEFAULT_COMPACT_BYTES = 64 * 1024
STATE_VERSION = 1


def _key(hit):
    return (hit.us, hit.idkey)


class _Open:
    """An open proto-session."""

    __slots__ = ('key', 'hits', 'chunks', 'first', 'last', 'count',
                 'size', 'bucket', 'stamp', 'unordered')

    def __init__(self, key, hit):
        self.key = key
        self.hits = [hit]
        self.chunks = None
        self.first = self.last = hit.us
        self.count = 1
        self.size = hit.size
        self.bucket = None
        self.stamp = hit.stamp
        self.unordered = False

    def compact(self):
        """Pack the uncompressed hits into a compressed chunk."""
        data = zlib.compress(
            orjson.dumps([h.to_row() for h in self.hits]), 1)
        if self.chunks is None:
            self.chunks = [data]
        else:
            self.chunks.append(data)
        self.hits = []
        self.size = 0

    def all_hits(self):
        """Every hit, the compacted ones expanded."""
        if not self.chunks:
            return list(self.hits)
        hits = []
        for data in self.chunks:
            hits.extend(Hit.from_row(row)
                        for row in orjson.loads(zlib.decompress(data)))
        hits.extend(self.hits)
        return hits

    @property
    def packed_bytes(self):
        return sum(len(c) for c in self.chunks or ())


class StreamEngine:
    """Sessionize hits as they come; hand closed sessions to ``closer``.

    ``rules`` is a ``Rules`` (timeout, caps); ``lateness`` and ``tick``
    are seconds (or text like ``'1m'``); ``compact_bytes`` is the size of
    an open session's uncompressed hits above which they are compressed
    (None: never). Feed hits with ``add(hit)``, move time with
    ``ping(t)``, close everything with ``flush()`` (end of input).
    Counters: ``hits``, ``late``, ``opened``, ``closed``,
    ``compactions``, ``capped_events``, ``capped_length``; ``stats()``
    gives them as a dict.
    """

    def __init__(self, closer, rules=None, lateness=DEFAULT_LATENESS,
                 tick=DEFAULT_TICK, compact_bytes=DEFAULT_COMPACT_BYTES,
                 identities=None):
        self.closer = closer
        self.rules = rules if rules is not None else Rules()
        self.lateness_us = to_us(parse_duration(lateness))
        if self.lateness_us < 0:
            raise ValueError('lateness must not be negative')
        self.tick_us = to_us(parse_duration(tick))
        if self.tick_us <= 0:
            raise ValueError('the tick must be positive')
        self.compact_bytes = compact_bytes
        self.identities = (
            identities if identities is not None else Identities())
        self.open = {}
        self.buckets = {}
        self._bheap = []
        self.buffer = []
        self._seq = 0
        self.now = None
        self.max_seen = None
        self._cur_bucket = None
        self.closed_until = {}
        self._closed_order = deque()
        self.hits = self.late = self.opened = self.closed = 0
        self.compactions = self.capped_events = self.capped_length = 0

    # -- input -----------------------------------------------------------

    def add(self, hit):
        """Take one hit."""
        self.hits += 1
        lateness = self.lateness_us
        if not lateness:
            ms = self.max_seen
            if ms is None or hit.us > ms:
                self.max_seen = hit.us
            self._process(hit)
            return
        us = hit.us
        ms = self.max_seen
        if ms is None or us > ms:
            self.max_seen = ms = us
            raised = True
        else:
            raised = False
        wm = ms - lateness
        if us < wm:
            # behind the watermark: every buffered hit is later
            self._process(hit)
            return
        self._seq += 1
        buf = self.buffer
        heapq.heappush(buf, (us, hit.idkey, self._seq, hit))
        if raised:
            process = self._process
            while buf and buf[0][0] < wm:
                process(heapq.heappop(buf)[3])

    def add_many(self, hits):
        """Take many hits."""
        add = self.add
        for hit in hits:
            add(hit)

    def ping(self, t):
        """Move event time to ``t`` (float seconds since the epoch) when
        no hits come: releases held hits and closes what expired."""
        self.ping_us(int(round(t * 1000000)))

    def ping_us(self, us):
        if self.max_seen is None or us > self.max_seen:
            self.max_seen = us
        wm = self.max_seen - self.lateness_us
        buf = self.buffer
        while buf and buf[0][0] < wm:
            self._process(heapq.heappop(buf)[3])
        if self.now is None or wm > self.now:
            self._advance(wm)
            self.now = wm

    def flush(self):
        """Close every open session (end of input): held hits are
        processed first, sessions close in order of their first hit."""
        buf = self.buffer
        while buf:
            self._process(heapq.heappop(buf)[3])
        timeout_us = self.rules.timeout_us
        max_length_us = self.rules.max_length_us
        for s in sorted(self.open.values(), key=lambda s: s.first):
            end = s.last + timeout_us
            if max_length_us is not None and s.first + max_length_us < end:
                end = s.first + max_length_us
            self._close(s, (end, MAX_ID), 'flush')
        self.buckets = {}
        self._bheap = []

    # -- the core, in hit order ------------------------------------------

    def _process(self, hit):
        us = hit.us
        now = self.now
        if now is None or us > now:
            if now is None or us // self.tick_us > self._cur_bucket:
                self._advance(us)
            self.now = now = us
        key = self.identities.client_key(hit)
        s = self.open.get(key)
        rules = self.rules
        timeout_us = rules.timeout_us
        if s is None:
            if us < now and (
                    us <= self.closed_until.get(key, us - 1)
                    or us + timeout_us < now):
                self._late(key, hit)
                return
            s = self._new(key, hit)
        elif us >= s.last:
            max_length_us = rules.max_length_us
            if us - s.last > timeout_us:
                self._close(s, (s.last + timeout_us, MAX_ID), 'timeout')
                s = self._new(key, hit)
            elif (max_length_us is not None
                    and us - s.first > max_length_us):
                self.capped_length += 1
                self._close(s, (s.first + max_length_us, MAX_ID),
                            'max_length')
                s = self._new(key, hit)
            else:
                s.hits.append(hit)
                s.last = us
                s.count += 1
                s.size += hit.size
        else:
            # older than the session's last hit: only beyond lateness
            max_length_us = rules.max_length_us
            if (us <= self.closed_until.get(key, us - 1)
                    or us < s.first - timeout_us
                    or (max_length_us is not None
                        and s.last - us > max_length_us)):
                self._late(key, hit)
                return
            s.hits.append(hit)
            s.unordered = True
            if us < s.first:
                s.first = us
            s.count += 1
            s.size += hit.size
        max_events = rules.max_events
        if max_events is not None and s.count >= max_events:
            self.capped_events += 1
            self._close(s, (hit.us, hit.idkey), 'max_events')
            return
        if self.compact_bytes is not None and s.size > self.compact_bytes:
            s.compact()
            self.compactions += 1
        # file the client under its expiry's bucket
        expiry = s.last + timeout_us
        max_length_us = rules.max_length_us
        if max_length_us is not None and s.first + max_length_us < expiry:
            expiry = s.first + max_length_us
        bucket = expiry // self.tick_us
        if bucket != s.bucket:
            if s.bucket is not None:
                self.buckets[s.bucket].discard(key)
            self._file(key, bucket)
            s.bucket = bucket

    def _file(self, key, bucket):
        keys = self.buckets.get(bucket)
        if keys is None:
            self.buckets[bucket] = {key}
            heapq.heappush(self._bheap, bucket)
        else:
            keys.add(key)

    def _new(self, key, hit):
        s = _Open(key, hit)
        self.open[key] = s
        self.opened += 1
        return s

    def _advance(self, t):
        """Time moved to ``t``: close the sessions of passed buckets."""
        current = t // self.tick_us
        self._cur_bucket = current
        bheap = self._bheap
        if bheap and bheap[0] < current:
            timeout_us = self.rules.timeout_us
            max_length_us = self.rules.max_length_us
            due = []
            while bheap and bheap[0] < current:
                keys = self.buckets.pop(heapq.heappop(bheap), None)
                if keys:
                    due.extend(self.open[k] for k in keys)
            # a deterministic order for the closer
            due.sort(key=lambda s: (s.first, s.key))
            for s in due:
                expiry = s.last + timeout_us
                reason = 'timeout'
                if (max_length_us is not None
                        and s.first + max_length_us < expiry):
                    expiry = s.first + max_length_us
                    reason = 'max_length'
                if t > expiry:
                    if reason == 'max_length':
                        self.capped_length += 1
                    s.bucket = None
                    self._close(s, (expiry, MAX_ID), reason)
                else:
                    s.bucket = expiry // self.tick_us
                    self._file(s.key, s.bucket)
        # forget closed horizons the timeout rule covers anyway
        order = self._closed_order
        if order:
            limit = t - self.rules.timeout_us
            closed_until = self.closed_until
            while order and order[0][0] < limit:
                last, key = order.popleft()
                if closed_until.get(key) == last:
                    del closed_until[key]

    def _close(self, s, horizon, reason):
        key = s.key
        del self.open[key]
        if s.bucket is not None:
            keys = self.buckets.get(s.bucket)
            if keys is not None:
                keys.discard(key)
        hits = s.all_hits()
        if s.unordered:
            hits.sort(key=_key)
        if key.startswith('c:'):
            user = key[2:]
        else:
            user = self.identities.user_of(s.stamp, horizon)
        self.closed_until[key] = s.last
        self._closed_order.append((s.last, key))
        self.closed += 1
        self.closer.close(ClosedSession(
            key, hits, user_id=user, reason=reason, stamp=s.stamp))

    def _late(self, key, hit):
        self.late += 1
        if key.startswith('c:'):
            user = key[2:]
        else:
            user = self.identities.user_of(
                hit.stamp, (hit.us + self.rules.timeout_us, MAX_ID))
        self.closer.close(ClosedSession(
            key, [hit], user_id=user, late=True, reason='late',
            stamp=hit.stamp))

    # -- reporting -------------------------------------------------------

    @property
    def open_count(self):
        return len(self.open)

    @property
    def held(self):
        """Hits held in the reorder heap."""
        return len(self.buffer)

    def stats(self):
        return {'hits': self.hits, 'late': self.late,
                'opened': self.opened, 'closed': self.closed,
                'open': len(self.open), 'held': len(self.buffer),
                'compactions': self.compactions,
                'capped_events': self.capped_events,
                'capped_length': self.capped_length,
                'merged': self.identities.merged}

    # -- persistence -----------------------------------------------------

    def state(self, identities=True):
        """The engine's state as plain, picklable Python values.

        With ``identities=False`` the identity maps are left out (they
        grow with the number of visitors): save them incrementally with
        ``self.identities.take_changes()`` and pass them back to
        ``from_state``.
        """
        return {
            'version': STATE_VERSION,
            'rules': self.rules.as_dict(),
            'lateness_us': self.lateness_us,
            'tick_us': self.tick_us,
            'compact_bytes': self.compact_bytes,
            'now': self.now,
            'max_seen': self.max_seen,
            'open': [
                [s.key, s.first, s.last, s.count, s.size, s.stamp,
                 s.unordered, list(s.chunks or ()),
                 [h.to_row() for h in s.hits]]
                for s in self.open.values()],
            'buffer': [item[3].to_row()
                       for item in sorted(self.buffer,
                                          key=lambda i: i[:3])],
            'closed': [[last, key] for last, key in self._closed_order
                       if self.closed_until.get(key) == last],
            'counters': {k: v for k, v in self.stats().items()
                         if k not in ('open', 'held', 'merged')},
            'identities': (self.identities.state() if identities
                           else None),
        }

    @classmethod
    def from_state(cls, state, closer, identities=None):
        """An engine that continues from ``state()``; ``identities``
        (an ``Identities``) when the state was saved without them."""
        if state.get('version') != STATE_VERSION:
            raise ValueError(
                'unknown sessionizer state version %r' % (
                    state.get('version'),))
        if identities is None:
            if state['identities'] is None:
                raise ValueError(
                    'the state was saved without identities; pass them')
            identities = Identities.from_state(state['identities'])
        engine = cls(closer, rules=Rules.from_dict(state['rules']),
                     lateness=state['lateness_us'] / 1e6,
                     tick=state['tick_us'] / 1e6,
                     compact_bytes=state['compact_bytes'],
                     identities=identities)
        engine.lateness_us = state['lateness_us']
        engine.tick_us = state['tick_us']
        engine.now = state['now']
        engine.max_seen = state['max_seen']
        if engine.now is not None:
            engine._cur_bucket = engine.now // engine.tick_us
        timeout_us = engine.rules.timeout_us
        max_length_us = engine.rules.max_length_us
        for (key, first, last, count, size, stamp, unordered, chunks,
             rows) in state['open']:
            s = _Open.__new__(_Open)
            s.key = key
            s.first = first
            s.last = last
            s.count = count
            s.size = size
            s.stamp = stamp
            s.unordered = unordered
            s.chunks = list(chunks) or None
            s.hits = [Hit.from_row(r) for r in rows]
            expiry = last + timeout_us
            if max_length_us is not None and first + max_length_us < expiry:
                expiry = first + max_length_us
            s.bucket = expiry // engine.tick_us
            engine.open[key] = s
            engine._file(key, s.bucket)
        for row in state['buffer']:
            hit = Hit.from_row(row)
            engine._seq += 1
            heapq.heappush(engine.buffer,
                           (hit.us, hit.idkey, engine._seq, hit))
        for last, key in state['closed']:
            engine.closed_until[key] = last
            engine._closed_order.append((last, key))
        for name, value in state['counters'].items():
            setattr(engine, name, value)
        return engine
