"""Which partition a connection writes into, and so which ids it hands out.

The original kept one counter attribute on the storage, and every save
wrote it: two concurrent saves always conflicted. Here each connection
claims a partition with a lease and allocates ids from the partition's
own sequence, so writers touch different objects. The claim is made in the
writer's own transaction: two connections that claim the same free
partition at once conflict on it, and the retry picks another one.

A lease is renewed by the owner's writes and may be released when the
owner is done (``release``, which ``db.Worker.close`` calls). A writer
that stops without releasing leaves its partition to the next claimant after
``LEASE`` seconds; should two writers ever share a partition, they are
merely back to ZODB's ordinary conflict handling, which stays correct.
"""
import os
import random
import socket
import time
import uuid


LEASE = 120.0
# Track ids are ``partition number << ID_BITS | sequence``: partition 0
# hands out 1, 2, 3 ... as a single writer always did. Partition numbers
# are the top bits of 64-bit (signed) track ids.
ID_BITS = 40
ID_MASK = (1 << ID_BITS) - 1
MAX_PARTITION = 1 << 23
_random = random.SystemRandom()

# One token per process; the connection's identity tells the threads of a
# process apart (each thread has its own connection).
_PROCESS = '%s:%s:%s' % (socket.gethostname(), os.getpid(),
                         uuid.uuid4().hex[:8])


def ownerToken(jar):
    return '%s:%x' % (_PROCESS, id(jar))


def claim(partitions, token, create, now=None):
    """Return the partition for the writer with ``token``.

    ``partitions`` maps numbers to partitions; ``create(number)`` makes
    and stores a new one. The writer's own partition comes first, then
    the lowest free one (so a lone writer keeps using partition 0), then
    a new one with a random number: writers that start together and lose
    the race for a free partition then create different ones, which the
    partitions tree merges, instead of conflicting again over the next
    number.
    """
    now = time.time() if now is None else now
    free = None
    for number, partition in partitions.items():
        if partition.owner == token:
            if partition.leaseUntil - now < LEASE / 2:
                partition.leaseUntil = now + LEASE
            return partition
        if free is None and (partition.owner is None
                             or partition.leaseUntil < now):
            free = partition
    if free is None:
        if not len(partitions):
            number = 0
        else:
            number = _random.randrange(1, MAX_PARTITION)
            while number in partitions:
                number = _random.randrange(1, MAX_PARTITION)
        free = create(number)
    free.owner = token
    free.leaseUntil = now + LEASE
    return free


def partitionOf(trackId):
    """The number of the partition that holds track ``trackId``."""
    return trackId >> ID_BITS


def formatId(trackId):
    """A track id as the storage hands it out (``Track.__name__``)."""
    return '%07i' % trackId


def allocate(partition, n):
    """Take ``n`` consecutive ids from the partition's sequence."""
    first = partition.lastId + 1
    partition.lastId += n
    if partition.lastId - firstId(partition.number) > ID_MASK:
        raise OverflowError('partition %s is full' % partition.number)
    return range(first, first + n)


def firstId(number):
    """What ``lastId`` of a new partition starts at."""
    return number << ID_BITS


def writerPartition(storage):
    """The partition the storage's connection writes into (claimed or
    renewed as needed); a storage outside a database has one writer and
    writes into partition 0."""
    jar = storage._p_jar
    if jar is None:
        return storage.partitions[0]
    token = ownerToken(jar)
    cached = getattr(storage, '_v_partition', None)
    # The cache may hold a partition created in a transaction that was
    # aborted since: one that is not in the tree is no partition.
    if (cached is not None and cached._p_jar is jar
            and storage.partitions.get(cached.number) is cached
            and cached.owner == token
            and cached.leaseUntil - time.time() > LEASE / 2):
        return cached
    partition = claim(storage.partitions, token, storage._newPartition)
    storage._v_partition = partition
    return partition


def release(storage):
    """Give up the partition leases of the storage's connection, so the
    next writer reuses the partition instead of waiting for the lease to
    run out. Leasing is no part of the storage's public contract: the
    unit-of-work runner (``db.Worker``) calls this when it closes."""
    jar = storage._p_jar
    if jar is None:
        return
    token = ownerToken(jar)
    for partition in storage.partitions.values():
        if partition.owner == token:
            partition.owner = None
            partition.leaseUntil = 0.0
    storage._v_partition = None
