"""Answers kept until what they are computed from changes.

A report over every session costs a pass over the store; it is computed
once per key (a database snapshot, the last committed transaction a
connection sees, or a version of what the report reads) and handed out
again until the key changes. Requests that miss together wait for one
computation instead of each doing it.
"""
import threading


class KeyedCache:
    """One value, valid for one key."""

    def __init__(self):
        self._key = None
        self._value = None
        self._computing = threading.Lock()
        self.computed = 0

    def get(self, snapshot, compute):
        """The value for the key ``snapshot``, from ``compute()`` on a
        miss."""
        if self._key == snapshot:
            return self._value
        with self._computing:
            if self._key == snapshot:
                return self._value
            value = compute()
            self._key, self._value = snapshot, value
            self.computed += 1
            return value
