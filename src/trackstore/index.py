"""Partitions: the trees that hold tracks and their index entries.

A storage is split into partitions, and each writing connection fills its
own (see ``ids.py``), so concurrent writers change different trees and
almost never conflict, not even when their buckets split. Queries merge
the partitions.

A partition keeps

- ``tracks``: track id -> record (flat bytes), so that tracks live inside
  the buckets of one tree and the number of persistent objects written
  grows with buckets, not with tracks;
- one tree set per index of ``(encoded value + packed id)`` byte keys, so
  a high-cardinality index (users) costs no persistent object per value;
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

from trackstore import keys


family = BTrees.family64

# Track ids are ``partition number << ID_BITS | sequence``: partition 0
# hands out 1, 2, 3 ... as a single writer always did.
ID_BITS = 40
ID_MASK = (1 << ID_BITS) - 1


class IndexSet(family.OO.TreeSet):
    """A tree set with buckets larger than the default 30 keys.

    Bulk inserts are sorted, so larger buckets mean fewer objects to
    write per commit (measured in docs/performance.txt).
    """
    max_leaf_size = 250
    max_internal_size = 500


class RecordTree(family.IO.BTree):
    """Track id -> record bytes; ids grow, so inserts append."""
    max_leaf_size = 120
    max_internal_size = 500


class SegmentedIndex(Persistent):
    """An index kept as a few sorted segments, merged as they pile up.

    Random inserts into one big tree dirty nearly every bucket of a
    high-cardinality index (users) in each transaction, so the work per
    commit would grow with the index. Here each ``add()`` writes its keys
    into a new segment, whose buckets are all new, and segments of the
    same size class (powers of ``FANOUT``) are merged into one: a key is
    rewritten about log(n) times in its life instead of at every commit
    that touches its bucket (a log-structured merge). Lookups visit every
    segment; there are at most (FANOUT - 1) per size class.

    Keys in different segments may repeat (``pairs`` re-adds known
    pairs); merging removes the repeats and readers ignore them.
    """

    FANOUT = 4

    def __init__(self):
        self.segments = []

    def __len__(self):
        return sum(len(segment) for segment in self.segments)

    @classmethod
    def level(cls, size):
        return int(math.log(max(size, 1), cls.FANOUT))

    def add(self, sortedKeys):
        if not sortedKeys:
            return
        segment = IndexSet()
        segment.update(sortedKeys)
        segments = self.segments + [segment]
        while True:
            byLevel = {}
            for seg in segments:
                byLevel.setdefault(self.level(len(seg)), []).append(seg)
            full = [group for group in byLevel.values()
                    if len(group) >= self.FANOUT]
            if not full:
                break
            group = full[0]
            merged = IndexSet()
            allKeys = []
            for seg in group:
                allKeys.extend(seg.keys())
            # Concatenated sorted runs: timsort merges them in linear time.
            allKeys.sort()
            merged.update(allKeys)
            segments = [seg for seg in segments
                        if not any(seg is g for g in group)] + [merged]
        self.segments = segments

    def remove(self, key):
        for segment in self.segments:
            if key in segment:
                segment.remove(key)

    def clear(self):
        self.segments = []

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


class Partition(Persistent):
    """The tracks of one writer (most of the time) and their indexes."""

    def __init__(self, number, indexNames):
        self.number = number
        self.lastId = number << ID_BITS
        self.owner = None
        self.leaseUntil = 0.0
        self.tracks = RecordTree()
        self.count = Length()
        self.pairs = SegmentedIndex()
        self.indexes = {name: SegmentedIndex() for name in indexNames}

    def __repr__(self):
        return '<Partition %s: %s tracks>' % (self.number, self.count())

    def nextIds(self, n):
        """Allocate n consecutive ids in this partition."""
        first = self.lastId + 1
        self.lastId += n
        if self.lastId - (self.number << ID_BITS) > ID_MASK:
            raise OverflowError('partition %s is full' % self.number)
        return range(first, first + n)

    # index entries

    def addEntries(self, entries):
        """Add index entries: ``{indexName: [key, ...]}``.

        Keys are sorted first: a sorted ``update()`` walks the tree once
        and touches each bucket once.
        """
        indexes = self.indexes
        for name, keylist in entries.items():
            keylist.sort()
            indexes[name].add(keylist)

    def removeEntries(self, entries):
        indexes = self.indexes
        for name, keylist in entries.items():
            tree = indexes[name]
            for key in keylist:
                tree.remove(key)

    def addPairs(self, pairKeys):
        self.pairs.add(sorted(pairKeys))

    def ids(self, name, low, high):
        """The ids of the index entries with low <= key < high, in no
        particular order (callers sort what they return)."""
        found = []
        fromBytes = int.from_bytes
        for segment in self.indexes[name].segments:
            found.extend([fromBytes(key[-8:], 'big')
                          for key in segment.keys(min=low, max=high,
                                                  excludemax=True)])
        return found

    def iterIds(self, name, low, high):
        """Like ``ids()``, but lazily, for walking an index only as far
        as needed."""
        for segment in self.indexes[name].segments:
            for key in segment.keys(min=low, max=high, excludemax=True):
                yield int.from_bytes(key[-8:], 'big')
