"""Query planning: criteria to index queries, and which index to walk.

Each criterion becomes a query on its index (``ITrackIndex.apply``) and
a test of a track's value. One index is walked, over every partition;
the tracks it finds are loaded and the other criteria tested on them.
Readers of the storage go through here and the index contract, never
through the index trees.
"""
from trackstore import keys
from trackstore.index import TIME_INDEX
from trackstore.index import USER_INDEX
from trackstore.index import isPrefix
from trackstore.index import valueList


class Criterion:
    """One criterion: its index, its query there, a test of a value
    (made when first needed: the criterion that is walked needs none).
    """

    def __init__(self, name, query, values=None, test=None):
        self.name = name
        self.query = query
        self.values = values
        self._test = test

    @property
    def test(self):
        if self._test is None:
            self._test = valueTest(self.name, self.values)
        return self._test

    def ids(self, partitions):
        found = []
        for partition in partitions:
            found.extend(partition.index(self.name).apply(self.query))
        return found

    def iterIds(self, partitions):
        for partition in partitions:
            yield from partition.index(self.name).iterApply(self.query)


def valueTest(name, values):
    """A test that a track's value is one of ``values`` (or starts with
    one of their prefixes)."""
    if name == TIME_INDEX:
        values = [v if isPrefix(v) else float(v) for v in values]
    exact = {keys.encode(v) for v in values if not isPrefix(v)}
    starts = tuple(v[:-1] for v in values if isPrefix(v))

    def test(value):
        if name == TIME_INDEX and value is not None:
            value = float(value)
        if keys.encode(value) in exact:
            return True
        return bool(starts) and isinstance(value, str) and \
            value.startswith(starts)
    return test


def timeRange(timeFrom, timeTo):
    def test(value):
        value = float(value)
        return ((timeFrom is None or value >= timeFrom)
                and (timeTo is None or value <= timeTo))
    return Criterion(TIME_INDEX, ('range', timeFrom, timeTo), test=test)


def criteria(storage, given):
    """The criteria of a ``query()`` call."""
    given = dict(given)
    timeFrom = given.pop('timeFrom', None)
    timeTo = given.pop('timeTo', None)
    for name in given:
        if name not in storage.indexNames:
            raise ValueError('no index %r (indexes: %s)'
                             % (name, ', '.join(storage.indexNames)))
    result = []
    for name, value in given.items():
        values = valueList(value)
        query = values
        if name == USER_INDEX:
            query = [(task, user) for task in tasksOf(storage, given)
                     for user in values]
        elif name == 'taskId' and USER_INDEX in given and not any(
                isPrefix(v) for v in values):
            # The user index's keys start with these tasks: walking it
            # answers this criterion too.
            continue
        result.append(Criterion(name, query, values))
    if timeFrom is not None or timeTo is not None:
        result.append(timeRange(
            None if timeFrom is None else float(timeFrom),
            None if timeTo is None else float(timeTo)))
    return result


def tasksOf(storage, given):
    """The tasks a user criterion is looked up in (the user index is
    keyed by task first): the task criterion's values when they are
    exact, else every task that passes it."""
    if 'taskId' in given:
        values = valueList(given['taskId'])
        if not any(isPrefix(v) for v in values):
            return values
        test = valueTest('taskId', values)
        return [task for task in storage.getTaskIds() if test(task)]
    return storage.getTaskIds()


def driver(found, partitions):
    """The criterion to read from its index; the others are checked on
    the tracks it finds.

    Users are many and tracks per user few, so a user criterion leads.
    Otherwise the indexes are walked in lock step until the first one
    ends: the cost is the size of the smallest times the number of
    criteria.
    """
    for criterion in found:
        if criterion.name == USER_INDEX:
            return criterion
    if len(found) == 1:
        return found[0]
    walkers = [(c, c.iterIds(partitions)) for c in found]
    done = object()
    while True:
        for criterion, walker in walkers:
            if next(walker, done) is done:
                return criterion


def select(storage, found):
    """The tracks matching every criterion, oldest first."""
    if not found:
        return []
    partitions = list(storage.partitions.values())
    lead = driver(found, partitions)
    others = [c for c in found if c is not lead]
    load = storage._load
    result = []
    for trackId in set(lead.ids(partitions)):
        track = load(trackId)
        if track is not None and all(
                c.test(track.indexValue(c.name)) for c in others):
            result.append(((float(track.timeStamp), trackId), track))
    result.sort(key=lambda item: item[0])
    return [track for _, track in result]


def query(storage, given):
    return select(storage, criteria(storage, given))


def taskTest(taskId):
    """A test that a track is of the task (by encoding: task ids of
    different types do not compare); the task is encoded once."""
    encoded = keys.encode(taskId)
    return lambda track: keys.encode(track.taskId) == encoded


def userTracks(storage, taskId, runId, userName):
    """A user's tracks in a task's run: one walk of the user index
    (whether or not ``runId`` is an index of the track factory)."""
    if USER_INDEX not in storage.indexNames:
        found = sorted(storage._scan(),
                       key=lambda t: (float(t.timeStamp), int(t.__name__)))
    else:
        found = select(storage, [Criterion(
            USER_INDEX, [(taskId, userName)])])
    ofTask = taskTest(taskId)
    return [track for track in found if track.runId == runId
            and track.userName == userName and ofTask(track)]


def runTracks(storage, taskId, runId):
    """The tracks of a task's run (from the run index when there is
    one, else a scan)."""
    ofTask = taskTest(taskId)
    if 'runId' in storage.indexNames:
        found = criteria(storage, {'runId': runId})
        return [track for track in select(storage, found) if ofTask(track)]
    return [track for track in storage._scan()
            if track.runId == runId and ofTask(track)]


def userHasTracks(storage, taskId, userName):
    """Whether the user has a track in the task; stops at the first
    one, so a user with many tracks (anonymous ones) costs little."""
    if USER_INDEX not in storage.indexNames:
        ofTask = taskTest(taskId)
        return any(track.userName == userName and ofTask(track)
                   for track in storage._scan())
    for partition in storage.partitions.values():
        index = partition.index(USER_INDEX)
        for _ in index.iterApply([(taskId, userName)]):
            return True
    return False
