"""Interfaces of trackstore.

The docstrings here are the manual: every public object of the package
provides one of these interfaces, and the tests check it with
``zope.interface.verify.verifyObject``.
"""
from zope.interface import Attribute
from zope.interface import Interface


# -- the tracking core ---------------------------------------------------


class ITrack(Interface):
    """One stored interaction: a mapping stamped with four metadata.

    Tracks handed out by a storage are value objects, materialized from
    the storage's compact records; change them through the storage
    (``updateTrack``, ``removeTrack``), not by setting attributes.
    """

    __name__ = Attribute("The track's id, a zero-padded decimal string.")
    taskId = Attribute("The task the track belongs to.")
    runId = Attribute("The id (int) of the run the track was saved in.")
    userName = Attribute("The user (or any other actor) of the track.")
    timeStamp = Attribute(
        "When the track was saved: float seconds since the epoch (UTC), "
        "sub-second precision.")
    data = Attribute("The track's payload, a dict.")
    metadata = Attribute(
        "A dict of the four metadata: taskId, runId, userName, timeStamp.")
    index_attributes = Attribute(
        "The names indexed for this kind of track. Names that are not "
        "metadata are read from ``data``.")


class IRun(Interface):
    """A run of a task: a span of time that tracks are grouped into.

    A run is persistent: changes to ``end`` and ``finished`` are kept.
    Concurrent changes to the same run are merged (``end`` is the later
    one, ``finished`` stays true once set) instead of conflicting.
    """

    id = Attribute("The run id, an int; run ids are shared by all tasks.")
    taskId = Attribute("The task the run was started for.")
    start = Attribute("Time stamp of the run's start (float seconds).")
    end = Attribute("Time stamp of the run's latest track (float seconds).")
    finished = Attribute("True once the run was stopped with finish.")


class ITrackQuery(Interface):
    """Reading tracks: the role a report or a dashboard needs.

    Every read sees the saves made earlier in the same transaction,
    including those whose index work a storage batches until commit.
    """

    trackFactory = Attribute(
        "The ITrack class of the stored tracks; its ``index_attributes`` "
        "name the indexes.")

    def getTrack(trackId):
        """Return the track with the given id, or None."""

    def getUserTracks(taskId, runId, userName):
        """Return the user's tracks in that task and run, oldest first.

        ``runId=0`` is the task's current run; ``[]`` when there is none.
        """

    def getLastUserTrack(taskId, runId, userName):
        """Return the user's newest track in that task and run, or None.
        """

    def getUserNames(taskId):
        """Return the sorted user names that have tracks in the task."""

    def getTaskIds():
        """Return the sorted ids of the tasks that have tracks."""

    def query(**criteria):
        """Return the tracks matching all criteria, oldest first.

        Keys are index names. A value matches exactly; a list or tuple
        means any of its values; a string ending in ``*`` is a prefix
        match. ``timeFrom`` and ``timeTo`` bound ``timeStamp``
        inclusively. No criteria gives ``[]``. An unknown index name
        raises ``ValueError``.
        """

    def __len__():
        """The number of stored tracks."""

    def values():
        """Iterate over all tracks (a scan, by track id)."""

    def getRun(taskId=None, runId=0):
        """Return the run with ``runId``, or the task's current run with
        ``runId=0``; None when there is none."""

    def getRuns(taskId=None):
        """Return the runs (of the task, or all), by id."""


class ITrackWrite(Interface):
    """Saving and changing tracks: the role of a collector.

    Nothing here commits; the caller owns the transaction. Concurrent
    writers (each with its own ZODB connection) write into separate
    parts of the storage, so they rarely conflict.
    """

    def saveUserTrack(taskId, runId, userName, data, update=False,
                      timeStamp=None, overwrite=False):
        """Save a track and return its id (a zero-padded decimal string).

        ``runId=0`` means the task's current run; one is started when the
        task has none. An unknown ``runId`` raises ``ValueError``. With
        ``update``, the data of the user's last track in that task and run
        is updated (merged, or replaced with ``overwrite``) and that
        track's id is returned; without such a track a new one is saved.
        ``timeStamp`` defaults to now. The run's ``end`` moves forward to
        the track's time.

        The index work of a save may be put off until the transaction
        commits (or a read needs it), so that many calls in a transaction
        cost about what one ``saveTracks`` of them costs. An abort, or
        the rollback of a savepoint, forgets it with the save.
        """

    def saveTracks(rows):
        """Save many tracks at once and return their ids, in order.

        ``rows`` are mappings with ``taskId``, ``runId`` (0 or missing:
        the current run), ``userName``, ``data`` and optionally
        ``timeStamp``; each is saved as ``saveUserTrack`` would save it.
        """

    def updateTrack(track, data, overwrite=False):
        """Merge ``data`` into the track's data (replace it with
        ``overwrite``), reindex it and return the updated track."""

    def removeTrack(track):
        """Remove the track (or the track with that id) and its index
        entries."""

    def indexTrack(track):
        """Add the track's index entries."""

    def unindexTrack(track):
        """Remove the track's index entries."""


class ITrackRuns(Interface):
    """Runs: the spans of time a task's tracks are grouped into, started,
    stopped and removed (reading them, ``getRun`` and ``getRuns``, is
    part of ``ITrackQuery``).

    Run ids are shared by all tasks and never reused, not even after
    ``removeRun``: a run id names one run for good.
    """

    def startRun(taskId, start=None):
        """Start a new run for the task, make it the task's current run
        and return its id. ``start`` defaults to now."""

    def stopRun(taskId=None, runId=0, finish=True):
        """Stop a run (the task's current one with ``runId=0``).

        The run leaves the task's current runs; with ``finish`` it is
        marked finished. Returns the run id, or 0 when there is no such
        run.
        """

    def removeRun(taskId, runId):
        """Remove the run ``runId`` of the task and all its tracks, from
        every index (a track goes as ``removeTrack`` takes it); it is no
        longer the task's current run. Returns the number of tracks
        removed, or None when the task has no such run."""


class ITrackMaintenance(Interface):
    """Keeping the indexes right: the role of an administrator."""

    def reindexTracks():
        """Rebuild every index from the stored tracks.

        This also brings a store written by an older version to the
        current index layout."""

    def checkIndexes():
        """Check the indexes against the stored tracks: every index
        entry points at a record with that value, and every record is
        in each index it belongs to. Returns a list of the problems
        found, each a sentence (empty when all is well); changes
        nothing (``reindexTracks`` repairs)."""


class ITrackingStorage(ITrackQuery, ITrackWrite, ITrackRuns,
                       ITrackMaintenance):
    """A persistent, BTree-indexed store of tracks: every role at once.

    The API is that of cybertools.tracking. Tracks are kept by task, run,
    user and time; queries are answered from indexes, never a scan. A
    component that needs one role asks for that role's interface; the
    storage provides them all. How writers keep out of each other's way
    (partitions and their leases, ``trackstore.ids``) is no part of the
    contract.
    """


class ITrackIndex(Interface):
    """One index of a storage, in the manner of ``zope.index``.

    Documents are track ids; an index keeps ``(value, id)`` entries in
    order, so a value, a prefix or a range is one walk of its keys.
    Unlike ``zope.index`` indexes, it keeps no reverse map (id -> value):
    that would cost a persistent entry per track; the caller, who has
    the track, passes its value to ``unindex_doc``.
    """

    def index_doc(docid, value):
        """Index the track ``docid`` under ``value``."""

    def index_docs(pairs):
        """Index many ``(docid, value)`` pairs at once (sorted first, so
        that the trees are walked once)."""

    def unindex_doc(docid, value):
        """Remove the entry of track ``docid`` under ``value``; an entry
        that is not there is ignored."""

    def apply(query):
        """Return the ids (a list, in no particular order) of the tracks
        matching ``query``: a value, a list of values (any of them), a
        string ending in ``*`` (a prefix) or, for a range,
        ``('range', low, high)`` with inclusive, optional bounds."""

    def iterApply(query):
        """Like ``apply``, lazily, in key order within each value: to
        walk only as far as needed (the first match, the smallest of
        several indexes)."""

    def encode(value):
        """The bytes a value is kept under (keys of one value share
        them; ``entries`` reports them)."""

    def entries():
        """Iterate over ``(encoded value, id)`` of all entries, in order
        (for checks)."""

    def clear():
        """Remove every entry."""

    def documentCount():
        """The number of entries (tracks indexed)."""

    def wordCount():
        """The number of distinct values (a walk of every entry)."""


# -- the clickstream -----------------------------------------------------


class IClickstreamDao(Interface):
    """The clickstream of a search product: sessions, events, batches.

    The contract of the MongoDB ClickstreamDao, provided by an adapter of
    ``ITrackingStorage``: ``IClickstreamDao(storage)``. All state lives
    in the storage. Sessions are collected in batches; the clickstream
    task's current run is the collecting batch and ``batch_id`` is the
    run id as a string. Values going in and out are the pydantic models
    of ``trackstore.clickstream`` (dicts are accepted for input models).
    The DAO never commits; the caller owns the transaction.
    """

    def register_session(session):
        """Register a ``Session``; return it as a ``RegisteredSession``.

        The session joins the collecting batch (a new batch is opened when
        none is collecting) with the next ``session_number`` of the
        writer's block of numbers in that batch, 1-based: unique in the
        batch, growing in the order one writer registers (concurrent
        writers number from blocks of their own, so numbers may skip).
        When the id is already stored, the stored session is returned
        unchanged, with its original batch and number.
        """

    def update_session(session):
        """Replace a stored session's data; return the ``RegisteredSession``.

        The session moves into the collecting batch with a new number (its
        events stay with it). An unknown ``session_id`` raises
        ``SessionNotFound``, a ``KeyError``.
        """

    def push_events(events):
        """Store ``SessionEvent`` objects; return the ones that were new.

        An event whose ``(session_id, event_id)`` is stored already (or
        came earlier in the same call) is skipped. When any event names an
        unknown session, ``SessionNotFound`` is raised and nothing is
        stored.
        """

    def mark_session_irrelevant(session_id):
        """Flag the session ``is_irrelevant``; return the
        ``RegisteredSession``, or None when the id is unknown."""

    def get_session(session_id):
        """Return the ``SessionWithEvents`` or None.

        Events are oldest first, at most 100 unless an ``events_limit``
        keyword says otherwise (None: all).
        """

    def get_batch_sessions(batch_id, after_number=None, limit=None,
                           events_limit=None):
        """Return the batch's sessions as ``SessionWithEvents``.

        Only sessions with ``session_number > after_number``, ascending by
        number, at most ``limit`` of them, each with at most
        ``events_limit`` events; None means no bound. An unknown batch
        gives ``[]``. The last session's number is the cursor for the
        next page.
        """

    def get_batch(batch_id):
        """Return the ``SessionBatch`` or None."""

    def release_batch(release_id):
        """Release the collecting batch under an idempotency key.

        The collecting batch becomes ``released`` with ``release_id`` and
        ``released_at``, and its run is stopped; the next registration
        opens a new batch. A ``release_id`` used before returns the batch
        it released and releases nothing new. None only when nothing is
        collecting and the key is unknown.
        """

    def update_batch_status(batch_id, status):
        """Set a batch's ``SessionBatchStatus``; return the ``SessionBatch``
        or None when there is no such batch.

        Moving the collecting batch to another status stops it collecting.
        A batch that stopped collecting cannot collect again: asking for
        that raises ``ValueError`` (it would make two collecting batches).
        An unknown status raises ``ValueError``.
        """


class IClickstreamBulkDao(IClickstreamDao):
    """The clickstream DAO with a bulk path for ingestion."""

    def store_sessions(items):
        """Register many sessions and push their events in one go.

        ``items`` is a list of ``(Session, [SessionEvent, ...])``; every
        event must belong to its session (else ``ValueError``, nothing
        stored). New sessions join the collecting batch with consecutive
        numbers; ids already stored are not registered again but their new
        events are pushed. Returns a ``RegisteredSession`` per item, in
        order (the stored one for known ids). Same invariants as the
        single calls, much less work per session.
        """

    def remove_session(session_id):
        """Remove a stored session with its events (erasure).

        The session leaves its batch (whose ``session_counter`` drops by
        one; the other sessions keep their numbers), the id lookup and
        the storage; the stored visits count as changed, so cached
        reports are computed again. Returns the removed track, or None
        when the id is unknown.
        """

    def remove_batch(batch_id):
        """Remove a batch with its sessions, their events and its run
        (retention).

        Its release id is forgotten and the stored visits count as
        changed. The collecting batch cannot be removed
        (``ValueError``). Returns the number of sessions removed, or
        None when there is no such batch.
        """


# -- sessionizing --------------------------------------------------------


class ICloser(Interface):
    """Where the sessionizers hand finished sessions.

    A closer receives each closed session once, in the order the engine
    closes them. A session is a ``trackstore.sessions.ClosedSession``:
    ``session_id`` (deterministic: batch and stream give the same),
    ``client`` (``'c:<customer>'`` or ``'a:<visitor>'``), ``customer``,
    ``user_id`` (the customer, or the customer an anonymous session is
    stitched to), ``hits`` (sorted by time), ``late`` and ``reason``.
    """

    def close(session):
        """Take one closed session (store it, print it, keep it...)."""


# -- privacy and export --------------------------------------------------


class IPrivacySettings(Interface):
    """What a database keeps of the hits it takes in
    (``trackstore.privacy``); ``IPrivacySettings(storage)`` gives a
    storage's settings. They apply to the hits of later loads.
    """

    ip = Attribute(
        "'keep' (the default), 'truncate' (IPv4: last octet zeroed, "
        "IPv6: last 80 bits) or 'hash' (HMAC-SHA256 under the key).")
    bots = Attribute(
        "'drop' (the default: hits of known bots and crawlers are "
        "counted and left out of sessions) or 'keep'.")
    key = Attribute(
        "The database's secret hash key (bytes), made with the settings; "
        "never shown nor exported.")

    def set(ip=None, bots=None):
        """Change the modes given; ``ValueError`` for an unknown one."""

    def as_dict():
        """``{'ip': ..., 'bots': ...}`` (without the key)."""


class IExportReport(Interface):
    """What one export wrote (``trackstore.export.export``)."""

    format = Attribute("'jsonl', 'csv' or 'parquet'.")
    sessions = Attribute("The sessions written.")
    hits = Attribute("The hits written: one row (or line) each.")
    since = Attribute("The lower bound (epoch seconds) or None.")
    until = Attribute("The upper bound (epoch seconds) or None.")

    def as_dict():
        """The counts and bounds as a dict."""

    def summary():
        """One line for people."""
