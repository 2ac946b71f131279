"""Raw hits: parse and validate one record, read inputs, write rejects.

A hit (JSON hits, as a web shop's tracker writes them) is one JSON
object::

    {"id": 463469, "type": "search", "event": {"user-agent": "...",
     "ip": "200.15.173.55", "customer-id": null,
     "timestamp": "2022-04-28T07:38:46.290271", "query": "..."}}

(a flat object with the event fields beside ``id`` and ``type`` is read
too). ``parse_line`` turns a line into a ``Hit`` or a ``Reject``; it
never raises for bad input, so a load never stops on it. The per-hit
path avoids datetime objects: the common timestamp form is cut into
integers, and the epoch of its date is cached.

What a hit may be (the window its time must fall in, its size) is a
``Limits``; an input that cannot be read at all raises ``InputError``,
one that breaks in the middle (a truncated gzip) ends its records and
says where in ``Records.broken``.
"""
import datetime
import gzip
import hashlib
import io
import os
import re
import stat
import sys
import time
import zlib
from collections import Counter
from collections import namedtuple

import orjson


US = 1000000
EPOCH = datetime.datetime(1970, 1, 1, tzinfo=datetime.timezone.utc)
INT64_MIN = -2 ** 63
INT64_MAX = 2 ** 63 - 1
FORMATS = ('auto', 'jsonl', 'array')
# Hits before this are surely a mistake (an epoch in the wrong unit, a
# zero date); hits after now plus a day too (a clock a bit ahead is not).
DEFAULT_MIN_TIME = '1990-01-01T00:00:00'
DEFAULT_AHEAD = 86400
# Real hits are a few hundred bytes; a session is one ZODB record, and
# ZODB warns (a paragraph each time) about records of 16 MiB and more.
DEFAULT_MAX_HIT_BYTES = 1 << 20
# Real hits nest two or three levels deep. A session is pickled into
# the store, and pickling recurses: a hit nested 500 deep (valid JSON)
# crashed a load with RecursionError before this limit.
DEFAULT_MAX_DEPTH = 32

# The event fields every hit may carry; the rest are the type's own.
COMMON = frozenset((
    'id', 'type', 'event', 'user-agent', 'ip', 'customer-id', 'timestamp',
    'session-stamp', 'client-id'))


Reject = namedtuple('Reject', 'lineno reason raw')
Reject.__doc__ = """A record that cannot be loaded.

``lineno`` is the 1-based line where the record starts, ``reason`` says
why in words, ``raw`` is the record's text (bytes or str) as read.
"""


class InputError(ValueError):
    """An input that cannot be read at all (no such file, a directory,
    permission denied, not the format asked for): nothing was read.
    ``str()`` is one line for the user: ``'<where>: <reason>'``."""

    def __init__(self, where, reason):
        super().__init__(where, reason)
        self.where = where
        self.reason = reason

    def __str__(self):
        return '%s: %s' % (self.where, self.reason)


class InputBroken(namedtuple('InputBroken', 'lineno offset reason')):
    """Where and why an input broke off (a truncated or corrupt gzip, a
    read error): ``lineno`` is the first line not read whole, ``offset``
    the bytes read (decompressed) before the break. The records before
    it were all given out."""

    __slots__ = ()

    @property
    def where(self):
        return 'line %d (byte %d)' % (self.lineno, self.offset)

    def __str__(self):
        return 'input broken at %s: %s' % (self.where, self.reason)


def _time_us(value):
    """Epoch microseconds of a window bound: ISO text, epoch seconds or
    a datetime (naive is UTC)."""
    if isinstance(value, datetime.datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=datetime.timezone.utc)
        delta = value - EPOCH
        return (delta.days * 86400 + delta.seconds) * US \
            + delta.microseconds
    return parse_timestamp(value)


class Limits:
    """What a valid hit may be: its time within ``min_time`` ..
    ``max_time`` (ISO text, epoch seconds or datetimes; ``max_time``
    None is now plus ``ahead`` seconds, moving with the clock) and its
    record at most ``max_bytes`` long (None: any size), its JSON nested
    at most ``max_depth`` levels deep (the hit itself is level 1).

    A hit outside the window is rejected, not stored: one epoch in
    milliseconds (read as seconds: the year 54000) would otherwise move
    the load's clock past every later hit.
    """

    __slots__ = ('min_us', 'max_us', 'max_bytes', 'ahead_us', '_fixed',
                 'max_depth')

    def __init__(self, min_time=DEFAULT_MIN_TIME, max_time=None,
                 max_bytes=DEFAULT_MAX_HIT_BYTES, ahead=DEFAULT_AHEAD,
                 max_depth=DEFAULT_MAX_DEPTH):
        self.max_depth = max_depth
        self.min_us = _time_us(min_time)
        self.ahead_us = int(ahead * US)
        self._fixed = max_time is not None
        self.max_us = (_time_us(max_time) if self._fixed
                       else _now_us() + self.ahead_us)
        if self.max_us < self.min_us:
            raise ValueError('max_time is before min_time')
        self.max_bytes = sys.maxsize if max_bytes is None else max_bytes

    def admits(self, us):
        """Whether ``us`` is in the window (the slow check, after the
        per-hit one failed: the clock may have moved on since)."""
        if us > self.max_us and not self._fixed:
            self.max_us = _now_us() + self.ahead_us
        return self.min_us <= us <= self.max_us

    def __repr__(self):
        return 'Limits(min_time=%r, max_time=%r, max_bytes=%r)' % (
            format_us(self.min_us), format_us(self.max_us),
            self.max_bytes)


def _now_us():
    return time.time_ns() // 1000


class Hit:
    """One valid hit.

    ``id`` is an integer of 64 bits or a string; a string that is an
    integer's usual text (``"12345"``) was made that integer, so that
    ``12345`` and ``"12345"`` are one hit: the same ``id`` and the same
    ``idkey`` (its text, the ``event_id``), whichever a dedupe keys on.
    ``us`` is the time in integer microseconds since the epoch (UTC),
    ``ts`` the same as float seconds. ``customer`` is the customer id as
    a string, or None for an anonymous hit. ``stamp`` is the session
    stamp: the event's ``session-stamp`` when given, else a hash of IP
    and user agent. ``client`` is the event's explicit ``client-id``
    (a cookie id) or None. ``event`` is the event dict as read, ``size``
    the length of the record's text (what compaction budgets with).
    """

    __slots__ = ('id', 'idkey', 'type', 'us', 'customer', 'stamp',
                 'client', 'event', 'size')

    def __init__(self, id, type, us, customer, stamp, client, event,
                 size=0):
        self.id = id
        # ids may be ints or strings; the string orders ties of time
        self.idkey = id if id.__class__ is str else str(id)
        self.type = type
        self.us = us
        self.customer = customer
        self.stamp = stamp
        self.client = client
        self.event = event
        self.size = size

    @property
    def ts(self):
        """Float seconds since the epoch (UTC)."""
        return self.us / US

    @property
    def key(self):
        """The order of hits: time, then id."""
        return (self.us, self.idkey)

    @property
    def ip(self):
        return self.event.get('ip')

    @property
    def user_agent(self):
        return self.event.get('user-agent')

    @property
    def timestamp(self):
        """The time as an aware UTC datetime (microsecond precision)."""
        return EPOCH + datetime.timedelta(microseconds=self.us)

    @property
    def fields(self):
        """The type's own fields (``query``, ``page``, ``product``...)."""
        return {k: v for k, v in self.event.items() if k not in COMMON}

    def to_row(self):
        """A list of plain values (JSON-able when the event is)."""
        return [self.id, self.type, self.us, self.customer, self.stamp,
                self.client, self.event, self.size]

    @classmethod
    def from_row(cls, row):
        return cls(*row)

    def __eq__(self, other):
        return (isinstance(other, Hit)
                and self.to_row()[:7] == other.to_row()[:7])

    def __hash__(self):
        return hash((self.idkey, self.us))

    def __repr__(self):
        return '<Hit %s %s %s customer=%s>' % (
            self.id, self.type, format_us(self.us), self.customer)


# -- timestamps ----------------------------------------------------------


_MINUTE_US = {}


def _minute_us(text):
    """Microseconds of a 'YYYY-MM-DDTHH:MM' minute (UTC), cached: hits
    come roughly in time order, so most share their minute with the
    previous one."""
    try:
        return _MINUTE_US[text]
    except KeyError:
        pass
    if (text[10] not in 'T ' or text[13] != ':'
            or not (text[11:13] + text[14:16]).isdigit()):
        raise ValueError(text)
    h = int(text[11:13])
    m = int(text[14:16])
    if h > 23 or m > 59:
        raise ValueError(text)
    day = datetime.date.fromisoformat(text[:10])   # validates the date
    value = ((day - datetime.date(1970, 1, 1)).days * 1440
             + h * 60 + m) * 60 * US
    if len(_MINUTE_US) > 100000:
        _MINUTE_US.clear()
    _MINUTE_US[text] = value
    return value


def parse_timestamp(value):
    """Integer microseconds since the epoch of a hit's timestamp.

    Accepts ISO 8601 text (a time without a zone is UTC; ``Z`` and
    offsets are honoured) and numbers (seconds since the epoch). Raises
    ``ValueError`` for anything else.

    >>> parse_timestamp('1970-01-01T00:00:01.000001')
    1000001
    >>> parse_timestamp('1970-01-01T01:00:00+01:00')
    0
    >>> parse_timestamp(1.5)
    1500000
    """
    if value.__class__ is str:
        # the common form, 2022-04-28T07:38:46.290271, without datetime:
        # a cached minute plus seconds and microseconds read as one int
        if len(value) == 26 and value[16] == ':' and value[19] == '.':
            frac = value[17:19] + value[20:26]
            if frac.isascii() and frac.isdigit() and value[17] < '6':
                try:
                    return _minute_us(value[:16]) + int(frac)
                except ValueError:
                    raise ValueError(
                        'unparsable timestamp %r' % (value,)) from None
        try:
            dt = datetime.datetime.fromisoformat(value)
        except ValueError:
            dt = _lenient_iso(value)
        if dt.tzinfo is None:
            dt = dt.replace(tzinfo=datetime.timezone.utc)
        delta = dt - EPOCH
        return (delta.days * 86400 + delta.seconds) * US \
            + delta.microseconds
    if value.__class__ in (int, float):
        if value != value or value in (float('inf'), float('-inf')):
            raise ValueError('unparsable timestamp %r' % (value,))
        return int(round(value * US))
    raise ValueError('unparsable timestamp %r' % (value,))


def _lenient_iso(value):
    """``fromisoformat`` for the ISO 8601 forms it refuses: a lowercase
    ``z`` or ``t`` (RFC 3339 allows them)."""
    fixed = value
    if value[-1:] == 'z':
        fixed = value[:-1] + 'Z'
    if len(fixed) > 10 and fixed[10] == 't':
        fixed = fixed[:10] + 'T' + fixed[11:]
    if fixed != value:
        try:
            return datetime.datetime.fromisoformat(fixed)
        except ValueError:
            pass
    raise ValueError('unparsable timestamp %r' % (value,))


def format_us(us):
    """ISO text (UTC, no zone, microseconds) of epoch microseconds."""
    return (EPOCH + datetime.timedelta(microseconds=us)).strftime(
        '%Y-%m-%dT%H:%M:%S.%f')


# -- session stamps ------------------------------------------------------


_STAMPS = {}


def _as_text(value):
    """A value that is not a string, as stable text: its JSON, or its
    repr where JSON has no form for it (integers beyond 64 bits)."""
    try:
        return orjson.dumps(value).decode()
    except TypeError:
        return repr(value)


def stamp_of(ip, user_agent):
    """The session stamp of a visitor without an explicit one: a short
    hash of IP and user agent, the same in every process."""
    key = (ip, user_agent)
    try:
        return _STAMPS[key]
    except KeyError:
        pass
    except TypeError:
        # not strings (a list, an object): hash their JSON text
        key = None
        ip, user_agent = _as_text(ip), _as_text(user_agent)
    text = '%s\x00%s' % (ip, user_agent)
    value = hashlib.blake2b(
        text.encode('utf-8', 'surrogatepass'), digest_size=8).hexdigest()
    if key is not None:
        if len(_STAMPS) > 200000:
            # a bounded cache: visitors come back, but not all at once
            _STAMPS.clear()
        _STAMPS[key] = value
    return value


# -- one record ----------------------------------------------------------


DEFAULT_LIMITS = Limits()
# For hits built as values (make_hit): any time, any size.
NO_LIMITS = Limits(min_time=-2 ** 40, max_time=2 ** 40, max_bytes=None)
# The text of an integer that fits 64 bits, written the one way (no sign
# but '-', no leading zeros): such a string id is that integer.
_INT_TEXT = re.compile(r'0|-?[1-9][0-9]{0,18}')


def parse_record(record, lineno, raw=b'', limits=None):
    """A ``Hit`` from a decoded JSON value, or a ``Reject``; ``limits``
    (a ``Limits``, default ``DEFAULT_LIMITS``) bounds its time."""
    if limits is None:
        limits = DEFAULT_LIMITS
    # The fast path: a record in the usual shape, read with subscripts
    # (no method calls); anything else takes the careful path below,
    # which gives the same hit or says what is wrong.
    try:
        event = record['event']
        hid = record['id']
        htype = record['type']
        when = event['timestamp']
        customer = event['customer-id']
        ip = event['ip']
        agent = event['user-agent']
    except (KeyError, TypeError):
        return _parse_record(record, lineno, raw, limits)
    if (when.__class__ is not str or len(when) != 26 or when[19] != '.'
            or when[16] != ':' or when[17] > '5'
            or htype.__class__ is not str or not htype
            or 'session-stamp' in event or 'client-id' in event):
        return _parse_record(record, lineno, raw, limits)
    if hid.__class__ is int:
        # INT64_MAX and INT64_MIN, as constants: this runs for every hit
        if hid > 0x7fffffffffffffff or hid < -0x8000000000000000:
            return _parse_record(record, lineno, raw, limits)
    elif hid.__class__ is not str or hid[-1:] in _ID_SLOW:
        # a string that may be an integer's text, or empty
        return _parse_record(record, lineno, raw, limits)
    base = _MINUTE_US.get(when[:16])
    frac = when[17:19] + when[20:26]
    # isascii: int() fails on digits like '\u00b2' that isdigit takes
    if base is None or not frac.isascii() or not frac.isdigit():
        return _parse_record(record, lineno, raw, limits)
    us = base + int(frac)
    if us < limits.min_us or us > limits.max_us:
        return _parse_record(record, lineno, raw, limits)
    if customer is not None:
        if customer.__class__ is int:
            customer = str(customer)
        elif customer.__class__ is not str:
            return _parse_record(record, lineno, raw, limits)
        elif not customer:
            customer = None
    try:
        stamp = _STAMPS.get((ip, agent))
    except TypeError:       # not hashable: not a string
        stamp = None
    if stamp is None:
        stamp = stamp_of(ip, agent)
    return Hit(hid, htype, us, customer, stamp, None, event, len(raw))


# The last characters of string ids the fast path leaves to the careful
# one: digits (the text may be an integer's) and '' (an empty id).
_ID_SLOW = frozenset('0123456789') | {''}


def _parse_record(record, lineno, raw, limits=None):
    """``parse_record`` for every record, however unusual."""
    if limits is None:
        limits = DEFAULT_LIMITS
    if record.__class__ is not dict:
        return Reject(lineno, 'not a JSON object (got %s)'
                      % _kind(record), raw)
    hid, why = check_id(record.get('id'))
    if why is not None:
        return Reject(lineno, why, raw)
    htype = record.get('type')
    if htype is None or htype == '':
        return Reject(lineno, 'missing type', raw)
    if htype.__class__ is not str:
        return Reject(lineno, 'type is not a string (got %s)'
                      % _kind(htype), raw)
    event = record.get('event')
    if event is None:
        event = record
    elif event.__class__ is not dict:
        return Reject(lineno, 'event is not a JSON object (got %s)'
                      % _kind(event), raw)
    when = event.get('timestamp')
    if when is None:
        return Reject(lineno, 'missing timestamp', raw)
    us, why = _timestamp_us(when, limits)
    if why is not None:
        return Reject(lineno, why, raw)
    customer = event.get('customer-id')
    if customer is not None:
        if customer.__class__ in (int, float):
            customer = str(customer)
        elif customer.__class__ is not str:
            return Reject(lineno, 'customer-id is not a string or number',
                          raw)
        elif customer == '':
            customer = None
    stamp = event.get('session-stamp')
    if stamp is None:
        stamp = stamp_of(event.get('ip'), event.get('user-agent'))
    elif stamp.__class__ is not str:
        stamp = str(stamp)
    client = event.get('client-id')
    if client is not None and client.__class__ is not str:
        client = str(client)
    return Hit(hid, htype, us, customer, stamp, client, event, len(raw))


def check_id(hid):
    """``(id, None)`` for a valid hit id, else ``(None, reason)``.

    Ids are integers of 64 bits or non-empty strings. A string that is
    an integer's usual text (``"12345"``, not ``"012345"``) is that
    integer, so ``12345`` and ``"12345"`` are one hit: the same id,
    the same ``idkey``, one dedupe key.
    """
    cls = hid.__class__
    if cls is int:
        if INT64_MIN <= hid <= INT64_MAX:
            return hid, None
        return None, ('bad id: %d is outside the 64-bit integer range '
                      '(give larger ids as strings)' % hid)
    if cls is str:
        if not hid:
            return None, 'bad id: an empty string'
        if _INT_TEXT.fullmatch(hid):
            n = int(hid)
            if INT64_MIN <= n <= INT64_MAX:
                return n, None
        return hid, None
    if hid is None:
        return None, 'missing id'
    if cls is float and hid == hid and abs(hid) >= 2 ** 63 \
            and abs(hid) != float('inf'):
        # JSON readers give integers beyond 64 bits as floats
        return None, ('bad id: %d is outside the 64-bit integer range '
                      '(give larger ids as strings)' % hid)
    return None, ('bad id: must be an integer or a string, got %s'
                  % _kind(hid))


def _kind(value):
    """What a JSON value is, for reasons: 'float 1.5', 'true', ..."""
    if value is True or value is False or value is None:
        return orjson.dumps(value).decode()
    if value.__class__ in (int, float):
        return '%s %r' % (value.__class__.__name__, value)
    if value.__class__ is str:
        return 'string %r' % (value[:40],)
    if value.__class__ is list:
        return 'an array'
    if value.__class__ is dict:
        return 'an object'
    return value.__class__.__name__


def _timestamp_us(when, limits):
    """``(us, None)`` for a timestamp in the window, else ``(None,
    reason)``."""
    us = None
    # parse_timestamp's fast path, inlined: this runs for most hits
    if (when.__class__ is str and len(when) == 26 and when[19] == '.'
            and when[16] == ':'):
        base = _MINUTE_US.get(when[:16])
        if base is not None and when[17] < '6':
            frac = when[17:19] + when[20:26]
            # isascii: int() fails on digits like '²' that isdigit takes
            if frac.isascii() and frac.isdigit():
                us = base + int(frac)
    if us is None:
        try:
            us = parse_timestamp(when)
        except (ValueError, OverflowError):
            return None, 'unparsable timestamp %r' % (when,)
    if (us < limits.min_us or us > limits.max_us) \
            and not limits.admits(us):
        return None, _window_reason(when, us, limits)
    return us, None


def _window_reason(when, us, limits):
    reason = 'timestamp outside the window: %r is not within %s .. %s' % (
        when, format_us(limits.min_us), format_us(limits.max_us))
    if when.__class__ in (int, float) and limits.admits(us // 1000):
        reason += ' (epoch milliseconds? seconds are expected)'
    return reason


def parse_line(line, lineno, limits=None):
    """A ``Hit`` from one line of text (bytes or str), or a ``Reject``
    saying why not: too large, not JSON, nested too deep, not an object,
    a missing or bad id, a missing type or timestamp, an unparsable
    timestamp or one outside the window. ``limits`` is a ``Limits`` (default
    ``DEFAULT_LIMITS``). Never raises for bad input."""
    if limits is None:
        limits = DEFAULT_LIMITS
    if len(line) > limits.max_bytes:
        return Reject(lineno, 'hit too large: %d bytes, the most is %d'
                      % (len(line), limits.max_bytes), line)
    try:
        record = orjson.loads(line)
    except orjson.JSONDecodeError as e:
        return Reject(lineno, 'not JSON: %s' % (e.args[0],), line)
    # Counting brackets (in C) is cheap; only a line with many is
    # measured exactly.
    opening = _OPENING[line.__class__]
    if (line.count(opening[0]) + line.count(opening[1])
            > limits.max_depth) and depth(record) > limits.max_depth:
        return Reject(lineno, 'nested too deep: more than %d levels'
                      % limits.max_depth, line)
    return parse_record(record, lineno, line, limits)


_OPENING = {bytes: (b'[', b'{'), str: ('[', '{'),
            bytearray: (b'[', b'{')}


def depth(value):
    """How deep a decoded JSON value nests (a scalar is 0, ``[]`` 1),
    measured without recursion."""
    deepest = 0
    stack = [(value, 1)]
    while stack:
        value, level = stack.pop()
        if value.__class__ is dict:
            value = value.values()
        elif value.__class__ is not list:
            continue
        deepest = max(deepest, level)
        stack.extend((item, level + 1) for item in value)
    return deepest


# -- inputs --------------------------------------------------------------


class _Guard(io.RawIOBase):
    """A raw stream over ``f`` that ends where reading ``f`` fails (a
    truncated or corrupt gzip, an I/O error) and keeps the error, so
    that every byte before the break is read. It counts the bytes and
    newlines taken from ``f``, to say where a break is, and takes back
    what was read ahead to sniff the input (``peek``)."""

    def __init__(self, f):
        self._f = f
        # read1 gives what is there: a live pipe is not waited on
        self._read = getattr(f, 'read1', f.read)
        self._head = b''
        self.error = None
        self.offset = 0
        self.newlines = 0

    def readable(self):
        return True

    def take(self, n):
        """Up to ``n`` bytes of ``f`` (b'' at its end or a break)."""
        if self.error is not None:
            return b''
        try:
            data = self._read(n)
        except (EOFError, OSError, zlib.error) as e:
            # gzip.BadGzipFile is an OSError
            self.error = e
            return b''
        if data:
            self.offset += len(data)
            self.newlines += data.count(b'\n')
        return data

    def readinto(self, b):
        head = self._head
        if head:
            n = min(len(b), len(head))
            b[:n] = head[:n]
            self._head = head[n:]
            return n
        data = self.take(len(b))
        if data is None:        # non-blocking and nothing there yet
            return None
        n = len(data)
        b[:n] = data
        return n

    def peek(self, enough, limit):
        """``(head, eof)``: the first bytes, read until ``enough(head)``
        or ``limit`` bytes or the end, and kept to be read again."""
        head = self._head
        eof = False
        while not enough(head) and len(head) < limit:
            data = self.take(1 << 16)
            if not data:
                eof = True
                break
            head += data
        self._head = head
        return head, eof

    def broken(self):
        """An ``InputBroken`` when reading failed, else None."""
        if self.error is None:
            return None
        e = self.error
        reason = (e.strerror if isinstance(e, OSError) and e.strerror
                  else str(e) or e.__class__.__name__)
        if isinstance(e, EOFError):
            reason = 'truncated (%s)' % reason
        return InputBroken(self.newlines + 1, self.offset, reason)


def _name(source):
    """How messages name an input."""
    if source in ('-', b'-'):
        return 'standard input'
    if isinstance(source, (str, bytes)) or hasattr(source, '__fspath__'):
        return os.fsdecode(source)
    name = getattr(source, 'name', None)
    return name if isinstance(name, str) else 'input'


def _is_path(source):
    return ((isinstance(source, (str, bytes)) or hasattr(source, '__fspath__'))
            and source not in ('-', b'-'))


def open_source(source):
    """``(binary file, size)`` of a path (``size`` None when not a
    regular file), or of standard input for ``'-'``. Raises
    ``InputError`` when the path cannot be read: missing, a directory,
    no permission."""
    if not _is_path(source):
        return sys.stdin.buffer, None
    name = _name(source)
    try:
        f = open(source, 'rb')
    except IsADirectoryError:
        raise InputError(name, 'is a directory, not a file') from None
    except FileNotFoundError:
        raise InputError(name, 'no such file') from None
    except PermissionError:
        raise InputError(name, 'cannot read it: permission denied') \
            from None
    except OSError as e:
        raise InputError(name, 'cannot open it: %s'
                         % (e.strerror or e)) from None
    st = os.fstat(f.fileno())
    if stat.S_ISDIR(st.st_mode):    # some systems open them
        f.close()
        raise InputError(name, 'is a directory, not a file')
    return f, (st.st_size if stat.S_ISREG(st.st_mode) else None)


def check_source(source):
    """Raise ``InputError`` when ``source`` (a path or '-') surely
    cannot be read; for commands to check before they start."""
    f, _ = open_source(source)
    if f is not sys.stdin.buffer:
        f.close()


def _decided(head):
    """Whether ``head`` is enough for ``sniff_format``: a first byte
    that is not ``[``; else the first line and what follows it (one
    more non-blank byte after a whole value, else eight more lines)."""
    text = head.lstrip()
    if not text:
        return False
    if text[:1] != b'[':
        return True
    lines = text.split(b'\n', 9)
    if len(lines) < 2:
        return False
    if _is_json(lines[0]):
        return bool(text[len(lines[0]) + 1:].strip())
    return len(lines) == 10


def sniff_format(head, complete):
    """``'array'`` or ``'jsonl'`` for an input starting with ``head``
    (``complete``: the input is no longer than that).

    An input is one JSON array when its first non-blank byte is ``[``,
    unless its first line is a whole JSON value followed by more lines
    (JSON Lines whose first record is an array: an array on one line
    ends there) or the lines after a first line that is not whole JSON
    are JSON objects each on its own (JSON Lines with a broken first
    line: in an array, at most one item line goes without its comma).
    """
    text = head.lstrip()
    if text[:1] != b'[':
        return 'jsonl'
    nl = text.find(b'\n')
    if nl == -1:
        # one line: a single-line array (or one too long to be a hit)
        return 'array'
    if _is_json(text[:nl]):
        rest = text[nl + 1:]
        return 'array' if not rest.strip() else 'jsonl'
    lines = text[nl + 1:].split(b'\n')
    if not complete:
        lines = lines[:-1]      # the last may be cut off
    objects = 0
    for line in lines[:8]:
        line = line.strip()
        if line[:1] == b',':
            return 'array'      # items with their commas in front
        if line[:1] == b'{' and line[-1:] == b'}' and _is_json(line):
            objects += 1
    return 'jsonl' if objects >= 2 else 'array'


class Records:
    """The records of one input, as ``(lineno, raw)`` pairs: the lines
    of JSON Lines (blank lines skipped) or the items of one JSON array,
    read item by item (``lineno`` is where the item starts). Memory
    stays bounded whatever the input's size. Iterate once.

    ``source`` is a path, ``'-'`` for standard input, or a binary file
    object; gzip is recognized by its magic bytes. ``format`` is
    ``'jsonl'``, ``'array'`` or ``'auto'`` (see ``sniff_format``).
    Creating it opens and sniffs the input, and raises ``InputError``
    when it cannot be read or is not the format asked for.

    ``format`` then says what was found. After the iteration,
    ``broken`` is None, or an ``InputBroken`` when the input broke off
    (a truncated gzip): the records before the break were all given,
    the record the break cut is given too (it will not parse), and the
    iteration then just ends.
    """

    def __init__(self, source, format='auto'):
        if format not in FORMATS:
            raise ValueError('format must be one of %s, not %r'
                             % (', '.join(FORMATS), format))
        self.name = _name(source)
        self._own = None
        self._iter = None
        if _is_path(source):
            source, _ = open_source(source)
            self._own = source
        elif source in ('-', b'-'):
            source = sys.stdin.buffer
        elif isinstance(source, io.TextIOBase):
            source = source.buffer
        try:
            self._open(source, format)
        except BaseException:
            self.close()
            raise

    def _open(self, f, format):
        guard = _Guard(f)
        self._guards = [guard]
        head, _ = guard.peek(lambda h: len(h) >= 2, 2)
        if head[:2] == b'\x1f\x8b':
            guard = _Guard(gzip.GzipFile(fileobj=guard, mode='rb'))
            self._guards.append(guard)
        if format == 'auto':
            head, eof = guard.peek(_decided, DEFAULT_MAX_HIT_BYTES)
            format = sniff_format(head, eof)
        elif format == 'array':
            head, _ = guard.peek(bytes.lstrip, DEFAULT_MAX_HIT_BYTES)
            first = head.lstrip()[:1]
            if first not in (b'[', b''):
                raise InputError(
                    self.name, 'not a JSON array: it starts with %r '
                    '(try --format jsonl)' % (first.decode('latin-1'),))
        self.format = format
        self._f = io.BufferedReader(guard, 1 << 16)

    @property
    def broken(self):
        """An ``InputBroken`` when the input broke off, else None."""
        for guard in self._guards:
            broken = guard.broken()
            if broken is not None:
                # the innermost knows the cause; the outer the place
                outer = self._guards[-1]
                return InputBroken(outer.newlines + 1, outer.offset,
                                   broken.reason)
        return None

    def __iter__(self):
        # one pass: a second loop goes on where the first stopped
        if self._iter is None:
            self._iter = self._records()
        return self._iter

    def _records(self):
        try:
            if self.format == 'array':
                yield from split_array(self._f)
            else:
                lineno = 0
                for line in self._f:
                    lineno += 1
                    if line.isspace():
                        continue
                    yield lineno, line
        finally:
            self.close()

    def close(self):
        if self._own is not None:
            self._own.close()
            self._own = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def open_input(source, format='auto'):
    """A binary stream of the decompressed input, and whether it is one
    JSON array (else JSON Lines); see ``Records`` for ``source`` and
    ``format``."""
    records = Records(source, format)
    return records._f, records.format == 'array'


def read_records(source, format='auto'):
    """The ``Records`` of ``source``: iterate for ``(lineno, raw)``;
    then ``.broken`` says whether (and where) the input broke off."""
    return Records(source, format)


def read_hits(source, rejects=None, format='auto', limits=None):
    """A ``HitReader``: iterate for the valid ``Hit`` objects of the
    input; rejects go to ``rejects.write`` (e.g. a ``RejectsWriter``)
    when given."""
    return HitReader(source, rejects, format, limits)


class HitReader:
    """The valid ``Hit`` objects of the input (iterate once); rejects go
    to ``rejects.write`` (e.g. a ``RejectsWriter``) when given.

    ``format`` as for ``Records``, ``limits`` a ``Limits``. Counts as it
    goes: ``read`` records, ``hits``, ``rejected``; then ``broken`` (an
    ``InputBroken`` or None) and ``format`` as ``Records`` has them.
    """

    def __init__(self, source, rejects=None, format='auto', limits=None):
        self.records = Records(source, format)
        self.rejects = rejects
        self.limits = limits
        self.read = self.hits = self.rejected = 0

    @property
    def format(self):
        return self.records.format

    @property
    def broken(self):
        return self.records.broken

    def __iter__(self):
        limits = self.limits
        for lineno, raw in self.records:
            self.read += 1
            hit = parse_line(raw, lineno, limits)
            if hit.__class__ is Reject:
                self.rejected += 1
                if self.rejects is not None:
                    self.rejects.write(hit)
            else:
                self.hits += 1
                yield hit


# One JSON value, nested at most six deep, then the array's separator.
# Possessive repeats (no backtracking) keep it linear; a value that does
# not match (deeper, broken, or cut off by the buffer's end) takes the
# slow paths below.
_STR = rb'"[^"\\]*+(?:\\.[^"\\]*+)*+"'
_ATOM = rb'[^"\[\]{},:\s]++'


def _nested(inner):
    body = rb'(?:' + _STR + rb'|[\s,:]++|' + _ATOM + (
        rb'|' + inner if inner else b'') + rb')*+'
    return rb'(?:\{' + body + rb'\}|\[' + body + rb'\])'


_VALUE = None
for _depth in range(6):
    _VALUE = _nested(_VALUE)
_ITEM = re.compile(
    rb'(?:' + _STR + rb'|' + _ATOM + rb'|' + _VALUE + rb')[ \t\r\n]*+'
    rb'(?=[,\]])', re.DOTALL)
_BLANK = re.compile(rb'[ \t\r\n]*+')
del _depth


class _Buffer:
    """The window of a stream that the array splitter works in; it
    knows the line number of any position at or after the last one
    asked about."""

    def __init__(self, f, chunk_size):
        self.f = f
        self.chunk_size = chunk_size
        self.buf = b''
        self.eof = False
        self._mark = 0          # a position in buf ...
        self._mark_line = 1     # ... and its line number

    def fill(self, keep, want=0):
        """Drop what is before ``keep``, read a chunk more (or until
        ``want`` bytes are kept); False at the end of the stream.
        Positions shift down by ``keep``."""
        if self.eof:
            return False
        data = self.f.read(max(self.chunk_size,
                               want - (len(self.buf) - keep)))
        if not data:
            self.eof = True
            return False
        self.line(keep)
        self.buf = self.buf[keep:] + data
        self._mark -= keep
        return True

    def line(self, pos):
        if pos > self._mark:
            self._mark_line += self.buf.count(b'\n', self._mark, pos)
            self._mark = pos
        return self._mark_line


_WINDOW = 1 << 16


def split_array(f, chunk_size=1 << 16, max_item=1 << 24):
    """Yield ``(lineno, raw)`` for the items of the JSON array on ``f``,
    reading ``chunk_size`` bytes at a time; ``lineno`` is the line where
    the item starts.

    Only the nesting and the strings are followed (so an item is cut out
    whole); whether an item is valid JSON is for the parser to say. A
    broken item (say, cut off in the middle of a string) ends where the
    next well-formed item begins, so one bad record costs one reject,
    not the rest of the array. Text after the array's end comes out as
    records, one a line. Memory stays within a few ``max_item`` (an item
    larger than that is cut there).
    """
    b = _Buffer(f, chunk_size)
    pos = 0
    while True:     # up to the array's '['
        pos = _BLANK.match(b.buf, pos).end()
        if pos < len(b.buf):
            break
        if not b.fill(pos):
            return
        pos = 0
    if b.buf[pos] != 0x5b:
        yield from _junk(b, pos)
        return
    pos += 1
    while True:
        pos = _BLANK.match(b.buf, pos).end()
        buf = b.buf
        if pos >= len(buf):
            if not b.fill(pos):
                return          # no ']': nothing is lost by that
            pos = 0
            continue
        c = buf[pos]
        if c == 0x5d:           # ']'
            yield from _junk(b, pos + 1)
            return
        if c == 0x2c:           # an empty item (",,"): nothing to load
            pos += 1
            continue
        # One item per line, the usual layout: when the rest of the line
        # is one JSON value, that value is the item (a JSON value is
        # never the beginning of a longer one, and no value spans a
        # newline inside a string). Checking that with the parser is
        # cheaper than following the nesting.
        nl = buf.find(b'\n', pos, pos + _WINDOW)
        if nl != -1:
            line = buf[pos:nl].rstrip()
            if line[-1] == 0x2c:
                line = line[:-1].rstrip()
            if _is_json(line):
                yield b.line(pos), line
                pos = nl + 1
                continue
        m = _ITEM.match(buf, pos)
        if m is not None:
            end = m.end()
            yield b.line(pos), buf[pos:end].rstrip()
            pos = end + 1 if buf[end] == 0x2c else end
            continue
        if not b.eof and len(buf) - pos < _WINDOW:
            if b.fill(pos):     # perhaps only cut off: read on
                pos = 0
            continue
        # deeper than the pattern, very large, or broken: look closer,
        # in a window that grows (up to max_item) while that is unclear
        window = _WINDOW
        while True:
            end = _scan(buf, pos, len(buf))
            if end is None or not _is_json(buf[pos:end]):
                end = _resync(buf, pos, b.eof)
            if end is not None:
                break
            if b.eof or len(buf) - pos >= max_item:
                end = len(buf)      # give up on it: cut here
                break
            window *= 4
            b.fill(pos, window)
            pos = 0
            buf = b.buf
        yield b.line(pos), buf[pos:end].rstrip()
        pos = end + 1 if end < len(buf) and buf[end] == 0x2c else end


def _junk(b, pos):
    """The text after the array's end, a record a line (JSON Lines
    after an array, say): none of it goes unread or unaccounted."""
    lineno = b.line(pos)
    *lines, carry = b.buf[pos:].split(b'\n')
    for line in lines:
        if line.strip():
            yield lineno, line.strip()
        lineno += 1
    for line in b.f:
        line = carry + line
        carry = b''
        if line.strip():
            yield lineno, line.strip()
        lineno += 1
    if carry.strip():
        yield lineno, carry.strip()


def _scan(buf, pos, limit):
    """The end of the value at ``pos`` (the ',' or ']' after it),
    following nesting and strings byte by byte; None when not found
    before ``limit`` or the buffer's end."""
    depth = 0
    in_string = False
    i = pos
    n = min(len(buf), limit)
    while i < n:
        c = buf[i]
        if in_string:
            if c == 0x5c:
                i += 2
                continue
            if c == 0x22:
                in_string = False
        elif c == 0x22:
            in_string = True
        elif c == 0x7b or c == 0x5b:
            depth += 1
        elif c == 0x7d or c == 0x5d:
            if depth == 0:
                return i
            depth -= 1
        elif c == 0x2c and depth == 0:
            return i
        i += 1
    return None


def _is_json(raw):
    try:
        orjson.loads(raw)
    except orjson.JSONDecodeError:
        return False
    return True


def _resync(buf, pos, eof):
    """Where a broken item ends.

    Items of an array are alike: after a broken object, the next item
    starts at the first ',' followed by '{' (an array: '['); after a
    broken scalar, at the first ',' followed by a well-formed item. At
    the array's last ']' when the input ends first; None when the buffer
    does not tell yet.
    """
    kind = buf[pos]
    if kind != 0x7b and kind != 0x5b:
        kind = None
    i = buf.find(b',', pos)
    while i != -1:
        j = _BLANK.match(buf, i + 1).end()
        if kind is not None:
            if j < len(buf) and buf[j] == kind:
                return i
        else:
            m = _ITEM.match(buf, j)
            if m is not None and _is_json(buf[j:m.end()]):
                return i
        i = buf.find(b',', i + 1)
    if eof:
        end = buf.rfind(b']', pos)
        return len(buf) if end == -1 else end
    return None


# -- rejects -------------------------------------------------------------


class RejectsWriter:
    """Write rejects as JSON lines ``{"line", "reason", "raw"}``.

    ``target`` is a path (the file is created at the first reject, so a
    clean load leaves none) or a writable binary file object. ``count``
    and ``reasons`` (a Counter of the reasons' first words, e.g.
    ``'not JSON'``, ``'missing timestamp'``) summarize what was written.
    """

    def __init__(self, target):
        self.target = target
        self.count = 0
        self.reasons = Counter()
        self._f = None if isinstance(target, (str, bytes)) \
            or hasattr(target, '__fspath__') else target
        self._own = self._f is None

    @property
    def path(self):
        return self.target if self._own else None

    def write(self, reject):
        if self._f is None:
            self._f = open(self.target, 'ab')
        raw = reject.raw
        if isinstance(raw, (bytes, bytearray)):
            raw = bytes(raw).decode('utf-8', 'replace')
        self._f.write(orjson.dumps({
            'line': reject.lineno, 'reason': reject.reason,
            'raw': raw.rstrip('\r\n')}) + b'\n')
        self.count += 1
        self.reasons[reason_kind(reject.reason)] += 1

    def flush(self):
        if self._f is not None:
            self._f.flush()

    def close(self):
        if self._f is not None:
            self._f.flush()
            if self._own:
                self._f.close()
                self._f = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


_KINDS = ('not JSON', 'unparsable timestamp',
          'timestamp outside the window', 'bad id', 'hit too large',
          'not a JSON object', 'type is not a string',
          'event is not a JSON object', 'nested too deep')


def reason_kind(reason):
    """The kind of a reject reason, without its details."""
    for kind in _KINDS:
        if reason.startswith(kind):
            return kind
    return reason


def make_hit(id, timestamp, type='page_view', customer=None,
             ip='192.0.2.1', user_agent='Mozilla/5.0', **fields):
    """A ``Hit`` built like one read from input (for tests, docs and
    code that has hits as values): ``timestamp`` is ISO text or float
    seconds; ``fields`` are the event's other fields (``query``,
    ``page``, ``session_stamp`` for ``session-stamp``, ``client_id`` for
    ``client-id``...)."""
    event = {'user-agent': user_agent, 'ip': ip, 'customer-id': customer,
             'timestamp': timestamp}
    for name, value in fields.items():
        event[name.replace('_', '-') if name in (
            'session_stamp', 'client_id') else name] = value
    record = {'id': id, 'type': type, 'event': event}
    hit = parse_record(record, 0, orjson.dumps(record), NO_LIMITS)
    if hit.__class__ is Reject:
        raise ValueError(hit.reason)
    return hit
