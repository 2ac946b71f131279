"""Partitions, their indexes and the one contract every index keeps.

A storage is split into partitions, and each writing connection fills its
own (``ids.py`` knows which, and how ids are laid out), so concurrent
writers change different trees and almost never conflict, not even when
their buckets split. Queries merge the partitions (``query.py``).

A partition keeps

- ``records``: track id -> record (flat bytes). Ids grow, so a commit
  appends to the end of this tree: a record is written once, when it is
  saved, and again only when it changes (see ``RecordTree``);
- one index per index name (``ITrackIndex``: ``FieldIndex``, and
  ``TimeIndex`` and ``UserIndex`` for the metadata that need more), each
  a segmented tree set of ``encoded value + packed id`` byte keys, so a
  high-cardinality index costs no persistent object per value, and only
  these small keys take part in the merges;
- ``pairs``: ``encoded task + encoded user`` keys, for ``getUserNames``
  and ``getTaskIds`` without reading tracks.

Sets and maps are told apart in one place: the indexes and ``pairs`` are
sets (``Segmented``, of ``IndexSet`` segments); the one map is
``RecordTree``, which is never segmented.

All trees come from the 64-bit family, so ids and counts do not overflow
past 2**31.
"""
import heapq
import math
import pickle

import BTrees
from BTrees.Length import Length
from persistent import Persistent
from zope.interface import implementer

from trackstore import ids
from trackstore import keys
from trackstore.interfaces import ITrackIndex


family = BTrees.family64

USER_INDEX = 'userName'
TIME_INDEX = 'timeStamp'

# How index keys are laid out (``TrackingStorage.keyLayout``). 1: every
# index key is ``encoded value + id``. 2: the user index key starts with
# the encoded task, so a task+user query is one walk of one index;
# ``reindexTracks`` brings a layout 1 store to 2.
KEY_LAYOUT = 2


# Leaves are larger than the defaults (30 for OO sets): bulk inserts are
# sorted, and fewer, larger buckets mean fewer objects to write per
# commit. Internal nodes are smaller than the defaults (250): loading a
# node makes a ghost of each of its children, which is most of the cost
# of a cold lookup (see docs/performance.txt).


class IndexSet(family.OO.TreeSet):
    """A tree set of index keys, the segments of a ``Segmented``."""
    max_leaf_size = 250
    max_internal_size = 16


class RecordTree(family.IO.BTree):
    """Track id -> record bytes.

    Records were kept in the segments of the user index once (a user's
    tracks side by side), but then every merge of segments rewrote the
    records too: every few commits one was many times larger than the
    others (391 MB against a typical 13 MB for a load of sessions), and
    peak memory followed. Keyed by id, a record is written when it is
    saved and when it changes, never by a merge. Leaves of 32: appending
    a record rewrites the last bucket, so a small transaction (one
    session of a few KB, the web case) writes tens of KB, not hundreds;
    bulk saves fill whole new buckets anyway. Internal nodes of 16, not
    500: a query in a new process loads the path to each record it
    returns, and loading a node makes a ghost of every child; with 500
    a 100-track query made 11,900 ghosts and took 50-65 ms, with 16 it
    makes 2,000 and takes 15 ms (200,000 tracks, docs/performance.txt).
    """
    max_leaf_size = 32
    max_internal_size = 16


class Segmented(Persistent):
    """A sorted collection kept as a few segments, merged as they pile up.

    Random inserts into one big tree dirty nearly every bucket of a
    high-cardinality index (users) in each transaction, so the work per
    commit would grow with the index. Here keys that do not all sort
    after the newest segment go into a new segment, whose buckets are all
    new, and segments of one size class (powers of ``FANOUT``) are merged
    into one: a key is rewritten about log(n) times in its life instead
    of at every commit that touches its bucket (a log-structured merge).
    Keys that sort after everything (ids, time stamps) are appended to
    the newest segment, which touches only its last bucket.

    Lookups visit every segment; there are at most ``FANOUT - 1`` per
    size class. Keys of different segments may repeat in a set (``pairs``
    re-adds known pairs): merging drops the repeats and readers ignore
    them.
    """

    FANOUT = 8
    # Segments of this size class and above are never merged (None: no
    # limit). A merge holds all its keys in memory and writes them in
    # one commit, so a cap bounds both, at the price of more segments.
    MAX_LEVEL = None
    segmentFactory = IndexSet

    def __init__(self):
        self.segments = []
        # Sizes are kept here, since len() of a tree reads all of it. The
        # newest segment's size is only brought up to date when another
        # segment is added: appending to it then changes that segment's
        # last bucket and nothing else, which is what a small
        # transaction (one track, the web request case) does each time.
        self.sizes = []

    def __len__(self):
        return sum(len(segment) for segment in self.segments)

    @classmethod
    def level(cls, size):
        return int(math.log(max(size, 1), cls.FANOUT))

    def add(self, items):
        """Add sorted keys."""
        if not items:
            return
        if self.segments:
            newest = self.segments[-1]
            try:
                appends = newest.maxKey() < items[0]
            except ValueError:      # an empty segment
                appends = False
            if appends:
                newest.update(items)
                return
        segments, sizes = list(self.segments), list(self.sizes)
        if segments:
            sizes[-1] = len(segments[-1])
        segment = self.segmentFactory()
        segment.update(items)
        segments.append(segment)
        sizes.append(len(items))
        self._settle(segments, sizes)

    def _settle(self, segments, sizes):
        """Merge segments until each size class has fewer than FANOUT."""
        while True:
            byLevel = {}
            for i, size in enumerate(sizes):
                byLevel.setdefault(self.level(size), []).append(i)
            full = [group for level, group in byLevel.items()
                    if len(group) >= self.FANOUT and (
                        self.MAX_LEVEL is None or level < self.MAX_LEVEL)]
            if not full:
                break
            group = full[0]
            merged = self.segmentFactory()
            allItems = []
            for i in group:
                allItems.extend(segments[i].keys())
            # Concatenated sorted runs: timsort merges them in linear
            # time; a later duplicate key is the same entry again.
            allItems.sort()
            merged.update(allItems)
            size = len(merged)
            segments = [seg for i, seg in enumerate(segments)
                        if i not in group] + [merged]
            sizes = [n for i, n in enumerate(sizes)
                     if i not in group] + [size]
        if segments != self.segments:
            self.segments = segments
        if sizes != self.sizes:
            self.sizes = sizes

    def ids(self, low, high):
        """The ids of the keys with low <= key < high, in no particular
        order (callers sort what they return)."""
        found = []
        fromBytes = int.from_bytes
        for segment in self.segments:
            # idOf, inlined: this is the inner loop of every query.
            found.extend([fromBytes(key[-8:], 'big') for key in
                          segment.keys(low, high, excludemax=True)])
        return found

    def iterIds(self, low, high):
        """Like ``ids()``, but lazily, for walking only as far as
        needed."""
        for segment in self.segments:
            for key in segment.keys(min=low, max=high, excludemax=True):
                yield idOf(key)

    def remove(self, key):
        for i, segment in enumerate(self.segments):
            if key in segment:
                segment.remove(key)
                sizes = list(self.sizes)
                sizes[i] -= 1
                self.sizes = sizes
                # Invalidate what other connections remember of this
                # collection (see ``Partition.addPairs``).
                self._p_changed = True
        known = getattr(self, '_v_known', None)
        if known is not None:
            known.discard(key)

    def clear(self):
        self.segments = []
        self.sizes = []
        self.__dict__.pop('_v_known', None)

    def keys(self, min=None, max=None, excludemax=False):
        """All keys in the range, in order (merged over segments)."""
        iters = [segment.keys(min=min, max=max, excludemax=excludemax)
                 for segment in self.segments]
        if len(iters) == 1:
            return iter(iters[0])
        return _unique(heapq.merge(*iters))

    def __contains__(self, key):
        return any(key in segment for segment in self.segments)


def _unique(ordered):
    last = None
    for key in ordered:
        if key != last:
            yield key
            last = key


def dump_record(taskId, runId, userName, timeStamp, data):
    return pickle.dumps((taskId, runId, userName, timeStamp, data),
                        protocol=5)


load_record = pickle.loads


def idOf(key):
    return int.from_bytes(key[-8:], 'big')


def prefixRanges(prefixes):
    """Key ranges for byte prefixes; a prefix covered by a shorter one
    is dropped, so that no id is found twice."""
    prefixes = sorted(set(prefixes))
    if len(prefixes) == 1:
        return [(prefixes[0], keys.after(prefixes[0]))]
    kept = []
    for prefix in prefixes:
        if not any(prefix.startswith(k) for k in kept):
            kept.append(prefix)
    return [(prefix, keys.after(prefix)) for prefix in kept]


def valueList(query):
    """A query's values: a list, tuple or set means any of them."""
    if isinstance(query, (list, tuple, set, frozenset)):
        return list(query)
    return [query]


def isPrefix(value):
    return isinstance(value, str) and value.endswith('*')


@implementer(ITrackIndex)
class FieldIndex(Segmented):
    """Tracks by the value of one attribute.

    A key is ``keys.encode(value) + packed id``: values of any type sort
    and compare, and the id makes each entry a key of its own.
    """

    def encode(self, value):
        return keys.encode(value)

    def encodePrefix(self, value):
        return keys.encode_prefix(value[:-1])

    def key(self, docid, value):
        return self.encode(value) + keys.pack_id(docid)

    def index_doc(self, docid, value):
        self.add([self.key(docid, value)])

    def index_docs(self, pairs):
        entries = self.keysOf(pairs)
        entries.sort()
        self.add(entries)

    def keysOf(self, pairs):
        encode = keys.encoder()
        return [encode(value) + docid.to_bytes(8, 'big')
                for docid, value in pairs]

    def unindex_doc(self, docid, value):
        self.remove(self.key(docid, value))

    def ranges(self, query):
        """The key ranges that ``query`` selects."""
        return prefixRanges(
            self.encodePrefix(v) if isPrefix(v) else self.encode(v)
            for v in valueList(query))

    def apply(self, query):
        found = []
        for low, high in self.ranges(query):
            found.extend(self.ids(low, high))
        return found

    def iterApply(self, query):
        """Like ``apply``, lazily (to walk only as far as needed)."""
        for low, high in self.ranges(query):
            yield from self.iterIds(low, high)

    def entries(self):
        for key in self.keys():
            yield key[:-keys.ID_SIZE], idOf(key)

    def documentCount(self):
        return len(self)

    def wordCount(self):
        return len({value for value, _ in self.entries()})


class TimeIndex(FieldIndex):
    """Tracks by time stamp: floats, and ranges of them."""

    def encode(self, value):
        return keys.encode_float(float(value))

    def keysOf(self, pairs):
        encode = keys.encode_float
        return [encode(float(value)) + docid.to_bytes(8, 'big')
                for docid, value in pairs]

    def ranges(self, query):
        if isinstance(query, tuple) and query[:1] == ('range',):
            _, low, high = query
            return [(keys.FLOAT if low is None else self.encode(low),
                     keys.after(keys.FLOAT if high is None
                                else self.encode(high)))]
        return super().ranges(query)


class UserIndex(FieldIndex):
    """Tracks by (task, user): a value is a ``(taskId, userName)`` pair
    and the key starts with the encoded task (key layout 2), so that
    the tracks of a user in a task, the query a Zope application makes
    per request, are one walk of one index. A user name may be a prefix
    (``(task, 'an*')``)."""

    def encode(self, value):
        taskId, userName = value
        if userName.__class__ is str:
            return keys.encode(taskId) + keys.encode_str(userName)
        return keys.encode(taskId) + keys.encode(userName)

    def keysOf(self, pairs):
        # Tasks repeat, users mostly do not.
        encodeTask = keys.encoder()
        encode = keys.encode
        encodeStr = keys.encode_str
        return [encodeTask(task) + (
            encodeStr(user) if user.__class__ is str else encode(user))
            + docid.to_bytes(8, 'big') for docid, (task, user) in pairs]

    def encodePrefix(self, value):
        taskId, userName = value
        return keys.encode(taskId) + keys.encode_prefix(userName[:-1])

    def ranges(self, query):
        if len(query) == 1 and not isPrefix(query[0][1]):
            # one task and user, the query of a request: no sorting
            key = self.encode(query[0])
            return [(key, keys.after(key))]
        return prefixRanges(
            self.encodePrefix(v) if isPrefix(v[1]) else self.encode(v)
            for v in valueList(query))


def indexFor(name):
    """The kind of index an index name gets."""
    return {USER_INDEX: UserIndex, TIME_INDEX: TimeIndex}.get(
        name, FieldIndex)()


class Partition(Persistent):
    """The tracks of one writer (most of the time) and their indexes."""

    def __init__(self, number, indexNames):
        self.number = number
        self.lastId = ids.firstId(number)
        self.owner = None
        self.leaseUntil = 0.0
        self.records = RecordTree()
        self.count = Length()
        self.pairs = Segmented()
        self.indexes = {name: indexFor(name) for name in indexNames}

    def __repr__(self):
        return '<Partition %s: %s tracks>' % (self.number, self.count())

    def nextIds(self, n):
        """Allocate n consecutive ids in this partition."""
        return ids.allocate(self, n)

    def index(self, name):
        """The partition's ``ITrackIndex`` of that name."""
        return self.indexes[name]

    # writing

    def store(self, items):
        """Store records: ``items`` are (id, record) pairs."""
        items.sort()
        self.records.update(items)
        self.count.change(len(items))

    def replace(self, trackId, record):
        self.records[trackId] = record

    def delete(self, trackId):
        del self.records[trackId]
        self.count.change(-1)

    def indexValues(self, name, pairs):
        """Index ``(id, value)`` pairs in the index ``name``."""
        self.indexes[name].index_docs(pairs)

    def addPairs(self, pairKeys):
        # A writer sees the same (task, user) pairs over and over; the
        # ones it added lately are remembered on the (volatile) side and
        # not written again. Should another connection change the pairs
        # (a removal), the object is invalidated and the memory with it;
        # a pair written twice is harmless anyway.
        pairs = self.pairs
        known = getattr(pairs, '_v_known', None)
        if known is None or len(known) > 1_000_000:
            known = pairs._v_known = set()
        fresh = [key for key in pairKeys if key not in known]
        if fresh:
            fresh.sort()
            pairs.add(fresh)
            known.update(fresh)
            # Written even when the keys went into an existing segment:
            # should this transaction abort, the object is invalidated
            # and forgets keys that were never stored.
            pairs._p_changed = True

    # reading

    def record(self, trackId):
        """The record of a track, or None."""
        return self.records.get(trackId)

    def items(self):
        """(id, record) of all tracks, by id."""
        return self.records.items()
