"""Retention: drop what is old and done, then pack the storage.

``prune(storage, before)`` removes, in the caller's transaction,

- every archived clickstream batch (the end of a batch's life:
  released, fine-tuned, archived) whose sessions all started before
  ``before``, with its sessions and their hits
  (``ClickstreamDao.remove_batch``), and
- every finished run of another task that ended before ``before``, with
  its tracks (``TrackingStorage.removeRun``).

The collecting batch and batches still in use are never touched, so the
sessions that remain, and the metrics over them, are unchanged. The ids
of the pruned hits stay in the hit path's set of loaded ids: an old
export loaded again does not bring pruned data back (its hits are
duplicates), as for erasure (``trackstore.erasure``).

A database may keep a retention setting (``set_retention``): a period,
and each load then prunes what is older than now minus that period
(``apply_retention``; ``trackstore.ingest`` calls it after a load).

Removed records are unreachable but still in the storage's history
until it is packed: ``pack(db)`` packs it to now, and for a file
storage deletes the ``.old`` copy a pack leaves, which still holds
them.
"""
import calendar
import os
import time
from dataclasses import asdict
from dataclasses import dataclass

from trackstore.clickstream.dao import ClickstreamDao
from trackstore.clickstream.records import clickstream_records
from trackstore.clickstream.records import slot_range


ANNOTATION_KEY = 'trackstore.retention'
ARCHIVED = 'archived'
TIME_FORMATS = ('%Y-%m-%d', '%Y-%m-%dT%H:%M', '%Y-%m-%dT%H:%M:%S',
                '%Y-%m-%d %H:%M', '%Y-%m-%d %H:%M:%S')


@dataclass
class PruneReport:
    """What one prune removed: ``batches`` and their ``sessions``,
    other ``runs`` and their ``tracks``; ``before`` is the date."""

    before: float
    batches: int = 0
    sessions: int = 0
    runs: int = 0
    tracks: int = 0

    def as_dict(self):
        return asdict(self)

    def summary(self):
        """One line for people."""
        return ('pruned before %s: %d batches (%d sessions), %d runs '
                '(%d tracks)' % (
                    format_time(self.before), self.batches, self.sessions,
                    self.runs, self.tracks))


def format_time(seconds):
    return time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime(seconds))


def parse_time(text):
    """Epoch seconds of a UTC date or time (``2022-05-01``,
    ``2022-05-01T12:00``, ``2022-05-01T12:00:30``); ``ValueError``
    names the forms when ``text`` is none of them."""
    value = text.strip().rstrip('Z')
    for form in TIME_FORMATS:
        try:
            return float(calendar.timegm(time.strptime(value, form)))
        except ValueError:
            pass
    raise ValueError('%r is not a UTC date or time (2022-05-01, '
                     '2022-05-01T12:00 or 2022-05-01T12:00:30)' % (text,))


def started_before(storage, records, run_id, before):
    """Whether every session of the batch started before ``before``.

    A batch's run starts when the batch opens, which says nothing of
    when its sessions happened (a load of last year's hits): the
    sessions' own times decide. Stops at the first newer one."""
    get = storage.getTrack
    low, high = slot_range(run_id)
    for track_id in records.numbers.values(low, high):
        if float(get(track_id).timeStamp) >= before:
            return False
    return True


def prune(storage, before):
    """Remove what is done and older than ``before`` (epoch seconds;
    see the module docstring); return a ``PruneReport``. The caller
    commits."""
    report = PruneReport(float(before))
    for run in storage.getRuns():
        records = clickstream_records(storage, run.taskId)
        if records is not None and run.id in records.batches:
            batch = records.batches[run.id]
            if batch.status != ARCHIVED or not started_before(
                    storage, records, run.id, before):
                continue
            dao = ClickstreamDao(storage, run.taskId)
            report.sessions += dao.remove_batch(str(run.id))
            report.batches += 1
        elif run.finished and run.end < before:
            report.tracks += storage.removeRun(run.taskId, run.id)
            report.runs += 1
    return report


# -- the setting -------------------------------------------------------------


def set_retention(storage, seconds):
    """Keep ``seconds`` of data at each load (None: keep everything)."""
    annotations = storage.__annotations__
    if seconds is None:
        annotations.pop(ANNOTATION_KEY, None)
    elif seconds <= 0:
        raise ValueError('a retention period is positive, not %r'
                         % (seconds,))
    else:
        annotations[ANNOTATION_KEY] = float(seconds)


def retention_of(storage):
    """The retention period in seconds, or None."""
    return storage.__annotations__.get(ANNOTATION_KEY)


def apply_retention(storage, now=None):
    """Prune by the storage's retention setting; None when it has
    none."""
    seconds = retention_of(storage)
    if seconds is None:
        return None
    now = time.time() if now is None else now
    return prune(storage, now - seconds)


# -- packing -----------------------------------------------------------------


def storage_file(db):
    """The path of a file storage's data file, or None."""
    name = db.storage.getName()
    return name if isinstance(name, str) and os.path.isfile(name) else None


def pack(db, keep_old=False):
    """Pack the storage of ``db`` to now, so that removed records leave
    it; return ``(size before, size after)`` in bytes for a file
    storage, else None. A file storage's pack keeps the previous file
    as ``<name>.old``, which still holds every removed record: it is
    deleted unless ``keep_old``."""
    path = storage_file(db)
    size = os.path.getsize(path) if path else None
    db.pack(time.time())
    if path is None:
        return None
    if not keep_old and os.path.exists(path + '.old'):
        os.unlink(path + '.old')
    return size, os.path.getsize(path)
