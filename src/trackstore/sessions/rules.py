"""The sessionizing rules shared by the batch and the streaming engine.

Times are integer microseconds since the epoch (UTC) inside the engines:
float seconds cannot compare a gap of exactly 30:00 against one of
30:00.000001 reliably, integers can.
"""
import re


US = 1000000

DEFAULT_TIMEOUT = 30 * 60
DEFAULT_MAX_EVENTS = 10000
DEFAULT_MAX_LENGTH = 24 * 3600
DEFAULT_LATENESS = 60
DEFAULT_TICK = 60

_DURATION = re.compile(
    r'^\s*(\d+(?:\.\d*)?|\.\d+)\s*(us|ms|s|m|min|h|d)?\s*$')
_UNIT = {None: 1.0, 's': 1.0, 'ms': 1e-3, 'us': 1e-6, 'm': 60.0,
         'min': 60.0, 'h': 3600.0, 'd': 86400.0}


def parse_duration(text):
    """Seconds (float) from ``'30m'``, ``'90s'``, ``'1.5h'``, ``'2d'``
    or a bare number of seconds.

    >>> parse_duration('30m'), parse_duration('1800'), parse_duration('1h')
    (1800.0, 1800.0, 3600.0)
    """
    if isinstance(text, (int, float)):
        return float(text)
    m = _DURATION.match(text)
    if m is None:
        raise ValueError(
            'not a duration: %r (use e.g. 30m, 90s, 1.5h, 2d)' % (text,))
    return float(m.group(1)) * _UNIT[m.group(2)]


def to_us(seconds):
    """Whole microseconds of a number of seconds (None stays None)."""
    if seconds is None:
        return None
    return int(round(float(seconds) * US))


class Rules:
    """When a session ends.

    - ``timeout``: a hit more than this many seconds after the previous
      hit of the same client starts a new session (strictly greater: a
      gap of exactly the timeout stays in the session);
    - ``max_events``: a session that reaches this many hits is closed
      (the next hit starts a new one);
    - ``max_length``: a hit more than this many seconds after the
      session's first hit starts a new session.

    ``None`` for a cap means no cap. All limits are kept in microseconds
    (``timeout_us``, ``max_length_us``).
    """

    __slots__ = ('timeout_us', 'max_events', 'max_length_us')

    def __init__(self, timeout=DEFAULT_TIMEOUT,
                 max_events=DEFAULT_MAX_EVENTS,
                 max_length=DEFAULT_MAX_LENGTH):
        self.timeout_us = to_us(parse_duration(timeout))
        if self.timeout_us <= 0:
            raise ValueError('the timeout must be positive')
        self.max_events = None if max_events is None else int(max_events)
        if self.max_events is not None and self.max_events < 1:
            raise ValueError('max_events must be at least 1')
        self.max_length_us = (
            None if max_length is None
            else to_us(parse_duration(max_length)))

    @property
    def timeout(self):
        return self.timeout_us / US

    @property
    def max_length(self):
        if self.max_length_us is None:
            return None
        return self.max_length_us / US

    def as_dict(self):
        return {'timeout_us': self.timeout_us,
                'max_events': self.max_events,
                'max_length_us': self.max_length_us}

    @classmethod
    def from_dict(cls, d):
        rules = cls.__new__(cls)
        rules.timeout_us = d['timeout_us']
        rules.max_events = d['max_events']
        rules.max_length_us = d['max_length_us']
        return rules

    def __eq__(self, other):
        return (isinstance(other, Rules)
                and self.as_dict() == other.as_dict())

    def __repr__(self):
        return 'Rules(timeout=%r, max_events=%r, max_length=%r)' % (
            self.timeout, self.max_events, self.max_length)
