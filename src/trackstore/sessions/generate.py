"""A realistic, deterministic stream of JSON hits.

Customers (with one or two devices) and anonymous visitors come on
random days, for sessions of a few to a few dozen hits: searches, page
views, carts and orders. Some customers browse anonymously and log in
mid-session (their first hits carry no customer id, on the same IP and
user agent). Lines come roughly in time order, a few of them delayed by
up to ten seconds (as collectors deliver them), and about one line in
two thousand is malformed: not JSON, without a timestamp, or with one
that does not parse. The same arguments always give the same bytes.

Hit ids (and order numbers) come from the seed's own range, ``seed *
ID_SPAN`` plus a running number, so that files generated with different
seeds never share an id: a second file loaded on top of a first is new
hits, not duplicates. Seed 0 keeps the ids it always had.
"""
import datetime
import gzip
import heapq
import random

import orjson


START = datetime.date(2022, 4, 28)
US = 1000000
DAY_US = 86400 * US
MAX_DELAY_US = 10 * US
SHOP = 'https://xcc-webshop.com/'
# Ids per seed: a billion hits is a file of about 300 GB.
ID_SPAN = 10 ** 9
FIRST_ID = 400000
FIRST_ORDER = 1000
# Every id of every seed fits 64 bits (what the loader keeps them in).
MAX_SEED = (2 ** 63 - 1) // ID_SPAN - 1

USER_AGENTS = [
    'Mozilla/5.0 (iPhone; CPU iPhone OS 14_2 like Mac OS X) '
    'AppleWebKit/532.0 (KHTML, like Gecko) FxiOS/14.7g5052.0 '
    'Mobile/28A193 Safari/532.0',
    'Mozilla/5.0 (iPod; U; CPU iPhone OS 4_3 like Mac OS X; br-FR) '
    'AppleWebKit/533.34.2 (KHTML, like Gecko) Version/4.0.5 '
    'Mobile/8B111 Safari/6533.34.2',
    'Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 '
    '(KHTML, like Gecko) Chrome/101.0.4951.54 Safari/537.36',
    'Mozilla/5.0 (Macintosh; Intel Mac OS X 12_3_1) AppleWebKit/605.1.15 '
    '(KHTML, like Gecko) Version/15.4 Safari/605.1.15',
    'Mozilla/5.0 (X11; Linux x86_64; rv:99.0) Gecko/20100101 '
    'Firefox/99.0',
    'Mozilla/5.0 (Linux; Android 12; SM-G991B) AppleWebKit/537.36 '
    '(KHTML, like Gecko) Chrome/100.0.4896.127 Mobile Safari/537.36',
    'Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 '
    '(KHTML, like Gecko) Chrome/101.0.4951.41 Safari/537.36 Edg/101.0.1210.32',
    'Mozilla/5.0 (iPad; CPU OS 15_4 like Mac OS X) AppleWebKit/605.1.15 '
    '(KHTML, like Gecko) CriOS/101.0.4951.44 Mobile/15E148 Safari/604.1',
    'Mozilla/5.0 (Windows NT 6.1; WOW64; Trident/7.0; rv:11.0) '
    'like Gecko',
    'Mozilla/5.0 (Linux; Android 11; Pixel 5) AppleWebKit/537.36 '
    '(KHTML, like Gecko) Chrome/99.0.4844.88 Mobile Safari/537.36',
]
ADJECTIVES = [
    'Synchronized', 'Ergonomic', 'Robust', 'Streamlined', 'Organic',
    'Compact', 'Adaptive', 'Vintage', 'Wireless', 'Durable', 'Smart',
    'Portable', 'Premium', 'Classic', 'Modular', 'Eco-friendly']
NOUNS = [
    'didactic', 'leather', 'cotton', 'steel', 'wooden', 'ceramic',
    'digital', 'granite', 'bamboo', 'woollen', 'carbon', 'glass']
THINGS = [
    'task-force', 'backpack', 'lamp', 'headphones', 'sneakers', 'mug',
    'jacket', 'keyboard', 'chair', 'watch', 'kettle', 'notebook',
    'umbrella', 'blender', 'scarf', 'speaker']
PAGES = ['', 'cart', 'checkout', 'account', 'category/shoes',
         'category/kitchen', 'category/electronics', 'category/garden',
         'help', 'deals']


def _ip(rng):
    return '%d.%d.%d.%d' % (rng.randint(1, 223), rng.randrange(256),
                            rng.randrange(256), rng.randint(1, 254))


def _device(rng):
    return (rng.choice(USER_AGENTS), _ip(rng))


class _Visit:
    """One planned visit: its hit times and what each hit is."""

    __slots__ = ('times', 'kinds', 'customer', 'device', 'anonymous_until',
                 'i')

    def __init__(self, rng, start, customer, device):
        n = 1 + int(rng.expovariate(1 / 7.0))
        if n > 60:
            n = 60
        ordering = customer is not None and rng.random() < 0.25
        if ordering:
            n = max(n, 3)
        times = [start]
        t = start
        for _ in range(n - 1):
            r = rng.random()
            if r < 0.02:
                # a long pause, some of them just under or over the timeout
                gap = rng.uniform(25 * 60, 35 * 60)
            else:
                gap = min(rng.expovariate(1 / 50.0), 20 * 60)
            t += int(gap * US) + rng.randrange(US)
            times.append(t)
        kinds = []
        for _ in range(n):
            r = rng.random()
            kinds.append('search' if r < 0.3 else
                         'page_view' if r < 0.85 else 'add_to_cart')
        if ordering:
            kinds[-2] = 'add_to_cart'
            kinds[-1] = 'placed_order'
        self.times = times
        self.kinds = kinds
        self.customer = customer
        self.device = device
        # logging in mid-visit: the first hits are anonymous
        self.anonymous_until = (
            rng.randint(1, min(3, n - 1))
            if customer is not None and n > 1 and rng.random() < 0.2
            else 0)
        self.i = 0


def generate(customers=1000, days=7, seed=0, out=None, start=START,
             malformed=1 / 2000.0):
    """Write the hit stream to ``out`` (a path, gzip when it ends in
    ``.gz``, or a binary file object); return the number of lines.

    ``customers`` identified customers and twice as many anonymous
    visitors come over ``days`` days from ``start``. Hit ids are
    ``seed * ID_SPAN + 400001`` on: disjoint for different seeds.
    """
    if not -MAX_SEED <= seed <= MAX_SEED:
        raise ValueError('the seed must be within -%d .. %d (ids are 64-bit)'
                         % (MAX_SEED, MAX_SEED))
    rng = random.Random(seed)
    customer_ids = [10000 + 7 * i + rng.randrange(7)
                    for i in range(customers)]
    devices = [[_device(rng)] + ([_device(rng)] if rng.random() < 0.3
                                 else [])
               for _ in range(customers)]
    anonymous = [_device(rng) for _ in range(2 * customers)]
    if isinstance(out, (str, bytes)) or hasattr(out, '__fspath__'):
        path = str(out)
        f = (gzip.open(path, 'wb', compresslevel=5) if path.endswith('.gz')
             else open(path, 'wb', buffering=1 << 20))
        own = True
    else:
        f = out
        own = False
    epoch_day = (start - datetime.date(1970, 1, 1)).days
    day_text = {}

    def timestamp(us):
        day, rest = divmod(us, DAY_US)
        text = day_text.get(day)
        if text is None:
            text = day_text[day] = (
                datetime.date(1970, 1, 1)
                + datetime.timedelta(days=day)).isoformat()
        s, micro = divmod(rest, US)
        m, s = divmod(s, 60)
        h, m = divmod(m, 60)
        return '%sT%02d:%02d:%02d.%06d' % (text, h, m, s, micro)

    def plan(day):
        base = (epoch_day + day) * DAY_US
        visits = []
        for c in range(customers):
            r = rng.random()
            k = 2 if r < 0.08 else 1 if r < 0.4 else 0
            for _ in range(k):
                visits.append((base + rng.randrange(DAY_US), c))
        for a in range(len(anonymous)):
            if rng.random() < 0.15:
                visits.append((base + rng.randrange(DAY_US), -1 - a))
        visits.sort()
        return visits

    written = 0
    next_id = seed * ID_SPAN + FIRST_ID
    last_id = seed * ID_SPAN + ID_SPAN - 1
    next_order = seed * ID_SPAN + FIRST_ORDER
    out_heap = []      # (emit time, id, line): a few lines come late
    visits = []        # (next hit time, seq, _Visit)
    seq = 0
    day = 0
    pending = plan(0) if days > 0 else []
    pi = 0
    dumps = orjson.dumps
    rand = rng.random
    write = f.write
    while True:
        if pi == len(pending) and day + 1 < days:
            day += 1
            pending = plan(day)
            pi = 0
            continue
        if pi < len(pending) and (not visits
                                  or pending[pi][0] <= visits[0][0]):
            start_us, who = pending[pi]
            pi += 1
            if who >= 0:
                devs = devices[who]
                device = devs[0] if len(devs) == 1 or rand() < 0.7 \
                    else devs[1]
                visit = _Visit(rng, start_us, customer_ids[who], device)
            else:
                visit = _Visit(rng, start_us, None, anonymous[-1 - who])
            seq += 1
            heapq.heappush(visits, (start_us, seq, visit))
            continue
        if not visits:
            break
        us, _, visit = heapq.heappop(visits)
        i = visit.i
        kind = visit.kinds[i]
        ua, ip = visit.device
        customer = visit.customer if i >= visit.anonymous_until else None
        event = {'user-agent': ua, 'ip': ip, 'customer-id': customer,
                 'timestamp': timestamp(us)}
        if kind == 'search':
            event['query'] = '%s %s %s' % (
                rng.choice(ADJECTIVES), rng.choice(NOUNS),
                rng.choice(THINGS))
        elif kind == 'page_view':
            event['page'] = SHOP + (
                'product/%d' % rng.randint(1, 5000) if rand() < 0.5
                else rng.choice(PAGES))
        elif kind == 'add_to_cart':
            event['product'] = rng.randint(1, 5000)
        else:
            next_order += 1
            event['order'] = next_order
        next_id += 1
        if next_id > last_id:
            raise ValueError('more than %d hits for one seed' % (
                ID_SPAN - FIRST_ID))
        record = {'id': next_id, 'type': kind, 'event': event}
        r = rand()
        if r < malformed:
            which = rng.randrange(3)
            if which == 0:
                line = dumps(record)[:-rng.randint(2, 40)]
            elif which == 1:
                del event['timestamp']
                line = dumps(record)
            else:
                event['timestamp'] = rng.choice(
                    ['2022-04-31T25:61:00.000000', 'yesterday', '',
                     '28/04/2022 07:38'])
                line = dumps(record)
        else:
            line = dumps(record)
        emit = us + (rng.randrange(MAX_DELAY_US) if rand() < 0.01 else 0)
        heapq.heappush(out_heap, (emit, next_id, line))
        while out_heap[0][0] <= us - MAX_DELAY_US:
            write(heapq.heappop(out_heap)[2] + b'\n')
            written += 1
        visit.i = i + 1
        if i + 1 < len(visit.times):
            heapq.heappush(visits, (visit.times[i + 1], seq, visit))
            seq += 1
    while out_heap:
        write(heapq.heappop(out_heap)[2] + b'\n')
        written += 1
    if own:
        f.close()
    return written
