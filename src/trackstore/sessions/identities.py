"""Who a hit belongs to: client keys, stamp owners, stitching.

A hit's *client key* is the sessionizing key:

- ``'c:<customer id>'`` for a hit that carries a customer id (customer
  ids are authoritative: two customers are never merged);
- ``'a:<owner>'`` for an anonymous hit. The hit's own client is its
  explicit ``client-id`` (a cookie id) or else its session stamp; the
  session stamp belongs to the first client seen with it, and a later
  client with the same stamp is merged into that owner.

*Stitching*: the first customer seen on a stamp is that stamp's
customer. An anonymous session on the stamp carries that customer as its
``user_id`` when the customer's first hit on the stamp is not later than
the session's horizon (what the engine has seen when the session
closes: the last hit plus the timeout, or the hit at a cap). The
anonymous hits stay in their own sessions.

"First" is in hit order (time, then id), which the streaming engine
restores within its allowed lateness, so both engines agree.
"""

# sorts after every hit id: "all hits at this microsecond"
MAX_ID = '\U0010ffff'


class Identities:
    """The identity maps of one hit stream (plain dicts, fast per hit).

    ``owners`` maps a stamp to its owning anonymous client;
    ``customers`` maps a stamp to ``(customer, us, idkey)`` of the first
    customer hit seen on it. Changes since the last ``take_changes()``
    are remembered so a caller can persist them incrementally.
    """

    __slots__ = ('owners', 'customers', '_changed_owners',
                 '_changed_customers', 'merged')

    def __init__(self, owners=None, customers=None):
        self.owners = dict(owners or ())
        self.customers = {
            k: tuple(v) for k, v in dict(customers or {}).items()}
        self._changed_owners = set()
        self._changed_customers = set()
        self.merged = 0

    def client_key(self, hit):
        """The client key of a hit (processed in hit order)."""
        stamp = hit.stamp
        customer = hit.customer
        if customer is not None:
            if stamp not in self.customers:
                self.customers[stamp] = (customer, hit.us, hit.idkey)
                self._changed_customers.add(stamp)
            return 'c:' + customer
        return 'a:' + self.owner(stamp, hit.client or stamp)

    def owner(self, stamp, client):
        """The client owning ``stamp``: the first one seen with it."""
        owner = self.owners.get(stamp)
        if owner is None:
            self.owners[stamp] = owner = client
            self._changed_owners.add(stamp)
        elif owner != client:
            self.merged += 1
        return owner

    def user_of(self, stamp, horizon):
        """The customer stitched to an anonymous session on ``stamp``
        whose horizon is ``(us, idkey)``, or None."""
        rec = self.customers.get(stamp)
        if rec is None or (rec[1], rec[2]) > horizon:
            return None
        return rec[0]

    # -- persistence -----------------------------------------------------

    def state(self):
        """Plain, picklable state: ``{'owners': {...}, 'customers':
        {stamp: [customer, us, idkey]}}``."""
        return {'owners': dict(self.owners),
                'customers': {k: list(v)
                              for k, v in self.customers.items()}}

    @classmethod
    def from_state(cls, state):
        return cls(state['owners'], state['customers'])

    def take_changes(self):
        """The entries added since the last call, as ``state()`` gives
        them; merge them into a persistent copy to checkpoint
        incrementally."""
        changes = {
            'owners': {k: self.owners[k] for k in self._changed_owners},
            'customers': {k: list(self.customers[k])
                          for k in self._changed_customers}}
        self._changed_owners = set()
        self._changed_customers = set()
        return changes

    def __eq__(self, other):
        return (isinstance(other, Identities)
                and self.owners == other.owners
                and self.customers == other.customers)
