"""TrackingStorage, Track and Run: the cybertools.tracking API on ZODB.

The storage keeps its tracks in partitions (``index.py``; which one a
writer fills and how ids are laid out is ``ids.py``), answers queries
through the partitions' indexes (``query.py``) and batches the work of
per-call saves until the transaction needs it (``pending.py``).

Tracks are not persistent objects of their own: a track is a flat record
in the ``records`` tree of a partition (see ``index.py``) and is handed out as
a ``Track`` value object. Runs are persistent, so that changes to their
``end`` and ``finished`` survive a reload, and they merge concurrent
changes instead of conflicting.
"""
import functools
import time

from BTrees.Length import Length
from persistent import Persistent
from zope.interface import implementer

from trackstore import ids
from trackstore import keys
from trackstore import query as planner
from trackstore.ids import formatId
from trackstore.index import KEY_LAYOUT
from trackstore.index import USER_INDEX
from trackstore.index import Partition
from trackstore.index import dump_record
from trackstore.index import family
from trackstore.index import indexFor
from trackstore.index import load_record
from trackstore.interfaces import IRun
from trackstore.interfaces import ITrack
from trackstore.interfaces import ITrackingStorage
from trackstore.pending import Pending


METADATA = ('taskId', 'runId', 'userName', 'timeStamp')


def formatTime(timeStamp):
    """Minutes are what a person reads in a repr (UTC)."""
    if not timeStamp:
        return '-'
    return time.strftime('%Y-%m-%d %H:%M', time.gmtime(timeStamp))


def pairKey(track):
    """The key of a track's task and user in its partition's ``pairs``
    (``_writeRows`` makes the same keys, with a batch's encoder)."""
    return keys.encode(track.taskId) + keys.encode(track.userName)


@implementer(ITrack)
class Track:
    """A track as handed out by a storage (a value object).

    Subclasses may add index attributes; names that are not metadata are
    read from ``data``.
    """

    metadata_attributes = METADATA
    index_attributes = METADATA
    typeName = 'Track'

    def __init__(self, taskId, runId, userName, data=None, timeStamp=None):
        self.taskId = taskId
        self.runId = runId
        self.userName = userName
        self.data = dict(data or {})
        self.timeStamp = time.time() if timeStamp is None else timeStamp
        self.__name__ = None

    @classmethod
    def fromRecord(cls, trackId, record):
        track = cls.__new__(cls)
        (track.taskId, track.runId, track.userName, track.timeStamp,
         track.data) = load_record(record)
        track.__name__ = formatId(trackId)
        return track

    @property
    def metadata(self):
        return {name: getattr(self, name) for name in METADATA}

    def indexValue(self, name):
        if name in METADATA:
            return getattr(self, name)
        return self.data.get(name)

    def __eq__(self, other):
        return (isinstance(other, Track) and self.__name__ == other.__name__
                and self.metadata == other.metadata
                and self.data == other.data)

    def __hash__(self):
        return hash((self.__class__, self.__name__))

    def __repr__(self):
        md = [self.taskId, self.runId, self.userName,
              formatTime(self.timeStamp)]
        return '<%s %r: %r>' % (self.__class__.__name__, md, self.data)


@implementer(IRun)
class Run(Persistent):
    """A run of a task, persistent and conflict-merging."""

    def __init__(self, id, taskId=None, start=None):
        self.id = id
        self.taskId = taskId
        self.start = time.time() if start is None else start
        self.end = self.start
        self.finished = False

    def __repr__(self):
        return '<Run %s, %s, %s, %s>' % (
            self.id, formatTime(self.start), formatTime(self.end),
            self.finished)

    def _p_resolveConflict(self, old, committed, new):
        # Every save moves ``end``: writers in one run must not conflict
        # over it. The later end wins and a finished run stays finished.
        resolved = dict(committed)
        resolved['end'] = max(committed.get('end') or 0,
                              new.get('end') or 0)
        resolved['finished'] = bool(committed.get('finished')
                                    or new.get('finished'))
        resolved['start'] = min(committed['start'], new['start'])
        for name in set(new) - {'end', 'finished', 'start'}:
            if new.get(name) != old.get(name):
                if committed.get(name) != old.get(name):
                    from ZODB.POSException import ConflictError
                    raise ConflictError('run %s: both changed %s'
                                        % (resolved.get('id'), name))
                resolved[name] = new[name]
        return resolved


def flushing(method):
    """A read (or a change of stored tracks) first writes the saves
    still pending in the transaction, so that it sees them."""
    @functools.wraps(method)
    def wrapper(self, *args, **kw):
        pending = Pending.of(self, create=False)
        if pending is not None:
            pending.flush()
        return method(self, *args, **kw)
    return wrapper


@implementer(ITrackingStorage)
class TrackingStorage(Persistent):
    """A persistent, partitioned, BTree-indexed store of tracks."""

    trackFactory = Track
    # the highest run id removeRun took out (see startRun)
    lastRemovedRun = 0
    # Stores made before the user index was keyed by task say nothing
    # (layout 1); ``reindexTracks`` brings them to ``KEY_LAYOUT``.
    keyLayout = 1

    def __init__(self, trackFactory=None):
        if trackFactory is not None:
            self.trackFactory = trackFactory
        self.indexNames = tuple(self.trackFactory.index_attributes)
        self.keyLayout = KEY_LAYOUT
        self.partitions = family.IO.BTree()
        self.partitions[0] = Partition(0, self.indexNames)
        self.runs = family.IO.BTree()
        # Keyed by encoded task id: task ids of different types (str, int)
        # do not compare, their encodings do.
        self.currentRuns = family.OI.BTree()
        self.runCount = Length()
        # Adapters (the clickstream DAO, ingestion) keep their own state
        # here under dotted keys, as zope.annotation does.
        self.__annotations__ = family.OO.BTree()

    # partitions (ids.py decides which one a writer fills)

    def _writerPartition(self):
        self._checkLayout()
        return ids.writerPartition(self)

    def _newPartition(self, number):
        partition = Partition(number, self.indexNames)
        self.partitions[number] = partition
        return partition

    def _partitionOf(self, trackId):
        return self.partitions.get(ids.partitionOf(trackId))

    def _checkLayout(self):
        if self.keyLayout != KEY_LAYOUT:
            raise ValueError(
                'the indexes of this store have an older layout (%s); '
                'reindexTracks() brings them to layout %s'
                % (self.keyLayout, KEY_LAYOUT))

    # runs

    def _runsChanged(self):
        pending = Pending.of(self, create=False)
        if pending is not None:
            pending.runsChanged()

    def startRun(self, taskId=None, start=None):
        # Past the highest id ever removed too: a run id (a batch id)
        # names one run for good.
        runId = max(self.runs.maxKey() if len(self.runs) else 0,
                    self.lastRemovedRun) + 1
        self.runs[runId] = Run(runId, taskId, start)
        self.currentRuns[keys.encode(taskId)] = runId
        self.runCount.change(1)
        self._runsChanged()
        return runId

    def stopRun(self, taskId=None, runId=0, finish=True):
        run = self.getRun(taskId, runId)
        if run is None:
            return 0
        self._dropCurrent(run.taskId, run.id)
        if finish and not run.finished:
            run.finished = True
        return run.id

    def _dropCurrent(self, taskId, runId):
        """The run is no longer the task's current run (if it was)."""
        current = keys.encode(taskId)
        if self.currentRuns.get(current) == runId:
            del self.currentRuns[current]
            self._runsChanged()

    def getRun(self, taskId=None, runId=0):
        if not runId:
            runId = self.currentRuns.get(keys.encode(taskId))
            if runId is None:
                return None
        return self.runs.get(runId)

    def getRuns(self, taskId=None):
        runs = self.runs.values()
        if taskId is None:
            return list(runs)
        return [run for run in runs if run.taskId == taskId]

    @flushing
    def removeRun(self, taskId, runId):
        """Remove the run and all its tracks, from every index.

        The run leaves the runs and the task's current run; each track
        goes as ``removeTrack`` takes it. Returns the number of tracks
        removed, or None when the task has no run ``runId``.
        """
        run = self.runs.get(runId)
        if run is None or keys.encode(run.taskId) != keys.encode(taskId):
            return None
        tracks = planner.runTracks(self, taskId, runId)
        for track in tracks:
            self.removeTrack(track)
        self._dropCurrent(taskId, runId)
        del self.runs[runId]
        self.runCount.change(-1)
        self.lastRemovedRun = max(self.lastRemovedRun, runId)
        self._runsChanged()
        return len(tracks)

    def _resolveRun(self, taskId, runId, create=True, start=None):
        if runId:
            run = self.runs.get(runId)
            if run is None:
                raise ValueError('no run %r' % (runId,))
            return run
        run = self.getRun(taskId)
        if run is None and create:
            # A run started by a save begins with that save's track,
            # which may be older than now when tracks are loaded.
            run = self.runs[self.startRun(taskId, start)]
        return run

    @staticmethod
    def _touchRun(run, timeStamp):
        if timeStamp > run.end:
            run.end = timeStamp

    # saving

    def _values(self, track):
        """{index name: the track's value for that index}."""
        values = {}
        for name in self.indexNames:
            if name == USER_INDEX:
                values[name] = (track.taskId, track.userName)
            else:
                values[name] = track.indexValue(name)
        return values

    def saveUserTrack(self, taskId, runId, userName, data, update=False,
                      timeStamp=None, overwrite=False):
        timeStamp = time.time() if timeStamp is None else timeStamp
        if update:
            run = self._resolveRun(taskId, runId, start=timeStamp)
            last = self.getLastUserTrack(taskId, run.id, userName)
            if last is not None:
                self._replace(last, data, overwrite, timeStamp)
                self._touchRun(run, timeStamp)
                return last.__name__
            runId = run.id
        pending = Pending.of(self)
        if pending is None:
            # Outside a database there is no transaction to batch for.
            return self.saveTracks([dict(
                taskId=taskId, runId=runId, userName=userName, data=data,
                timeStamp=timeStamp)])[0]
        self._checkLayout()
        return pending.save(taskId, runId, userName, data, timeStamp)

    @flushing
    def saveTracks(self, rows):
        """Save many tracks at once and return their ids.

        ``rows`` are mappings with ``taskId``, ``runId``, ``userName``,
        ``data`` and optionally ``timeStamp``. Index keys are gathered,
        sorted and added with one ``update()`` per index.
        """
        rows = list(rows)
        if not rows:
            return []
        partition = self._writerPartition()
        now = time.time()
        # Per (task, run): the run, which repeats across rows.
        seen = {}
        prepared = []
        add = prepared.append
        for trackId, row in zip(partition.nextIds(len(rows)), rows):
            taskId = row['taskId']
            runKey = (taskId, row.get('runId', 0))
            timeStamp = row.get('timeStamp')
            if timeStamp is None:
                timeStamp = now
            run = seen.get(runKey)
            if run is None:
                run = seen[runKey] = self._resolveRun(
                    *runKey, start=timeStamp)
            add(self._row(partition, trackId, taskId, run, row['userName'],
                          timeStamp, row.get('data') or {}))
        self._writeRows(prepared)
        return [formatId(row[1]) for row in prepared]

    def _row(self, partition, trackId, taskId, run, userName, timeStamp,
             data):
        """A prepared row for ``_writeRows`` (``Pending`` describes
        it); the run's ``end`` moves to the track's time. The record is
        pickled at once, so the caller's dict is not aliased and needs
        no copy."""
        self._touchRun(run, timeStamp)
        return (partition, trackId, taskId, run.id, userName, timeStamp,
                dump_record(taskId, run.id, userName, timeStamp, data))

    def _writeRows(self, rows):
        """Write prepared rows (``Pending`` describes them) into their
        partitions' trees: records, index entries, pairs."""
        byPartition = {}
        for row in rows:
            byPartition.setdefault(row[0].number, []).append(row)
        for group in byPartition.values():
            partition = group[0][0]
            partition.store([(row[1], row[6]) for row in group])
            for name, pairs in self._indexPairs(group).items():
                partition.indexValues(name, pairs)
            encode = keys.encoder()
            partition.addPairs({encode(row[2]) + encode(row[4])
                                for row in group})

    def _indexPairs(self, rows):
        """{index name: [(id, value), ...]} for prepared rows; any
        ``index_attributes`` of the track factory will do."""
        columns = {'taskId': 2, 'runId': 3, 'timeStamp': 5}
        result = {}
        extra = []
        for name in self.indexNames:
            if name == USER_INDEX:
                result[name] = [(row[1], (row[2], row[4])) for row in rows]
            elif name in columns:
                i = columns[name]
                result[name] = [(row[1], row[i]) for row in rows]
            else:
                extra.append(name)
        if extra:
            factory = self.trackFactory
            for name in extra:
                result[name] = []
            for row in rows:
                track = factory.fromRecord(row[1], row[6])
                for name in extra:
                    result[name].append((row[1], track.indexValue(name)))
        return result

    def _stored(self, track):
        """(id, partition, stored track) of a track or id."""
        trackId = int(getattr(track, '__name__', track))
        stored = self._load(trackId)
        if stored is None:
            raise KeyError(formatId(trackId))
        return trackId, self._partitionOf(trackId), stored

    def _replace(self, track, data, overwrite, timeStamp=None):
        trackId, partition, stored = self._stored(track)
        new = dict(data) if overwrite else {**stored.data, **data}
        record = dump_record(
            stored.taskId, stored.runId, stored.userName,
            stored.timeStamp if timeStamp is None else timeStamp, new)
        updated = self.trackFactory.fromRecord(trackId, record)
        old = self._values(stored)
        fresh = self._values(updated)
        for name in old:
            index = partition.index(name)
            if index.encode(old[name]) != index.encode(fresh[name]):
                index.unindex_doc(trackId, old[name])
                index.index_doc(trackId, fresh[name])
        partition.replace(trackId, record)
        return updated

    @flushing
    def updateTrack(self, track, data, overwrite=False):
        return self._replace(track, data, overwrite)

    @flushing
    def removeTrack(self, track):
        trackId, partition, stored = self._stored(track)
        for name, value in self._values(stored).items():
            partition.index(name).unindex_doc(trackId, value)
        partition.delete(trackId)
        if not planner.userHasTracks(self, stored.taskId,
                                     stored.userName):
            pair = pairKey(stored)
            for p in self.partitions.values():
                p.pairs.remove(pair)

    @flushing
    def indexTrack(self, track, trackId=None):
        trackId = int(track.__name__ if trackId is None else trackId)
        partition = self._partitionOf(trackId)
        for name, value in self._values(track).items():
            partition.index(name).index_doc(trackId, value)
        partition.addPairs([pairKey(track)])

    @flushing
    def unindexTrack(self, track, trackId=None):
        trackId = int(track.__name__ if trackId is None else trackId)
        partition = self._partitionOf(trackId)
        for name, value in self._values(track).items():
            partition.index(name).unindex_doc(trackId, value)

    # maintenance

    @flushing
    def reindexTracks(self):
        """Rebuild the indexes from the stored tracks, in the current
        layout (which upgrades an older store)."""
        for partition in self.partitions.values():
            partition.indexes = {name: indexFor(name)
                                 for name in self.indexNames}
            partition.pairs.clear()
            values = {name: [] for name in self.indexNames}
            pairs = set()
            for trackId, record in partition.items():
                track = self.trackFactory.fromRecord(trackId, record)
                for name, value in self._values(track).items():
                    values[name].append((trackId, value))
                pairs.add(pairKey(track))
            for name, found in values.items():
                partition.indexValues(name, found)
            partition.addPairs(pairs)
        self.keyLayout = KEY_LAYOUT
        self._v_partition = None

    @flushing
    def checkIndexes(self):
        """Every index entry points at a record and every record is in
        each index it belongs to; returns the problems in words."""
        if self.keyLayout != KEY_LAYOUT:
            return ['the indexes have layout %s, not %s: run '
                    'reindexTracks()' % (self.keyLayout, KEY_LAYOUT)]
        problems = []
        for number, partition in self.partitions.items():
            problems.extend(self._checkPartition(number, partition))
        return problems

    def _checkPartition(self, number, partition):
        where = 'partition %s' % number
        indexes = {name: partition.indexes.get(name) or indexFor(name)
                   for name in self.indexNames}
        expected = {name: set() for name in self.indexNames}
        pairs = set()
        records = 0
        for trackId, record in partition.items():
            records += 1
            track = self.trackFactory.fromRecord(trackId, record)
            for name, value in self._values(track).items():
                expected[name].add((indexes[name].encode(value), trackId))
            pairs.add(pairKey(track))
        problems = []
        if partition.count() != records:
            problems.append('%s counts %d tracks but holds %d' % (
                where, partition.count(), records))
        for name in self.indexNames:
            problems.extend(_indexProblems(
                where, name, partition.indexes.get(name), expected[name]))
        for pair in sorted(pairs - set(partition.pairs.keys())):
            task, end = keys.decode(pair)
            problems.append('%s: task %r and user %r of a track are '
                            'not in its pairs' % (
                                where, task, keys.decode(pair, end)[0]))
        return problems

    # reading

    def _load(self, trackId):
        partition = self._partitionOf(trackId)
        if partition is None:
            return None
        record = partition.record(trackId)
        if record is None:
            return None
        return self.trackFactory.fromRecord(trackId, record)

    @flushing
    def getTrack(self, trackId):
        try:
            return self._load(int(trackId))
        except (TypeError, ValueError):
            return None

    @flushing
    def __len__(self):
        return sum(p.count() for p in self.partitions.values())

    @flushing
    def values(self):
        return self._scan()

    def _scan(self):
        fromRecord = self.trackFactory.fromRecord
        for partition in self.partitions.values():
            for trackId, record in partition.items():
                yield fromRecord(trackId, record)

    @flushing
    def getUserTracks(self, taskId, runId, userName):
        run = self._resolveRun(taskId, runId, create=False)
        if run is None:
            return []
        return planner.userTracks(self, taskId, run.id, userName)

    def getLastUserTrack(self, taskId, runId, userName):
        tracks = self.getUserTracks(taskId, runId, userName)
        return tracks[-1] if tracks else None

    @flushing
    def getUserNames(self, taskId):
        prefix = keys.encode(taskId)
        names = set()
        for partition in self.partitions.values():
            for key in partition.pairs.keys(min=prefix):
                if not key.startswith(prefix):
                    break
                names.add(keys.decode(key, len(prefix))[0])
        return sorted(names)

    @flushing
    def getTaskIds(self):
        tasks = set()
        for partition in self.partitions.values():
            tasks.update(_partitionTasks(partition))
        return sorted(tasks, key=keys.encode)

    @flushing
    def query(self, **criteria):
        self._checkLayout()
        return planner.query(self, criteria)


def _partitionTasks(partition):
    """The tasks of a partition's pairs, skipping from one task to the
    next instead of reading every (task, user) pair."""
    low = None
    pairs = partition.pairs
    while True:
        found = next(pairs.keys(min=low), None)
        if found is None:
            return
        task, end = keys.decode(found)
        yield task
        low = keys.after(found[:end])


def _indexProblems(where, name, index, expected):
    """What differs between an index (its ``entries()``) and the
    ``(encoded value, id)`` pairs its partition's records give
    (``checkIndexes``)."""
    if index is None:
        return ['%s has no %r index' % (where, name)]
    found = set(index.entries())
    problems = []
    for _, trackId in sorted(found - expected):
        problems.append('%s: the %r index has an entry for track %s, '
                        'which has no record with that value' % (
                            where, name, formatId(trackId)))
    for _, trackId in sorted(expected - found):
        problems.append('%s: track %s is missing from the %r index' % (
            where, formatId(trackId), name))
    return problems
