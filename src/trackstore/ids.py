"""Which partition a connection writes into, and so which ids it hands out.

The original kept one counter attribute on the storage, and every save
wrote it: two concurrent saves always conflicted. Here each connection
claims a partition with a lease and allocates ids from the partition's
own sequence, so writers touch different objects. The claim is made in the
writer's own transaction: two connections that claim the same free
partition at once conflict on it, and the retry picks another one.

A lease is renewed by the owner's writes and may be released when the
owner is done (``TrackingStorage.releasePartition``). A writer that stops
without releasing leaves its partition to the next claimant after
``LEASE`` seconds; should two writers ever share a partition, they are
merely back to ZODB's ordinary conflict handling, which stays correct.
"""
import os
import random
import socket
import time
import uuid


LEASE = 120.0
# Partition numbers are the top bits of 64-bit (signed) track ids.
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
