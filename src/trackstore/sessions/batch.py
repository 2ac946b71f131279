"""The batch sessionizer: all hits at once, the 30-minute rule.

Per client (a customer, or an anonymous visitor; see identities), hits
ordered by time then id; a new session starts when the gap to the
client's previous hit is greater than the timeout (strictly: a gap of
exactly the timeout stays), when the session would exceed the length
cap, or after a session reached the events cap. The same rules as the
streaming engine, so both give the same sessions.
"""
from trackstore.sessions.closed import ClosedSession
from trackstore.sessions.identities import MAX_ID
from trackstore.sessions.identities import Identities
from trackstore.sessions.rules import Rules


def _key(hit):
    return (hit.us, hit.idkey)


def sessionize(hits, rules=None, timeout=None, identities=None):
    """Return the sessions (``ClosedSession``) of ``hits``, ordered by
    their first hit.

    ``rules`` is a ``Rules``; ``timeout`` (seconds, or text like '30m')
    is a shortcut for ``Rules(timeout=...)``.
    """
    if rules is None:
        rules = Rules() if timeout is None else Rules(timeout=timeout)
    if identities is None:
        identities = Identities()
    timeout_us = rules.timeout_us
    max_events = rules.max_events
    max_length_us = rules.max_length_us
    ordered = sorted(hits, key=_key)
    by_client = {}
    for hit in ordered:
        key = identities.client_key(hit)
        group = by_client.get(key)
        if group is None:
            by_client[key] = [hit]
        else:
            group.append(hit)
    # (client, hits, horizon) of every session
    found = []
    for key, group in by_client.items():
        current = None
        first = last = 0
        for hit in group:
            us = hit.us
            if current is not None and (
                    us - last > timeout_us
                    or (max_length_us is not None
                        and us - first > max_length_us)):
                found.append((key, current, _horizon(
                    first, last, timeout_us, max_length_us)))
                current = None
            if current is None:
                current = [hit]
                first = us
            else:
                current.append(hit)
            last = us
            if max_events is not None and len(current) >= max_events:
                # the hit at the cap closes the session at once
                found.append((key, current, _key(hit)))
                current = None
        if current is not None:
            found.append((key, current, _horizon(
                first, last, timeout_us, max_length_us)))
    sessions = []
    for key, group, horizon in found:
        stamp = group[0].stamp
        if key.startswith('c:'):
            user = key[2:]
        else:
            user = identities.user_of(stamp, horizon)
        sessions.append(ClosedSession(
            key, group, user_id=user, reason='batch', stamp=stamp))
    sessions.sort(key=lambda s: _key(s.hits[0]))
    return sessions


def _horizon(first, last, timeout_us, max_length_us):
    """How far a session that ended on its timeout or length cap saw."""
    end = last + timeout_us
    if max_length_us is not None and first + max_length_us < end:
        end = first + max_length_us
    return (end, MAX_ID)
