"""Answers kept until the database changes.

A report over every session costs a pass over the store; it is computed
once per database snapshot (the last committed transaction a
connection sees) and handed out again until a commit changes the
snapshot. Requests that miss together wait for one computation instead
of each doing it.
"""
import threading


class SnapshotCache:
    """One value, valid for one snapshot key."""

    def __init__(self):
        self._key = None
        self._value = None
        self._computing = threading.Lock()
        self.computed = 0

    def get(self, snapshot, compute):
        """The value for ``snapshot``, from ``compute()`` on a miss."""
        if self._key == snapshot:
            return self._value
        with self._computing:
            if self._key == snapshot:
                return self._value
            value = compute()
            self._key, self._value = snapshot, value
            self.computed += 1
            return value
