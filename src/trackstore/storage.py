"""TrackingStorage, Track and Run: the cybertools.tracking API on ZODB.

Tracks are not persistent objects of their own: a track is a flat record
in the tracks tree of a partition (see ``index.py``) and is handed out as
a ``Track`` value object. Runs are persistent, so that changes to their
``end`` and ``finished`` survive a reload, and they merge concurrent
changes instead of conflicting.
"""
import time

from BTrees.Length import Length
from persistent import Persistent
from zope.interface import implementer

from trackstore import ids
from trackstore import keys
from trackstore.index import ID_BITS
from trackstore.index import USER_INDEX
from trackstore.index import Partition
from trackstore.index import Segmented
from trackstore.index import dump_record
from trackstore.index import family
from trackstore.index import idOf
from trackstore.index import load_record
from trackstore.interfaces import IRun
from trackstore.interfaces import ITrack
from trackstore.interfaces import ITrackingStorage


METADATA = ('taskId', 'runId', 'userName', 'timeStamp')


def formatTime(timeStamp):
    """Minutes are what a person reads in a repr (UTC)."""
    if not timeStamp:
        return '-'
    return time.strftime('%Y-%m-%d %H:%M', time.gmtime(timeStamp))


def formatId(trackId):
    return '%07i' % trackId


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


class _Criterion:
    """One query criterion: the key prefixes or range it selects in its
    index, and a test of a track's value for it."""

    def __init__(self, name, prefixes=(), low=None, high=None, test=None):
        self.name = name
        self.prefixes = prefixes
        self.low = low
        self.high = high
        self.test = test

    def ranges(self):
        if self.prefixes:
            return [(prefix, keys.after(prefix)) for prefix in self.prefixes]
        return [(self.low, self.high)]

    def ids(self, partitions):
        """Yield the matching ids, partition by partition."""
        for partition in partitions:
            for low, high in self.ranges():
                yield from partition.ids(self.name, low, high)

    def iterIds(self, partitions):
        for partition in partitions:
            for low, high in self.ranges():
                yield from partition.iterIds(self.name, low, high)


def _criterion(name, value):
    if isinstance(value, (list, tuple, set, frozenset)):
        values = list(value)
    else:
        values = [value]
    prefixes = []
    exact = set()
    starts = []
    for v in values:
        if isinstance(v, str) and v.endswith('*'):
            prefixes.append(keys.encode_prefix(v[:-1]))
            starts.append(v[:-1])
        else:
            if name == 'timeStamp':
                v = float(v)
            prefixes.append(keys.encode(v))
            exact.add(keys.encode(v))
    starts = tuple(starts)

    def test(v):
        if name == 'timeStamp' and v is not None:
            v = float(v)
        if keys.encode(v) in exact:
            return True
        return bool(starts) and isinstance(v, str) and v.startswith(starts)
    # Drop prefixes covered by a shorter one, so no id is yielded twice.
    prefixes = sorted(set(prefixes))
    kept = []
    for p in prefixes:
        if not any(p.startswith(k) for k in kept):
            kept.append(p)
    return _Criterion(name, prefixes=kept, test=test)


def _timeCriterion(timeFrom, timeTo):
    low = keys.encode_float(float(timeFrom)) if timeFrom is not None \
        else keys.FLOAT
    high = keys.after(keys.encode_float(float(timeTo))) \
        if timeTo is not None else keys.after(keys.FLOAT)

    def test(v):
        v = float(v)
        return ((timeFrom is None or v >= timeFrom)
                and (timeTo is None or v <= timeTo))
    return _Criterion('timeStamp', low=low, high=high, test=test)


def _indexProblems(where, name, index, expected):
    """What differs between an index and the entries its partition's
    records give (``checkIndexes``)."""
    if index is None:
        return ['%s has no %r index' % (where, name)]
    found = set(index.keys())
    problems = []
    for key in sorted(found - expected):
        problems.append('%s: the %r index has an entry for track %s, '
                        'which has no record with that value' % (
                            where, name, formatId(idOf(key))))
    for key in sorted(expected - found):
        problems.append('%s: track %s is missing from the %r index' % (
            where, formatId(idOf(key)), name))
    return problems


@implementer(ITrackingStorage)
class TrackingStorage(Persistent):
    """A persistent, partitioned, BTree-indexed store of tracks."""

    trackFactory = Track
    # the highest run id removeRun took out (see startRun)
    lastRemovedRun = 0

    def __init__(self, trackFactory=None):
        if trackFactory is not None:
            self.trackFactory = trackFactory
        self.indexNames = tuple(self.trackFactory.index_attributes)
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

    # partitions

    def _partition(self):
        """The partition this connection writes into."""
        jar = self._p_jar
        if jar is None:
            # Standalone (no database): a single writer by definition.
            return self.partitions[0]
        token = ids.ownerToken(jar)
        cached = getattr(self, '_v_partition', None)
        # The cache may hold a partition created in a transaction that
        # was aborted since: one that is not in the tree is no partition.
        if (cached is not None and cached._p_jar is jar
                and self.partitions.get(cached.number) is cached
                and cached.owner == token
                and cached.leaseUntil - time.time() > ids.LEASE / 2):
            return cached
        partition = ids.claim(self.partitions, token, self._newPartition)
        self._v_partition = partition
        return partition

    def _newPartition(self, number):
        partition = Partition(number, self.indexNames)
        self.partitions[number] = partition
        return partition

    def releasePartition(self):
        """Give up this connection's partition lease (call it when a
        writer is done, so the next writer reuses the partition)."""
        jar = self._p_jar
        if jar is None:
            return
        token = ids.ownerToken(jar)
        for partition in self.partitions.values():
            if partition.owner == token:
                partition.owner = None
                partition.leaseUntil = 0.0
        self._v_partition = None

    def _partitionOf(self, trackId):
        return self.partitions.get(trackId >> ID_BITS)

    # runs

    def startRun(self, taskId=None, start=None):
        # Past the highest id ever removed too: a run id (a batch id)
        # names one run for good.
        runId = max(self.runs.maxKey() if len(self.runs) else 0,
                    self.lastRemovedRun) + 1
        self.runs[runId] = Run(runId, taskId, start)
        self.currentRuns[keys.encode(taskId)] = runId
        self.runCount.change(1)
        return runId

    def stopRun(self, taskId=None, runId=0, finish=True):
        run = self.getRun(taskId, runId)
        if run is None:
            return 0
        current = keys.encode(run.taskId)
        if self.currentRuns.get(current) == run.id:
            del self.currentRuns[current]
        if finish and not run.finished:
            run.finished = True
        return run.id

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

    def removeRun(self, taskId, runId):
        """Remove the run and all its tracks, from every index.

        The run leaves the runs and the task's current run; each track
        goes as ``removeTrack`` takes it. Returns the number of tracks
        removed, or None when the task has no run ``runId``.
        """
        run = self.runs.get(runId)
        if run is None or keys.encode(run.taskId) != keys.encode(taskId):
            return None
        tracks = self.query(taskId=taskId, runId=runId)
        for track in tracks:
            self.removeTrack(track)
        current = keys.encode(taskId)
        if self.currentRuns.get(current) == runId:
            del self.currentRuns[current]
        del self.runs[runId]
        self.runCount.change(-1)
        self.lastRemovedRun = max(self.lastRemovedRun, runId)
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

    def _entries(self, trackId, track):
        packed = keys.pack_id(trackId)
        entries = {}
        for name in self.indexNames:
            value = track.indexValue(name)
            if name == 'timeStamp':
                value = float(value)
            entries[name] = keys.encode(value) + packed
        return entries

    def saveUserTrack(self, taskId, runId, userName, data, update=False,
                      timeStamp=None, overwrite=False):
        timeStamp = time.time() if timeStamp is None else timeStamp
        run = self._resolveRun(taskId, runId, start=timeStamp)
        if update:
            last = self.getLastUserTrack(taskId, run.id, userName)
            if last is not None:
                self._replace(last, data, overwrite, timeStamp)
                self._touchRun(run, timeStamp)
                return last.__name__
        return self.saveTracks([dict(taskId=taskId, runId=run.id,
                                     userName=userName, data=data,
                                     timeStamp=timeStamp)])[0]

    def saveTracks(self, rows):
        """Save many tracks at once and return their ids.

        ``rows`` are mappings with ``taskId``, ``runId``, ``userName``,
        ``data`` and optionally ``timeStamp``. Index keys are gathered,
        sorted and added with one ``update()`` per index.
        """
        rows = list(rows)
        if not rows:
            return []
        partition = self._partition()
        factory = self.trackFactory
        extra = [name for name in self.indexNames if name not in METADATA]
        encode = keys.encode
        encodeTime = keys.encode_float
        encodeStr = keys.encode_str
        now = time.time()
        # Per (task, run): the run and the encoded task and run id, which
        # repeat across rows and need not be encoded again.
        seen = {}
        items = []
        entries = {name: [] for name in self.indexNames}
        addUser = entries[USER_INDEX].append
        addTask = entries['taskId'].append
        addRun = entries['runId'].append
        addTime = entries['timeStamp'].append
        addItem = items.append
        pairs = set()
        addPair = pairs.add
        result = []
        addResult = result.append
        for trackId, row in zip(partition.nextIds(len(rows)), rows):
            taskId = row['taskId']
            runKey = (taskId, row.get('runId', 0))
            timeStamp = row.get('timeStamp')
            if timeStamp is None:
                timeStamp = now
            known = seen.get(runKey)
            if known is None:
                run = self._resolveRun(*runKey, start=timeStamp)
                known = seen[runKey] = [run, encode(taskId),
                                        encode(run.id), run.end]
            run, encTask, encRun, end = known
            if timeStamp > end:
                known[3] = timeStamp
            userName = row['userName']
            data = row.get('data') or {}
            packed = trackId.to_bytes(8, 'big')
            encUser = encodeStr(userName) if userName.__class__ is str \
                else encode(userName)
            # The record is pickled at once, so the caller's dict is not
            # aliased and needs no copy.
            addItem((trackId, dump_record(
                taskId, run.id, userName, timeStamp, data)))
            addUser(encUser + packed)
            addTask(encTask + packed)
            addRun(encRun + packed)
            addTime(encodeTime(float(timeStamp)) + packed)
            if extra:
                track = factory(taskId, run.id, userName, data, timeStamp)
                for name in extra:
                    entries[name].append(
                        encode(track.indexValue(name)) + packed)
            addPair(encTask + encUser)
            addResult('%07i' % trackId)
        for run, _, _, end in seen.values():
            self._touchRun(run, end)
        partition.store(items)
        partition.addEntries(entries)
        partition.addPairs(pairs)
        return result

    def _stored(self, track):
        """(id, partition, stored track) of a track or id."""
        trackId = int(getattr(track, '__name__', track))
        partition = self._partitionOf(trackId)
        if partition is not None:
            record = partition.record(trackId)
            if record is not None:
                stored = self.trackFactory.fromRecord(trackId, record)
                return trackId, partition, stored
        raise KeyError(formatId(trackId))

    def _replace(self, track, data, overwrite, timeStamp=None):
        trackId, partition, stored = self._stored(track)
        new = dict(data) if overwrite else {**stored.data, **data}
        record = dump_record(
            stored.taskId, stored.runId, stored.userName,
            stored.timeStamp if timeStamp is None else timeStamp, new)
        updated = self.trackFactory.fromRecord(trackId, record)
        old = self._entries(trackId, stored)
        fresh = self._entries(trackId, updated)
        changed = [name for name in old if old[name] != fresh[name]]
        partition.removeEntries({name: [old[name]] for name in changed})
        partition.addEntries({name: [fresh[name]] for name in changed})
        partition.replace(trackId, record)
        return updated

    def updateTrack(self, track, data, overwrite=False):
        return self._replace(track, data, overwrite)

    def removeTrack(self, track):
        trackId, partition, stored = self._stored(track)
        partition.removeEntries(
            {name: [entry]
             for name, entry in self._entries(trackId, stored).items()})
        partition.delete(trackId)
        if not self._userHasTracks(stored.taskId, stored.userName):
            pair = keys.encode(stored.taskId) + keys.encode(stored.userName)
            for p in self.partitions.values():
                p.pairs.remove(pair)

    def _userHasTracks(self, taskId, userName):
        """Whether the user has a track in the task; stops at the first
        one, so a user with many tracks (anonymous ones) costs little."""
        prefix = keys.encode(userName)
        wanted = keys.encode(taskId)
        for partition in self.partitions.values():
            for trackId in partition.iterIds(USER_INDEX, prefix,
                                             keys.after(prefix)):
                record = partition.record(trackId)
                if keys.encode(load_record(record)[0]) == wanted:
                    return True
        return False

    def indexTrack(self, track, trackId=None):
        trackId = int(track.__name__ if trackId is None else trackId)
        partition = self._partitionOf(trackId)
        partition.addEntries(
            {name: [key]
             for name, key in self._entries(trackId, track).items()})
        partition.addPairs(
            [keys.encode(track.taskId) + keys.encode(track.userName)])

    def unindexTrack(self, track, trackId=None):
        trackId = int(track.__name__ if trackId is None else trackId)
        self._partitionOf(trackId).removeEntries(
            {name: [key]
             for name, key in self._entries(trackId, track).items()})

    def reindexTracks(self):
        """Rebuild the indexes from the stored tracks."""
        for partition in self.partitions.values():
            for name in self.indexNames:
                if name not in partition.indexes:
                    partition.indexes[name] = Segmented()
                    partition._p_changed = True
            for index in list(partition.indexes.values()) + [
                    partition.pairs]:
                index.clear()
            entries = {name: [] for name in self.indexNames}
            pairs = set()
            for trackId, record in partition.items():
                track = self.trackFactory.fromRecord(trackId, record)
                for name, key in self._entries(trackId, track).items():
                    entries[name].append(key)
                pairs.add(keys.encode(track.taskId)
                          + keys.encode(track.userName))
            partition.addEntries(entries)
            partition.addPairs(pairs)

    def checkIndexes(self):
        """Every index entry points at a record and every record is in
        each index it belongs to; returns the problems in words."""
        problems = []
        for number, partition in self.partitions.items():
            where = 'partition %s' % number
            expected = {name: set() for name in self.indexNames}
            pairs = set()
            records = 0
            for trackId, record in partition.items():
                records += 1
                track = self.trackFactory.fromRecord(trackId, record)
                for name, key in self._entries(trackId, track).items():
                    expected[name].add(key)
                pairs.add(keys.encode(track.taskId)
                          + keys.encode(track.userName))
            if partition.count() != records:
                problems.append('%s counts %d tracks but holds %d' % (
                    where, partition.count(), records))
            for name in self.indexNames:
                problems.extend(_indexProblems(
                    where, name, partition.indexes.get(name),
                    expected[name]))
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

    def getTrack(self, trackId):
        try:
            return self._load(int(trackId))
        except (TypeError, ValueError):
            return None

    def __len__(self):
        return sum(p.count() for p in self.partitions.values())

    def values(self):
        fromRecord = self.trackFactory.fromRecord
        for partition in self.partitions.values():
            for trackId, record in partition.items():
                yield fromRecord(trackId, record)

    def getUserTracks(self, taskId, runId, userName):
        run = self._resolveRun(taskId, runId, create=False)
        if run is None:
            return []
        return self.query(taskId=taskId, runId=run.id, userName=userName)

    def getLastUserTrack(self, taskId, runId, userName):
        tracks = self.getUserTracks(taskId, runId, userName)
        return tracks[-1] if tracks else None

    def getUserNames(self, taskId):
        prefix = keys.encode(taskId)
        names = set()
        for partition in self.partitions.values():
            for key in partition.pairs.keys(min=prefix):
                if not key.startswith(prefix):
                    break
                names.add(keys.decode(key, len(prefix))[0])
        return sorted(names)

    def getTaskIds(self):
        tasks = set()
        for partition in self.partitions.values():
            # Skip from one task to the next instead of reading every
            # (task, user) pair.
            low = None
            pairs = partition.pairs
            while True:
                found = None
                for key in pairs.keys(min=low):
                    found = key
                    break
                if found is None:
                    break
                task, end = keys.decode(found)
                tasks.add(task)
                low = keys.after(found[:end])
        return sorted(tasks, key=keys.encode)

    def query(self, **criteria):
        criteria = self._criteria(criteria)
        if not criteria:
            return []
        partitions = list(self.partitions.values())
        driver = self._smallest(criteria, partitions)
        others = [c for c in criteria if c is not driver]
        found = {}
        load = self._load
        for trackId in set(driver.ids(partitions)):
            track = load(trackId)
            if track is not None:
                found[trackId] = track
        result = [((float(track.timeStamp), trackId), track)
                  for trackId, track in found.items()
                  if all(c.test(track.indexValue(c.name)) for c in others)]
        result.sort(key=lambda item: item[0])
        return [track for _, track in result]

    def _criteria(self, criteria):
        timeFrom = criteria.pop('timeFrom', None)
        timeTo = criteria.pop('timeTo', None)
        result = []
        for name, value in criteria.items():
            if name not in self.indexNames:
                raise ValueError('no index %r (indexes: %s)'
                                 % (name, ', '.join(self.indexNames)))
            result.append(_criterion(name, value))
        if timeFrom is not None or timeTo is not None:
            result.append(_timeCriterion(timeFrom, timeTo))
        return result

    @staticmethod
    def _smallest(criteria, partitions):
        """The criterion to read from its index; the others are checked
        on the tracks it finds.

        Users are many and tracks per user few, so a user criterion
        leads. Otherwise the indexes are walked in lock step until the
        first one ends: the cost is the size of the smallest times the
        number of criteria.
        """
        for criterion in criteria:
            if criterion.name == USER_INDEX:
                return criterion
        if len(criteria) == 1:
            return criteria[0]
        walkers = [(c, c.iterIds(partitions)) for c in criteria]
        done = object()
        while True:
            for criterion, walker in walkers:
                if next(walker, done) is done:
                    return criterion
