"""Order-preserving byte keys for index values.

Index trees hold flat ``bytes`` keys instead of tuples: the ZODB pickler
handles a bytes key in one step, whereas a tuple costs a Python-level hook
per member, and bytes compare in C. A key is ``encode(value)`` followed by
the 8-byte big-endian track id, so a value's entries are one contiguous,
id-ordered range.

Encodings sort like the values they encode within one type (None < bool <
int < float < str < bytes < anything else, by its repr < ints beyond 64
bits, by their repr: those two are found by equality only). Strings are
UTF-8, whose byte order is code point order, with NUL escaped and a
two-byte terminator, so that the encoding of ``'u1'`` is no prefix of the
encoding of ``'u10'`` while the *unterminated* form of a prefix is a byte
prefix of every string starting with it -- which is what makes ``'u*'``
find ``'u~'`` and ``'ué'`` as well as ``'uzebra'``.
"""
import struct


NONE = b'\x01'
BOOL = b'\x02'
INT = b'\x03'
FLOAT = b'\x04'
STR = b'\x05'
BYTES = b'\x06'
OTHER = b'\x07'
BIGINT = b'\x08'

TERMINATOR = b'\x00\x00'
ID_SIZE = 8

_double = struct.Struct('>d')
_uint64 = struct.Struct('>Q')
_INT_OFFSET = 1 << 63
_SIGN = 1 << 63
_ALL = (1 << 64) - 1


def _escape(raw):
    return raw.replace(b'\x00', b'\x00\xff')


def _unescape(raw):
    return raw.replace(b'\x00\xff', b'\x00')


def encode_float(value):
    """Encode a float so that byte order is numeric order."""
    bits = _uint64.unpack(_double.pack(value))[0]
    # Negative numbers: invert everything, positive: flip the sign bit.
    bits = bits ^ _ALL if bits & _SIGN else bits | _SIGN
    return FLOAT + _uint64.pack(bits)


def encode_str(value):
    """``encode()`` for a str, the common case, without type dispatch."""
    return STR + value.encode('utf-8').replace(b'\x00', b'\x00\xff') \
        + TERMINATOR


def encode(value):
    """Return the order-preserving, self-delimiting encoding of value."""
    if isinstance(value, str):
        return STR + _escape(value.encode('utf-8')) + TERMINATOR
    if value is None:
        return NONE
    if isinstance(value, bool):
        return BOOL + (b'\x01' if value else b'\x00')
    if isinstance(value, int):
        if -_INT_OFFSET <= value < _INT_OFFSET:
            return INT + _uint64.pack(value + _INT_OFFSET)
        return BIGINT + _escape(repr(value).encode('ascii')) + TERMINATOR
    if isinstance(value, float):
        return encode_float(value)
    if isinstance(value, bytes):
        return BYTES + _escape(value) + TERMINATOR
    return OTHER + _escape(repr(value).encode('utf-8')) + TERMINATOR


def encode_prefix(prefix):
    """The byte prefix shared by the encodings of all strings that start
    with ``prefix`` (the string's encoding without its terminator)."""
    return STR + _escape(prefix.encode('utf-8'))


def _terminated(key, pos):
    end = pos
    while True:
        end = key.index(TERMINATOR[:1], end)
        if key[end + 1:end + 2] == b'\x00':
            return key[pos:end], end + 2
        end += 2     # an escaped NUL


def decode(key, pos=0):
    """Decode the value encoded at ``pos``; return (value, next position).
    """
    tag = key[pos:pos + 1]
    pos += 1
    if tag == STR:
        raw, pos = _terminated(key, pos)
        return _unescape(raw).decode('utf-8'), pos
    if tag == INT:
        return _uint64.unpack_from(key, pos)[0] - _INT_OFFSET, pos + 8
    if tag == FLOAT:
        bits = _uint64.unpack_from(key, pos)[0]
        bits = bits ^ _SIGN if bits & _SIGN else bits ^ _ALL
        return _double.unpack(_uint64.pack(bits))[0], pos + 8
    if tag == NONE:
        return None, pos
    if tag == BOOL:
        return key[pos] == 1, pos + 1
    if tag == BYTES:
        raw, pos = _terminated(key, pos)
        return _unescape(raw), pos
    if tag == BIGINT:
        raw, pos = _terminated(key, pos)
        return int(raw), pos
    raw, pos = _terminated(key, pos)
    # Values of other types are indexed by their repr; it is returned as
    # such since the original object cannot be rebuilt from it.
    return _unescape(raw).decode('utf-8'), pos


def encoder():
    """``encode`` for a batch whose values repeat (a task, a run): each
    value is encoded once. The memory is keyed by type too, since
    ``1``, ``1.0`` and ``True`` are one dict key but encode apart."""
    memory = {}

    def encodeCached(value):
        cls = value.__class__
        if cls is str:
            key = value
        elif cls in (int, float, bool) or value is None:
            key = (cls, value)
        else:
            return encode(value)
        found = memory.get(key)
        if found is None:
            found = memory[key] = encode(value)
        return found
    return encodeCached


def pack_id(trackId):
    return _uint64.pack(trackId)


def after(prefix):
    """A key greater than every key starting with ``prefix``: encodings
    never contain a 0xff byte except right after a NUL, and a prefix of
    whole encodings is followed by a tag (< 0x10) or an id."""
    return prefix + b'\xff' * (ID_SIZE + 1)
