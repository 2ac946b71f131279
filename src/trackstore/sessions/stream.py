"""The streaming sessionizer: proto-sessions closed by event-time ticks.

After seed 004. Each client (see identities) has at most one open
proto-session. Its expiry is the time its next hit would no longer join
it: the last hit plus the timeout (or the first hit plus the length cap,
when that comes first). The client is filed under the expiry's bucket,
``floor(expiry / tick)``; later hits move its expiry, and the tick that
reaches its old bucket files it under the new one (one move per timeout
rather than one per hit). Time is event time: it moves with the hits and
with ``ping(t)``, never with the wall clock, so replaying old data gives
the same sessions. When time enters a new bucket, every client filed
under an earlier bucket is closed: its hits, sorted by time, go to the
closer. The bucket only finds candidates; a session closes only when
time is strictly past its expiry, so a gap of exactly the timeout stays
in.

Out-of-order arrival: hits are held back until the highest time seen is
more than ``lateness`` ahead of them, then processed in hit order (time,
then id; the held hits are sorted in slices). Hits arriving within the
lateness therefore give exactly the batch sessions. A hit arriving
later than that still joins its client's open session when it fits;
when it would have joined a session already closed (it is no more than
the timeout after that session's last hit), or its own session would
have expired by now (it is more than the timeout behind time), it is
counted in ``late`` and handed to the closer as a session of its
own with ``late=True``: never dropped.

Large open sessions are compacted: when an open session's uncompressed
hits exceed ``compact_bytes`` they are packed into a zlib-compressed
chunk, expanded again when the session closes.

All state is plain dicts and lists (fast per hit); ``state()`` and
``StreamEngine.from_state()`` save and restore it, so a restarted
process continues exactly where the saved state left off.
"""
import bisect
import heapq
import operator
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


_NEVER = -(1 << 62)
_KEY = operator.attrgetter('us', 'idkey')
_FIRST_KEY = operator.attrgetter('first', 'key')


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
        # held hits are released in slices of this much event time
        self._step = max(self.lateness_us // 2, 1)
        self.open = {}
        self.buckets = {}
        self._bheap = []
        self._pending = []
        self._seq = 0
        self._released = _NEVER
        self.now = _NEVER
        self.max_seen = _NEVER
        self._cur_bucket = _NEVER
        self.closed_until = {}
        self._closed_order = deque()
        self.hits = self.late = self.opened = self.closed = 0
        self.compactions = self.capped_events = self.capped_length = 0

    @property
    def rules(self):
        return self._rules

    @rules.setter
    def rules(self, rules):
        # the limits are read per hit: keep them at hand
        self._rules = rules
        self._timeout_us = rules.timeout_us
        self._max_length_us = rules.max_length_us
        self._max_events = rules.max_events

    # -- input -----------------------------------------------------------

    def add(self, hit):
        """Take one hit."""
        self.hits += 1
        us = hit.us
        if us < self._released:
            # behind what was already released: too late to reorder
            self._process(hit)
            return
        # (time, id, arrival) sorts without a key function and never
        # compares two hits, even duplicates
        self._seq += 1
        self._pending.append((us, hit.idkey, self._seq, hit))
        if us > self.max_seen:
            self.max_seen = us
            if us - self.lateness_us - self._released >= self._step:
                self._release(us - self.lateness_us)

    def add_many(self, hits):
        """Take many hits."""
        add = self.add
        for hit in hits:
            add(hit)

    def _release(self, watermark):
        """Process, in hit order, the held hits before ``watermark``.

        Held hits are sorted in slices (a C sort of nearly sorted data)
        rather than pushed through a heap one by one: far cheaper per
        hit, and the same order."""
        pending = self._pending
        pending.sort()
        i = bisect.bisect_left(pending, (watermark,))
        if i:
            process = self._process
            for item in pending[:i]:
                process(item[3])
            del pending[:i]
        self._released = watermark
        # every hit before the watermark is in: time is there
        if watermark > self.now:
            if watermark // self.tick_us > self._cur_bucket:
                self._advance(watermark)
            self.now = watermark

    def ping(self, t):
        """Move event time to ``t`` (float seconds since the epoch) when
        no hits come: releases held hits and closes what expired."""
        self.ping_us(int(round(t * 1000000)))

    def ping_us(self, us):
        if us > self.max_seen:
            self.max_seen = us
        watermark = self.max_seen - self.lateness_us
        if watermark > self._released:
            self._release(watermark)
        if watermark > self.now:
            self._advance(watermark)
            self.now = watermark

    def flush(self):
        """Close every open session (end of input): held hits are
        processed first, sessions close in order of their first hit."""
        pending = self._pending
        if pending:
            pending.sort()
            self._pending = []
            for item in pending:
                self._process(item[3])
        if self.max_seen + 1 > self._released:
            self._released = self.max_seen + 1
        for s in sorted(self.open.values(), key=_FIRST_KEY):
            expiry, reason = self._expiry(s)
            self._close(s, (expiry, MAX_ID), 'flush')
        self.buckets = {}
        self._bheap = []

    # -- the core, in hit order ------------------------------------------

    def _process(self, hit):
        us = hit.us
        now = self.now
        if us > now:
            if us // self.tick_us > self._cur_bucket:
                self._advance(us)
            self.now = now = us
        # the client key (identities.client_key, inlined: it is per hit)
        identities = self.identities
        stamp = hit.stamp
        customer = hit.customer
        if customer is not None:
            if stamp not in identities.customers:
                identities.customers[stamp] = (customer, us, hit.idkey)
                identities._changed_customers.add(stamp)
            key = 'c:' + customer
        else:
            key = 'a:' + identities.owner(stamp, hit.client or stamp)
        s = self.open.get(key)
        timeout_us = self._timeout_us
        if s is None:
            # late: it would have joined a session already closed, or
            # its own session would have expired by now
            if us < now and (
                    us <= self.closed_until.get(key, _NEVER) + timeout_us
                    or us + timeout_us < now):
                self._late(key, hit)
                return
            s = self._new(key, hit)
        elif us >= s.last:
            if us - s.last > timeout_us:
                self._close(s, (s.last + timeout_us, MAX_ID), 'timeout')
                s = self._new(key, hit)
            elif (self._max_length_us is not None
                    and us - s.first > self._max_length_us):
                self.capped_length += 1
                self._close(s, (s.first + self._max_length_us, MAX_ID),
                            'max_length')
                s = self._new(key, hit)
            else:
                if us == s.last:
                    # a tie: the close sorts by id, as batch does
                    s.unordered = True
                s.hits.append(hit)
                s.last = us
                s.count += 1
                s.size += hit.size
                # the client stays filed under its earlier bucket; the
                # tick that reaches it files it anew (one move per
                # timeout instead of one per hit)
        else:
            # older than the session's last hit: only beyond lateness
            max_length_us = self._max_length_us
            if (us <= self.closed_until.get(key, _NEVER) + timeout_us
                    or us < s.first - timeout_us
                    or (max_length_us is not None
                        and s.last - us > max_length_us)):
                self._late(key, hit)
                return
            s.hits.append(hit)
            s.unordered = True
            s.count += 1
            s.size += hit.size
            if us < s.first:
                s.first = us
                if max_length_us is not None:
                    # the length cap may now expire it earlier
                    self._file(s)
        max_events = self._max_events
        if max_events is not None and s.count >= max_events:
            self.capped_events += 1
            self._close(s, (us, hit.idkey), 'max_events')
            return
        if self.compact_bytes is not None and s.size > self.compact_bytes:
            s.compact()
            self.compactions += 1

    def _expiry(self, s):
        """When the next hit no longer joins ``s``, and why."""
        expiry = s.last + self._timeout_us
        if (self._max_length_us is not None
                and s.first + self._max_length_us < expiry):
            return s.first + self._max_length_us, 'max_length'
        return expiry, 'timeout'

    def _file(self, s):
        """File the client under the bucket of its session's expiry."""
        bucket = self._expiry(s)[0] // self.tick_us
        s.bucket = bucket
        keys = self.buckets.get(bucket)
        if keys is None:
            self.buckets[bucket] = {s.key}
            heapq.heappush(self._bheap, bucket)
        else:
            keys.add(s.key)

    def _new(self, key, hit):
        s = _Open(key, hit)
        self.open[key] = s
        self.opened += 1
        self._file(s)
        return s

    def _advance(self, t):
        """Time moved to ``t``: close the sessions of passed buckets."""
        current = t // self.tick_us
        self._cur_bucket = current
        bheap = self._bheap
        if bheap and bheap[0] < current:
            due = []
            while bheap and bheap[0] < current:
                bucket = heapq.heappop(bheap)
                for key in self.buckets.pop(bucket, ()):
                    s = self.open.get(key)
                    # stale entries: closed, or filed anew elsewhere
                    if s is not None and s.bucket == bucket:
                        due.append(s)
            # a deterministic order for the closer
            due.sort(key=_FIRST_KEY)
            for s in due:
                expiry, reason = self._expiry(s)
                if t > expiry:
                    if reason == 'max_length':
                        self.capped_length += 1
                    self._close(s, (expiry, MAX_ID), reason)
                else:
                    self._file(s)
        # forget closed horizons the rule "its own session would have
        # expired" covers anyway
        order = self._closed_order
        if order:
            limit = t - 2 * self._timeout_us
            closed_until = self.closed_until
            while order and order[0][0] < limit:
                last, key = order.popleft()
                if closed_until.get(key) == last:
                    del closed_until[key]

    def _close(self, s, horizon, reason):
        key = s.key
        del self.open[key]
        s.bucket = None
        hits = s.all_hits()
        if s.unordered:
            hits.sort(key=_KEY)
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
                hit.stamp, (hit.us + self._timeout_us, MAX_ID))
        self.closer.close(ClosedSession(
            key, [hit], user_id=user, late=True, reason='late',
            stamp=hit.stamp))

    # -- reporting -------------------------------------------------------

    @property
    def open_count(self):
        return len(self.open)

    @property
    def held(self):
        """Hits held back for reordering."""
        return len(self._pending)

    def stats(self):
        return {'hits': self.hits, 'late': self.late,
                'opened': self.opened, 'closed': self.closed,
                'open': len(self.open), 'held': len(self._pending),
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
            'released': self._released,
            'open': [
                [s.key, s.first, s.last, s.count, s.size, s.stamp,
                 s.unordered, list(s.chunks or ()),
                 [h.to_row() for h in s.hits], s.bucket]
                for s in sorted(self.open.values(), key=_FIRST_KEY)],
            'held': [item[3].to_row() for item in sorted(self._pending)],
            'closed': [[last, key] for last, key in self._closed_order
                       if self.closed_until.get(key) == last],
            'counters': {
                'hits': self.hits, 'late': self.late,
                'opened': self.opened, 'closed': self.closed,
                'compactions': self.compactions,
                'capped_events': self.capped_events,
                'capped_length': self.capped_length},
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
        engine._step = max(engine.lateness_us // 2, 1)
        engine.now = state['now']
        engine.max_seen = state['max_seen']
        engine._released = state['released']
        engine._cur_bucket = (
            _NEVER if engine.now == _NEVER
            else engine.now // engine.tick_us)
        for (key, first, last, count, size, stamp, unordered, chunks,
             rows, bucket) in state['open']:
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
            engine.open[key] = s
            # filed where it was (not where it would be filed now), so
            # the restarted engine closes in the very same order
            s.bucket = bucket
            keys = engine.buckets.get(bucket)
            if keys is None:
                engine.buckets[bucket] = {key}
                heapq.heappush(engine._bheap, bucket)
            else:
                keys.add(key)
        for row in state['held']:
            hit = Hit.from_row(row)
            engine._seq += 1
            engine._pending.append((hit.us, hit.idkey, engine._seq, hit))
        for last, key in state['closed']:
            engine.closed_until[key] = last
            engine._closed_order.append((last, key))
        for name, value in state['counters'].items():
            setattr(engine, name, value)
        return engine
