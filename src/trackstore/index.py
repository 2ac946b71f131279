"""Partitions: the trees that hold tracks and their index entries.

A storage is split into partitions, and each writing connection fills its
own (see ``ids.py``), so concurrent writers change different trees and
almost never conflict, not even when their buckets split. Queries merge
the partitions.

A partition keeps

- ``records``: ``encoded user + packed id`` -> record (flat bytes). Tracks
  live inside the buckets of this map, clustered by user: the tracks of
  one user sit side by side, so reading them from disk reads a few
  buckets, not one per track. Its keys are the user index too.
- ``locations``: track id -> encoded user, to find a track by id;
- one segmented tree set per other index of ``encoded value + packed id``
  byte keys, so a high-cardinality index costs no persistent object per
  value;
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
    """Key -> record bytes."""
    max_leaf_size = 250
    max_internal_size = 16


class Locations(family.IO.BTree):
    """Track id -> encoded user; ids grow, so inserts append."""
    max_leaf_size = 250
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
            full = [group for group in byLevel.values()
                    if len(group) >= self.FANOUT]
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
        self.records = SegmentedMap()
        self.locations = Locations()
        self.count = Length()
        self.pairs = Segmented()
        self.indexes = {name: Segmented() for name in indexNames
                        if name != USER_INDEX}

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
        return self.records if name == USER_INDEX else self.indexes[name]

    # writing

    def store(self, items, locations):
        """Store records: ``items`` are (user key + id, record) pairs,
        ``locations`` map ids to encoded users."""
        items.sort()
        self.records.add(items)
        self.locations.update(locations)
        self.count.change(len(locations))

    def replace(self, key, record):
        self.records.set(key, record)

    def delete(self, trackId, key):
        self.records.remove(key)
        del self.locations[trackId]
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
        """The record key and record of a track, or (None, None)."""
        user = self.locations.get(trackId)
        if user is None:
            return None, None
        key = user + trackId.to_bytes(8, 'big')
        return key, self.records.get(key)

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

    def recordsIn(self, low, high):
        """(id, record) of the tracks whose user key is in the range: the
        user index answers with the records themselves."""
        found = []
        for segment in self.records.segments:
            found.extend([(idOf(key), record) for key, record in
                          segment.items(min=low, max=high,
                                        excludemax=True)])
        return found

    def iterRecords(self, low, high):
        """The records whose user key is in the range, lazily."""
        for segment in self.records.segments:
            yield from segment.values(min=low, max=high, excludemax=True)

    def items(self):
        """(id, record) of all tracks, by id."""
        found = []
        for segment in self.records.segments:
            found.extend((idOf(key), record)
                         for key, record in segment.items())
        found.sort(key=lambda item: item[0])
        return found
