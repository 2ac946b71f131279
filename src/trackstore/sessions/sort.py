"""Sort hits by client and time with bounded memory.

A file is a batch: its hits are sorted by *group* (the customer, or the
session stamp of an anonymous hit), time and id before they are
sessionized, so a group's hits arrive together and in order whatever
the order of the lines. Hits are held in memory up to a budget; past it
the held hits are sorted and written to a temporary file (a *run*), and
the runs are merged at the end (``heapq.merge``), so memory holds one
run's worth of hits plus one block per run.

The memory a held hit costs is estimated from the length of its text
(``Hit.size``): a parsed hit with its event dict takes about
``HIT_OVERHEAD`` bytes plus ``SIZE_FACTOR`` times its text (measured on
generated hits with ``tracemalloc``: 950 bytes for 292 of text), plus
its sort key while it is sorted.
"""
import heapq
import marshal
import os
import tempfile

from trackstore import killpoints
from trackstore.sessions.hits import Hit


# The hits held before a sorted run is spilled: with a commit's work
# and the database cache beside it, a load of 1M hits peaked at 360 MB.
DEFAULT_MEMORY = 192 * 1024 * 1024
HIT_OVERHEAD = 500
SIZE_FACTOR = 2
# Hits per pickled block of a run: large enough that pickling is cheap
# per hit, small enough that one block per run fits beside the others.
BLOCK = 2000


def group_of(hit):
    """The sort group of a hit: its customer, or its session stamp."""
    if hit.customer is not None:
        return 'c:' + hit.customer
    return 's:' + hit.stamp


def sort_key(hit):
    return (group_of(hit), hit.us, hit.idkey)


def _row_key(row):
    return row[0]


class HitSorter:
    """Collect hits with ``add(hit)``, then iterate ``sorted()`` once.

    ``memory`` is the budget in bytes for the held hits; ``directory``
    where runs are written (a temporary directory of its own, removed
    by ``close()``). ``runs`` counts the runs spilled.
    """

    def __init__(self, memory=DEFAULT_MEMORY, directory=None):
        self.memory = memory
        self.parent = directory
        self.held = []
        self.used = 0
        self.runs = []
        self._tmp = None

    def add(self, hit):
        self.held.append(hit)
        self.used += HIT_OVERHEAD + SIZE_FACTOR * hit.size
        if self.used > self.memory:
            self._spill()

    def __len__(self):
        return len(self.held)

    def _spill(self):
        if self._tmp is None:
            self._tmp = tempfile.TemporaryDirectory(
                prefix='trackstore-sort-', dir=self.parent)
        self.held.sort(key=sort_key)
        path = os.path.join(self._tmp.name, 'run-%d' % len(self.runs))
        with open(path, 'wb') as out:
            held = self.held
            # A block of rows at a time: all the rows at once would
            # double the memory the held hits take.
            for start in range(0, len(held), BLOCK):
                rows = [(sort_key(h), h.to_row())
                        for h in held[start:start + BLOCK]]
                # marshal: the rows are plain values of our own making,
                # in a file of our own, and marshal writes and reads
                # them about twice as fast as pickle.
                block = marshal.dumps(rows)
                out.write(len(block).to_bytes(8, 'big'))
                out.write(block)
                killpoints.here('spill')
        self.runs.append(path)
        self.held = []
        self.used = 0

    @staticmethod
    def _read(path):
        with open(path, 'rb') as stream:
            while True:
                # Blocks are read whole: marshal.load() on a file reads
                # it in small pieces, and was slower than pickle.
                size = stream.read(8)
                if not size:
                    return
                yield from marshal.loads(
                    stream.read(int.from_bytes(size, 'big')))

    def sorted(self):
        """Yield every hit added, in ``sort_key`` order."""
        self.held.sort(key=sort_key)
        if not self.runs:
            yield from self.held
            return
        held = [(sort_key(h), h) for h in self.held]
        self.held = []
        sources = [self._read(path) for path in self.runs]
        for key, item in heapq.merge(held, *sources, key=_row_key):
            yield item if item.__class__ is Hit else Hit.from_row(item)

    def close(self):
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
