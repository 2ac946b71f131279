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
        self.pairs = IndexSet()
        self.indexes = {name: IndexSet() for name in indexNames}

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
            indexes[name].update(keylist)

    def removeEntries(self, entries):
        indexes = self.indexes
        for name, keylist in entries.items():
            tree = indexes[name]
            for key in keylist:
                try:
                    tree.remove(key)
                except KeyError:
                    # Already gone: a reindex or a concurrent removal.
                    pass

    def addPairs(self, pairKeys):
        pairKeys = sorted(pairKeys)
        self.pairs.update(pairKeys)

    def scan(self, name, prefix):
        """Yield the ids of the index entries whose key starts with
        ``prefix``."""
        unpack = keys.unpack_id
        for key in self.indexes[name].keys(min=prefix):
            if not key.startswith(prefix):
                break
            yield unpack(key)

    def scanRange(self, name, low, high):
        """Yield the ids of the index entries with low <= key < high."""
        unpack = keys.unpack_id
        for key in self.indexes[name].keys(min=low, max=high,
                                          excludemax=True):
            yield unpack(key)

    def hasEntry(self, name, prefix):
        for key in self.indexes[name].keys(min=prefix):
            return key.startswith(prefix)
        return False
