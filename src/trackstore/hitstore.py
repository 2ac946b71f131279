"""Store hits by the one rule, whatever path they came by.

``store_hits(storage, hits, rules)`` is what a file load, a stream and
``POST /hits`` all call, in the caller's transaction. It

1. skips hits whose id was stored before (or earlier in the call);
2. brings the identity maps up to date: the owner of a session stamp is
   the client of its first anonymous hit in time order, and a stamp's
   customer is that of its first customer hit -- first over *all* hits
   loaded, so an earlier hit in a later load can change both;
3. where a stamp changed hands, takes its hits out of the old owner's
   visits; where a stamp got an (earlier) customer, restitches the
   owner's visits;
4. merges each client's hits into its stored visits
   (``VisitStore.merge``).

Each step only extends, bridges or starts visits, or moves hits between
clients as the identity rule says, so any split of the hits into calls,
in any order, ends with the visits that ``sessionize`` gives over all
of them (late hits aside, see ``trackstore.clickstream.visits``).

The state this needs is one ``HitState`` per storage, found with
``hit_state(storage)``.
"""
from BTrees.OOBTree import OOBTree
from BTrees.OOBTree import OOSet
from BTrees.OOBTree import difference
from persistent import Persistent
from zope.interface import implementer

from trackstore import keys
from trackstore import killpoints
from trackstore.clickstream.visits import VisitStore
from trackstore.index import Segmented
from trackstore.interfaces import ICloser
from trackstore.sessions import Identities
from trackstore.sessions import Rules


ANNOTATION_KEY = 'trackstore.ingest'

_INT64_MIN = -2 ** 63
_INT64_MAX = 2 ** 63 - 1


class IdSet(Segmented):
    """The hit ids: a segmented set whose segments stop merging at
    262,144 keys (size class 6). Duplicates are found by walking every
    segment once per commit anyway, so more segments cost little; an
    unbounded merge of 4M ids held them all in memory and wrote them in
    one commit (711 MB peak and an 85 MB commit at 4M hits)."""

    MAX_LEVEL = 6


class HitState(Persistent):
    """What the hit path keeps in a storage:

    - ``ids``: the ids of the hits stored, as order-preserving byte keys
      (``id_key``). An id is its text (``idkey``): ``12345`` and
      ``"12345"`` are one hit. A load's ids are random over the whole
      set (its hits come sorted by client, not by id), so one tree would
      have nearly every bucket rewritten by each commit once it is
      large (measured: 1.6 MB of id buckets per commit at 440k hits and
      growing); the ids of a commit go into a new segment of a
      ``Segmented`` set instead, merged as segments pile up;
    - ``owners``: session stamp -> ``(us, idkey, client)`` of the
      stamp's first anonymous hit; ``customers``: stamp ->
      ``(customer, us, idkey)`` of its first customer hit;
    - ``totals``: counts over all loads; ``engines``: stream name ->
      that live stream's open proto-sessions (a pickle, see
      ``trackstore.ingest``), one entry a stream so that two streams
      into one database each find their own again after a restart.
    """

    def __init__(self):
        self.ids = IdSet()
        self.owners = OOBTree()
        self.customers = OOBTree()
        self.totals = OOBTree()
        self.engines = OOBTree()

    def add_totals(self, counts):
        for key, value in counts.items():
            if value:
                self.totals[key] = self.totals.get(key, 0) + value


def hit_state(storage, create=True):
    """The storage's ``HitState`` (created when asked), or None."""
    annotations = storage.__annotations__
    state = annotations.get(ANNOTATION_KEY)
    if state is None and create:
        state = annotations[ANNOTATION_KEY] = HitState()
    return state


def id_key(idkey):
    """The key of a hit id in ``HitState.ids``: the encoding of the int
    when the text is a 64-bit integer (9 bytes), else of the text."""
    # isascii: int() fails on digits like '\u00b2' that isdigit takes.
    digits = idkey[1:] if idkey[:1] == '-' else idkey
    if digits.isascii() and digits.isdigit():
        value = int(idkey)
        if str(value) == idkey and _INT64_MIN <= value <= _INT64_MAX:
            return keys.encode(value)
    return keys.encode_str(idkey)


class _Owners:
    """The owners map as ``Identities`` reads it: stamp -> client."""

    def __init__(self, tree):
        self.tree = tree

    def get(self, stamp, default=None):
        entry = self.tree.get(stamp)
        return default if entry is None else entry[2]

    def __setitem__(self, stamp, client):
        # Every stamp of the hits at hand has its owner already.
        pass


class _Customers:
    """The customers map as ``Identities`` reads it."""

    def __init__(self, tree):
        self.tree = tree

    def get(self, stamp, default=None):
        return self.tree.get(stamp, default)

    def __contains__(self, stamp):
        return stamp in self.tree

    def __setitem__(self, stamp, value):
        pass


class StoredIdentities(Identities):
    """``Identities`` answered from a ``HitState``'s maps."""

    def __init__(self, state):
        self.owners = _Owners(state.owners)
        self.customers = _Customers(state.customers)
        self._changed_owners = set()
        self._changed_customers = set()
        self.merged = 0


def _new_hits(state, hits):
    """The hits whose ids are not stored yet; their ids are added."""
    keyed = {}
    for hit in hits:
        # The first of the hits with one id wins.
        keyed.setdefault(id_key(hit.idkey), hit)
    new = OOSet(sorted(keyed))
    # One merge walk per segment, in C: a commit's ids are a large
    # sample of the whole id range, so walking each segment once reads
    # no more buckets than looking every id up, at a fraction of the
    # calls.
    for segment in state.ids.segments:
        new = difference(new, segment)
    if new:
        state.ids.add(list(new))
    return [hit for key, hit in keyed.items() if key in new]


def _firsts(hits):
    """Per stamp, the first anonymous hit's ``(us, idkey, client)`` and
    the first customer hit's ``(us, idkey, customer)``."""
    anon = {}
    cust = {}
    for hit in hits:
        if hit.customer is None:
            found, entry = anon, (hit.us, hit.idkey, hit.client or hit.stamp)
        else:
            found, entry = cust, (hit.us, hit.idkey, hit.customer)
        current = found.get(hit.stamp)
        if current is None or entry < current:
            found[hit.stamp] = entry
    return anon, cust


def _update_identities(state, hits):
    """Bring the maps up to date; return the stamps that changed owner
    (with their old owner) and those whose customer changed."""
    anon, cust = _firsts(hits)
    moved = []
    for stamp in sorted(anon):
        entry = anon[stamp]
        old = state.owners.get(stamp)
        if old is None or entry[:2] < old[:2]:
            state.owners[stamp] = entry
            if old is not None and old[2] != entry[2]:
                moved.append((stamp, old[2]))
    restitch = []
    for stamp in sorted(cust):
        us, idkey, customer = cust[stamp]
        old = state.customers.get(stamp)
        if old is None or (us, idkey) < (old[1], old[2]):
            state.customers[stamp] = (customer, us, idkey)
            restitch.append(stamp)
    return moved, restitch


def client_key(state, hit):
    """The client a hit belongs to, by the maps as they stand."""
    if hit.customer is not None:
        return 'c:' + hit.customer
    return 'a:' + state.owners[hit.stamp][2]


def store_hits(storage, hits, rules, taskId=None):
    """Store ``hits`` by the one rule (see the module docstring); return
    the counts: ``stored`` (new hits), ``duplicates``, ``late``,
    ``sessions`` (visits written) and ``replaced`` (visits taken out
    because they grew, merged or lost hits)."""
    state = hit_state(storage)
    fresh = _new_hits(state, hits)
    killpoints.here('store')
    moved, restitch = _update_identities(state, fresh)
    identities = StoredIdentities(state)
    store = VisitStore(storage, rules, taskId)
    groups = {}
    for stamp, old_owner in moved:
        taken = store.take('a:' + old_owner,
                           lambda h, s=stamp: h.stamp == s, identities)
        if taken:
            groups.setdefault('a:' + state.owners[stamp][2], []).extend(
                taken)
    for hit in fresh:
        groups.setdefault(client_key(state, hit), []).append(hit)
    for stamp in restitch:
        owner = state.owners.get(stamp)
        if owner is not None:
            groups.setdefault('a:' + owner[2], [])
    # In the order the hits came (for a file: sorted), so that the
    # numbers given in a batch do not depend on how loads were cut.
    for client in groups:
        store.merge(client, groups[client], identities)
    store.flush()
    counts = {'stored': len(fresh), 'duplicates': len(hits) - len(fresh),
              'late': store.late, 'sessions': store.added,
              'replaced': store.replaced}
    state.add_totals(counts)
    return counts


@implementer(ICloser)
class StoringCloser:
    """A closer that stores what a sessionizer closes, by the rule of
    ``store_hits``: the hits of the closed sessions are merged into the
    stored visits, so a session closed by a stream ends as the batch
    rule says, whatever the stream saw.

    Sessions are gathered and stored ``batch_size`` at a time; call
    ``flush()`` before committing so the transaction holds every
    session closed so far. Storing is idempotent (hit ids are the
    dedupe key). ``stored`` counts the sessions handed on, ``events``
    their hits.
    """

    def __init__(self, storage, rules=None, batch_size=500):
        self.storage = storage
        self.rules = rules if rules is not None else Rules()
        self.batch_size = batch_size
        self.pending = []
        self.stored = 0
        self.events = 0

    def close(self, session):
        self.pending.append(session)
        if len(self.pending) >= self.batch_size:
            self.flush()

    def flush(self):
        """Store the sessions gathered so far; return how many."""
        pending = self.pending
        if not pending:
            return 0
        self.pending = []
        hits = [hit for session in pending for hit in session.hits]
        store_hits(self.storage, hits, self.rules)
        self.stored += len(pending)
        self.events += len(hits)
        return len(pending)
