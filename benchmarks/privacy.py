"""Privacy benchmark: what the ingest's privacy policy costs.

Generated hits (``--customers``, ``--days``; one in ``--bot-every`` of
them given a crawler's user agent) are loaded into a new FileStorage
once per setting, and the policy alone is timed on the parsed hits:

- ``keep, keep``: addresses as they come, bots stored (no policy);
- ``keep, drop``: bot detection only (the default);
- ``truncate, drop`` and ``hash, drop``: an address changed too.

Generated hits have few user agents, which the policy looks up once
each; ``crawlerdetect`` on user agents it has not seen is timed apart
(``--agents`` distinct ones), the cost a real crowd adds per new one.

    .venv/bin/python benchmarks/privacy.py
    .venv/bin/python benchmarks/privacy.py --customers 4000 --days 14
"""
import argparse
import io
import os
import shutil
import tempfile
import time

import orjson

from trackstore.db import open_db
from trackstore.db import transact
from trackstore.ingest import ingest
from trackstore.privacy import Policy
from trackstore.privacy import is_bot
from trackstore.privacy import privacy_settings
from trackstore.sessions import parse_line
from trackstore.sessions.generate import USER_AGENTS
from trackstore.sessions.generate import generate


SETTINGS = (('keep', 'keep'), ('keep', 'drop'), ('truncate', 'drop'),
            ('hash', 'drop'))
BOT = 'Mozilla/5.0 (compatible; bingbot/2.0; ' \
    '+http://www.bing.com/bingbot.htm)'


def hits_file(path, customers, days, bot_every):
    """Generated hits, every ``bot_every``-th made a crawler's."""
    out = io.BytesIO()
    generate(customers, days, 3, out)
    count = 0
    with open(path, 'wb') as f:
        for n, line in enumerate(out.getvalue().splitlines()):
            try:
                record = orjson.loads(line)
                if bot_every and not n % bot_every:
                    record['event']['user-agent'] = BOT
                line = orjson.dumps(record)
            except (orjson.JSONDecodeError, KeyError, TypeError):
                pass    # a malformed line of the generator's: as it is
            f.write(line + b'\n')
            count += 1
    return count


def load(directory, source, ip, bots, round):
    """Seconds to load ``source`` into a new database with the setting;
    the report."""
    path = os.path.join(directory, '%s-%s-%d.fs' % (ip, bots, round))
    db = open_db(path)
    try:
        transact(db, lambda s: privacy_settings(s).set(ip=ip, bots=bots))
        started = time.perf_counter()
        report = ingest(source, db, rejects=path + '.rejects')
        return time.perf_counter() - started, report
    finally:
        db.close()


def policy_only(hits, ip, bots):
    """Microseconds per hit of ``Policy.apply`` alone."""
    policy = Policy(ip, bots, b'k' * 32)
    started = time.perf_counter()
    for hit in hits:
        policy.apply(hit)
    return (time.perf_counter() - started) * 1e6 / len(hits)


def unseen_agents(count):
    """Microseconds per ``is_bot`` call on user agents not seen."""
    agents = ['%s build/%d' % (USER_AGENTS[n % len(USER_AGENTS)], n)
              for n in range(count)]
    started = time.perf_counter()
    for agent in agents:
        is_bot(agent)
    return (time.perf_counter() - started) * 1e6 / count


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--customers', type=int, default=2000)
    parser.add_argument('--days', type=int, default=7)
    parser.add_argument('--bot-every', type=int, default=20)
    parser.add_argument('--agents', type=int, default=5000)
    parser.add_argument('--rounds', type=int, default=3)
    args = parser.parse_args()
    directory = tempfile.mkdtemp(prefix='trackstore-bench-privacy-')
    try:
        source = os.path.join(directory, 'hits.jsonl')
        lines = hits_file(source, args.customers, args.days, args.bot_every)
        with open(source, 'rb') as f:
            hits = [h for h in (parse_line(line, n) for n, line in
                                enumerate(f, 1)) if hasattr(h, 'stamp')]
        print('%s: %d lines, %d hits, one in %d a bot' % (
            time.strftime('%Y-%m-%d %H:%M'), lines, len(hits),
            args.bot_every))
        report(directory, source, hits, args.rounds)
        print('crawlerdetect on unseen user agents: %.1f us each' %
              unseen_agents(args.agents))
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def report(directory, source, hits, rounds):
    """Each setting's load ``rounds`` times, in turns (the machine's
    load moves; the fastest of each counts), and the policy alone."""
    best = {}
    for round in range(rounds):
        for ip, bots in SETTINGS:
            seconds, result = load(directory, source, ip, bots, round)
            best[ip, bots] = min(seconds, best.get((ip, bots), seconds))
    base = best[SETTINGS[0]]
    print('%-16s %9s %7s %6s %12s' % ('ip, bots', 'load s', 'ratio',
                                      'bots', 'policy us/hit'))
    for ip, bots in SETTINGS:
        print('%-16s %9.2f %6.2fx %6d %12.2f' % (
            '%s, %s' % (ip, bots), best[ip, bots], best[ip, bots] / base,
            result.bots if bots == 'drop' else 0,
            policy_only(hits, ip, bots)))


if __name__ == '__main__':
    main()
