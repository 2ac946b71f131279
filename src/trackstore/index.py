"""Partitions: the trees that hold tracks and their index entries.

A storage is split into partitions, and each writing connection fills its
own (see ``ids.py``), so concurrent writers change different trees and
almost never conflict, not even when their buckets split. Queries merge
the partitions.

A partition keeps

- ``records``: track id -> record (flat bytes). Ids grow, so a commit
  appends to the end of this tree: a record is written once, when it is
  saved, and again only when it changes (see ``RecordTree``);
- one segmented tree set per index, the user index included, of
  ``encoded value + packed id`` byte keys, so a high-cardinality index
  costs no persistent object per value, and only these small keys take
  part in the merges;
- ``pairs``: ``encoded task + encoded user`` keys, for ``getUserNames``
  and ``getTaskIds`` without reading tracks.

All trees come from the 64-bit family, so ids and counts do not overflow
past 2**31.
"""
import heapq
import math
import pickle

import BTrees
from BTrees.Length import Length
from persistent import Persistent


family = BTrees.family64

# Track ids are ``partition number << ID_BITS | sequence``: partition 0
# hands out 1, 2, 3 ... as a single writer always did.
ID_BITS = 40
ID_MASK = (1 << ID_BITS) - 1
USER_INDEX = 'userName'


# Leaves are larger than the defaults: bulk inserts are sorted, and fewer,
# larger buckets mean fewer objects to write per commit. Internal nodes
# are smaller than the defaults: loading a node makes a ghost of each of
# its children, which is most of the cost of a cold lookup (see
# docs/performance.txt).


class IndexSet(family.OO.TreeSet):
    """A tree set of index keys."""
    max_leaf_size = 250
    max_internal_size = 16


class RecordMap(family.OO.BTree):
    """Key -> value, the segments of a ``SegmentedMap``."""
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
    bulk saves fill whole new buckets anyway.
    """
    max_leaf_size = 32
    max_internal_size = 500


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

    def _first(self, items):
        return items[0] if self.segmentFactory is IndexSet else items[0][0]

    def add(self, items):
        """Add sorted, distinct keys (a set) or sorted (key, value) pairs
        (a map)."""
        if not items:
            return
        if self.segments:
            newest = self.segments[-1]
            try:
                appends = newest.maxKey() < self._first(items)
            except ValueError:      # an empty segment
                appends = False
            if appends:
                self._update(newest, items)
                return
        segments, sizes = list(self.segments), list(self.sizes)
        if segments:
            sizes[-1] = len(segments[-1])
        segment = self.segmentFactory()
        self._update(segment, items)
        segments.append(segment)
        sizes.append(len(items))
        self._settle(segments, sizes)

    @staticmethod
    def _update(segment, items):
        segment.update(items)

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
                allItems.extend(self._items(segments[i]))
            # Concatenated sorted runs: timsort merges them in linear
            # time; a later duplicate key is the same entry again.
            allItems.sort()
            self._update(merged, allItems)
            size = len(allItems) if self.segmentFactory is not IndexSet \
                else len(merged)
            segments = [seg for i, seg in enumerate(segments)
                        if i not in group] + [merged]
            sizes = [n for i, n in enumerate(sizes)
                     if i not in group] + [size]
        if segments != self.segments:
            self.segments = segments
        if sizes != self.sizes:
            self.sizes = sizes

    @staticmethod
    def _items(segment):
        return segment.keys()

    def remove(self, key):
        for i, segment in enumerate(self.segments):
            if key in segment:
                if isinstance(segment, IndexSet):
                    segment.remove(key)
                else:
                    del segment[key]
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


class SegmentedMap(Segmented):
    """``Segmented`` with values: key -> record bytes."""

    segmentFactory = RecordMap

    @staticmethod
    def _items(segment):
        return segment.items()

    @staticmethod
    def _update(segment, items):
        segment.update(items)

    def get(self, key, default=None):
        for segment in self.segments:
            value = segment.get(key)
            if value is not None:
                return value
        return default

    def set(self, key, value):
        """Replace the value of an existing key, where it is."""
        for segment in self.segments:
            if key in segment:
                segment[key] = value
                return
        raise KeyError(key)


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


class Partition(Persistent):
    """The tracks of one writer (most of the time) and their indexes."""

    def __init__(self, number, indexNames):
        self.number = number
        self.lastId = number << ID_BITS
        self.owner = None
        self.leaseUntil = 0.0
        self.records = RecordTree()
        self.count = Length()
        self.pairs = Segmented()
        self.indexes = {name: Segmented() for name in indexNames}

    def __repr__(self):
        return '<Partition %s: %s tracks>' % (self.number, self.count())

    def nextIds(self, n):
        """Allocate n consecutive ids in this partition."""
        first = self.lastId + 1
        self.lastId += n
        if self.lastId - (self.number << ID_BITS) > ID_MASK:
            raise OverflowError('partition %s is full' % self.number)
        return range(first, first + n)

    def index(self, name):
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

    def addEntries(self, entries):
        """Add index entries: ``{indexName: [key, ...]}``, each list
        sorted first, so that one ``update()`` walks a tree once."""
        for name, keylist in entries.items():
            keylist.sort()
            self.indexes[name].add(keylist)

    def removeEntries(self, entries):
        for name, keylist in entries.items():
            index = self.indexes[name]
            for key in keylist:
                index.remove(key)

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

    def ids(self, name, low, high):
        """The ids of the index entries with low <= key < high, in no
        particular order (callers sort what they return)."""
        found = []
        for segment in self.index(name).segments:
            found.extend([idOf(key) for key in segment.keys(
                min=low, max=high, excludemax=True)])
        return found

    def iterIds(self, name, low, high):
        """Like ``ids()``, but lazily, for walking an index only as far
        as needed."""
        for segment in self.index(name).segments:
            for key in segment.keys(min=low, max=high, excludemax=True):
                yield idOf(key)

    def items(self):
        """(id, record) of all tracks, by id."""
        return self.records.items()
