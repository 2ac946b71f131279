"""Privacy at ingest: what a database keeps of IP addresses, and bots.

Each database has its ``PrivacySettings`` (``privacy_settings(storage)``,
also the ``IPrivacySettings`` adapter of a storage):

- ``ip``: ``'keep'`` (the default), ``'truncate'`` (IPv4: the last
  octet zeroed, IPv6: the last 80 bits) or ``'hash'`` (an HMAC-SHA256
  of the address under a key made for the database, which never leaves
  it);
- ``bots``: ``'drop'`` (the default) leaves hits of known bots and
  crawlers (by user agent, with the ``crawlerdetect`` library) out of
  sessions and counts them, ``'keep'`` stores them like any hit.

A ``Policy`` made from the settings (``Policy.of(storage)``) is applied
to each hit as the loader reads it, before it is sorted, spilled to
disk or handed to a live stream's sessionizer: nothing downstream sees
the address as it came. A session stamp derived from IP and user agent
is derived again from the changed address, so a truncated address
joins the visitors of one /24 (IPv6: /48) with the same browser, and a
hashed one gives the same sessions as the address itself.
"""
import hashlib
import hmac
import ipaddress
import secrets

from persistent import Persistent
from zope.component import adapter
from zope.interface import implementer

from trackstore.interfaces import IPrivacySettings
from trackstore.interfaces import ITrackingStorage
from trackstore.sessions.hits import Hit
from trackstore.sessions.hits import stamp_of


ANNOTATION_KEY = 'trackstore.privacy'
IP_MODES = ('keep', 'truncate', 'hash')
BOT_MODES = ('drop', 'keep')
# 128 bits of the HMAC: collisions among a database's addresses are out
# of reach, and the hashed address stays short in the hits.
HASH_HEX = 32
_V4_MASK = ~0xff & 0xffffffff
_V6_MASK = ~((1 << 80) - 1) & ((1 << 128) - 1)


@implementer(IPrivacySettings)
class PrivacySettings(Persistent):
    """A database's privacy settings (see the module docstring). The
    key is made once, when the settings are: a hashed address means
    nothing in another database, nor without this one."""

    ip = 'keep'
    bots = 'drop'

    def __init__(self):
        self.key = secrets.token_bytes(32)

    def set(self, ip=None, bots=None):
        """Change the modes given (None leaves one as it is);
        ``ValueError`` names the choices for a wrong one."""
        if ip is not None:
            self.ip = _choice('ip', ip, IP_MODES)
        if bots is not None:
            self.bots = _choice('bots', bots, BOT_MODES)

    def as_dict(self):
        """The modes, for people and JSON (never the key)."""
        return {'ip': self.ip, 'bots': self.bots}

    def __repr__(self):
        return '<PrivacySettings ip=%s bots=%s>' % (self.ip, self.bots)


def _choice(name, value, choices):
    if value not in choices:
        raise ValueError('%s must be one of %s, not %r' % (
            name, ', '.join(choices), value))
    return value


@adapter(ITrackingStorage)
@implementer(IPrivacySettings)
def privacy_settings(storage, create=True):
    """The storage's ``PrivacySettings``, made and kept when it has none
    (unless ``create`` is false: then unsaved defaults, so that reading
    them writes nothing)."""
    annotations = storage.__annotations__
    settings = annotations.get(ANNOTATION_KEY)
    if settings is None:
        settings = PrivacySettings()
        if create:
            annotations[ANNOTATION_KEY] = settings
    return settings


# -- addresses -----------------------------------------------------------


def truncate_ip(value):
    """The address with its last IPv4 octet or last 80 IPv6 bits zeroed,
    as text; None when ``value`` is not an IP address.

    >>> truncate_ip('200.15.173.55')
    '200.15.173.0'
    >>> truncate_ip('2001:db8:85a3:8d3:1319:8a2e:370:7348')
    '2001:db8:85a3::'
    >>> truncate_ip('::ffff:200.15.173.55')
    '::ffff:200.15.173.0'
    >>> truncate_ip('localhost') is None
    True
    """
    if value.__class__ is not str:
        return None
    try:
        address = ipaddress.ip_address(value.strip())
    except ValueError:
        return None
    if address.version == 4:
        return str(ipaddress.IPv4Address(int(address) & _V4_MASK))
    mapped = address.ipv4_mapped
    if mapped is not None:
        # An IPv4 address in IPv6 form is an IPv4 address: zeroing 80
        # bits would erase it whole, zeroing 8 keeps what IPv4 keeps.
        return '::ffff:' + truncate_ip(str(mapped))
    # Integer arithmetic drops a zone (fe80::1%eth0) with the bits.
    return str(ipaddress.IPv6Address(int(address) & _V6_MASK))


def hash_ip(key, value):
    """The keyed hash of an address (any JSON value, by its text)."""
    text = value if value.__class__ is str else repr(value)
    return hmac.new(key, text.encode('utf-8', 'surrogatepass'),
                    hashlib.sha256).hexdigest()[:HASH_HEX]


# -- bots ----------------------------------------------------------------


_DETECTOR = None


def is_bot(user_agent):
    """Whether a user agent is a known bot or crawler (crawlerdetect);
    a missing or non-text one is not known to be."""
    global _DETECTOR
    if user_agent.__class__ is not str or not user_agent:
        return False
    if _DETECTOR is None:
        from crawlerdetect import CrawlerDetect
        _DETECTOR = CrawlerDetect()
    return _DETECTOR.isCrawler(user_agent)


# -- the policy ------------------------------------------------------------


class Policy:
    """What a load does to each hit by the settings: ``apply(hit)``
    gives the hit to store (a new one when its address changed) or None
    for a bot to leave out. ``bots`` counts those."""

    def __init__(self, ip='keep', bots='drop', key=b''):
        self.ip = _choice('ip', ip, IP_MODES)
        self.drop_bots = _choice('bots', bots, BOT_MODES) == 'drop'
        self.key = key
        self.bots = 0
        # Visitors come back: each user agent and each address is
        # looked at once (crawlerdetect took 0.6 ms a new user agent,
        # parsing an address 8 us; benchmarks/privacy.py).
        self._agents = {}
        self._addresses = {}
        self._change = {'keep': None, 'truncate': self._truncate,
                        'hash': self._hash}[ip]

    @classmethod
    def of(cls, storage):
        """The policy of a storage's settings (unsaved defaults when it
        has none)."""
        settings = privacy_settings(storage, create=False)
        return cls(settings.ip, settings.bots, settings.key)

    @property
    def changes_nothing(self):
        """True when every hit is stored as it came."""
        return self._change is None and not self.drop_bots

    def apply(self, hit):
        """The hit as the settings keep it, or None for a bot's."""
        if self.drop_bots and self._bot(hit.event.get('user-agent')):
            self.bots += 1
            return None
        value = hit.event.get('ip')
        if self._change is None or value is None:
            return hit
        event = dict(hit.event)
        address = self._address(value)
        if address is None:
            del event['ip']
        else:
            event['ip'] = address
        stamp = hit.stamp
        if event.get('session-stamp') is None:
            stamp = stamp_of(event.get('ip'), event.get('user-agent'))
        return Hit(hit.id, hit.type, hit.us, hit.customer, stamp,
                   hit.client, event, hit.size)

    def _bot(self, agent):
        return _cached(self._agents, is_bot, agent)

    def _address(self, value):
        return _cached(self._addresses, self._change, value)

    def _truncate(self, value):
        # A value that is no address cannot be truncated, and kept as
        # it came it may be one in a form we do not read (with a port,
        # in brackets, as a number): dropping it is the safe side.
        return truncate_ip(value)

    def _hash(self, value):
        return hash_ip(self.key, value)


def _cached(cache, fn, value):
    """``fn(value)``, looked up in ``cache`` (bounded) first. Only
    strings are kept: ``1``, ``1.0`` and ``true`` are one dict key but
    three different values, and the answer must not depend on which of
    them came first."""
    if value.__class__ is not str:
        return fn(value)
    try:
        return cache[value]
    except KeyError:
        pass
    if len(cache) > 100000:
        cache.clear()
    found = cache[value] = fn(value)
    return found
