"""Group commit: the writes of one server process share transactions.

Design notes
------------

A FileStorage commit ends in an ``fsync`` of a file that grows, which
also journals the file's new size: on this machine kind that is most of
a registration's time, and the storage holds its lock meanwhile, so
reads wait for it too (``benchmarks/api.py`` spent two thirds of the
server's busy samples in ``fsync`` and in reads waiting on it). SQLite's
write-ahead log is rewritten in place and pays less per commit.

So a write does not commit alone when others are waiting. The first
request to arrive leads: it takes every unit of work queued (at most
``MAX_GROUP``), runs them one after another in one transaction and
commits once; then it hands the lead to the first unit queued meanwhile
and answers its own request. A unit's caller waits until its group has
committed, so nothing is answered before it is durable.

Units of a group run in queue order, as they would one after another,
and commit all or nothing:

- a conflict (at any unit, or at the commit) is retried by running the
  whole group again (``Writer.run``), so the group's units all report
  the retries;
- a unit that raises anything else (an unknown session, a batch that
  cannot be released) aborts the transaction; the unit gets its error
  and the others run again without it. Such errors are rare (they are
  the 4xx answers), so the rerun costs less than a savepoint per unit
  would on every commit.

One process's groups still conflict with other processes' commits (ZEO
or PostgreSQL with several workers) as single writes did.
"""
import threading

from trackstore.db import Writer
from trackstore.db import is_retryable


#: The most units one transaction takes: a group's transaction writes
#: every unit's objects, and a retried group redoes them all.
MAX_GROUP = 32


class UnitFailed(Exception):
    """A unit of a group raised: which one, and what."""

    def __init__(self, index, error):
        super().__init__(index, error)
        self.index = index
        self.error = error


class Unit:
    """One caller's ``fn(storage, *args)`` and, once its group is done,
    its outcome."""

    def __init__(self, fn, args):
        self.fn = fn
        self.args = args
        self.done = threading.Event()
        self.leads = False
        self.result = self.error = None
        self.conflicts = 0

    def outcome(self):
        if self.error is not None:
            raise self.error
        return self.result, self.conflicts


class GroupCommit:
    """Commits the units of work of many threads, several at a time.

    ``run(fn, *args)`` returns ``(fn's result, conflicts retried)``
    once the transaction that ran ``fn`` has committed, or raises what
    ``fn`` raised (then nothing of ``fn`` was committed). ``commits``
    and ``conflicts`` count transactions; ``units`` counts the calls.
    """

    def __init__(self, db, name='trackstore', max_group=MAX_GROUP):
        self.db = db
        self.name = name
        self.max_group = max_group
        self.commits = self.conflicts = self.units = 0
        self._lock = threading.Lock()
        self._queue = []
        self._busy = False

    def run(self, fn, *args):
        unit = Unit(fn, args)
        with self._lock:
            # Invariant: units are queued only while a leader is busy.
            self._queue.append(unit)
            unit.leads = not self._busy
            self._busy = True
        if not unit.leads:
            unit.done.wait()
        if unit.leads:
            self._lead()
        return unit.outcome()

    def _lead(self):
        with self._lock:
            group = self._queue[:self.max_group]
            del self._queue[:self.max_group]
        try:
            self._commit(group)
        finally:
            # Whatever happened to this group, the next one must lead.
            with self._lock:
                if self._queue:
                    self._queue[0].leads = True
                    self._queue[0].done.set()
                else:
                    self._busy = False

    def _commit(self, group):
        try:
            writer = Writer(self.db, name=self.name)
        except Exception as e:
            # No connection (the database closed, its server away for
            # good): the group fails whole instead of waiting forever.
            self._finish(group, error=e)
            return
        try:
            while group:
                group = self._try(writer, group)
        finally:
            with self._lock:
                self.commits += writer.commits
                self.conflicts += writer.conflicts
            # The connection keeps its partition for the next group
            # (releasing costs a commit).
            writer.close(release=False)

    def _try(self, writer, group):
        """Commit ``group``; the units still to commit (those left when
        one of them failed)."""
        try:
            results = writer.run(run_units, group)
        except UnitFailed as failed:
            unit = group.pop(failed.index)
            self._finish([unit], error=failed.error)
            return group
        except Exception as e:
            # The commit itself failed for good (retries used up, the
            # database gone): nothing of the group was committed.
            self._finish(group, error=e)
            return []
        for unit, result in zip(group, results):
            unit.result = result
        self._finish(group, conflicts=writer.conflicts)
        return []

    def _finish(self, units, error=None, conflicts=0):
        with self._lock:
            self.units += len(units)
        for unit in units:
            unit.error = error
            unit.conflicts = conflicts
            if not unit.leads:
                unit.done.set()


def run_units(storage, group):
    """Each unit's result, in order; ``UnitFailed`` for the first unit
    that raises an error a retry cannot cure."""
    results = []
    for index, unit in enumerate(group):
        try:
            results.append(unit.fn(storage, *unit.args))
        except Exception as e:
            if is_retryable(e):
                raise
            raise UnitFailed(index, e) from e
    return results
