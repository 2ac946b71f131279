"""Export the stored sessions with their hits, for a warehouse.

``export(storage, out, format)`` writes one row per hit, each carrying
its session's fields, streaming (a session at a time; Parquet in row
groups), in the order the sessions are stored (by batch and number):

- ``jsonl``: each line is the hit as ``trackstore ingest`` reads it,
  with its session beside it::

      {"id": 463469, "type": "search",
       "event": {"timestamp": "2022-04-28T07:38:46.290271",
                 "customer-id": null, "session-stamp": "efd1d410e4be69fb",
                 "query": "..."},
       "session": {"session_id": "20220428T073846-...", "batch_id": "1",
                   "session_number": 1, "user_id": null,
                   "client": "a:efd1d410e4be69fb", "late": false}}

  so the file loads into another database as it is;
- ``csv`` and ``parquet``: the columns of ``COLUMNS``, the type's own
  fields (query, page, product, order...) as JSON text in ``fields``;
  Parquet's ``timestamp`` is a UTC timestamp of microseconds, CSV's
  the ISO text.

The store keeps no address nor user agent of a hit (the session stamp
is what sessions need of them), so neither is exported. The stamp and,
where it is not the stamp, the visitor's client id are: loading an
export gives the same sessions, user ids and metrics as the store it
came from (``read_export`` reads any of the three back into hits).

``since`` and ``until`` (epoch seconds) export the sessions whose first
hit is at or after ``since`` and before ``until``, whole.
"""
import csv
import io
import json
import os

import orjson
from zope.interface import implementer

from trackstore.clickstream.dao import ClickstreamDao
from trackstore.clickstream.records import clickstream_records
from trackstore.clickstream.visits import hits_of
from trackstore.interfaces import IExportReport
from trackstore.sessions.hits import US
from trackstore.sessions.hits import check_id
from trackstore.sessions.hits import format_us
from trackstore.sessions.hits import parse_timestamp


FORMATS = ('jsonl', 'csv', 'parquet')
SESSION_COLUMNS = ('session_id', 'batch_id', 'session_number', 'user_id',
                   'client', 'late')
HIT_COLUMNS = ('id', 'type', 'timestamp', 'customer_id', 'session_stamp',
               'client_id', 'fields')
COLUMNS = SESSION_COLUMNS + HIT_COLUMNS
# Rows per Parquet row group: large enough for a warehouse to scan
# well, small enough that a writer holds little.
ROW_GROUP = 65536
# Sessions between cache collections of a long export: read once,
# they need not stay.
GC_EVERY = 2000


@implementer(IExportReport)
class ExportReport:
    """What one export wrote."""

    def __init__(self, format, since=None, until=None):
        self.format = format
        self.since = since
        self.until = until
        self.sessions = 0
        self.hits = 0

    def as_dict(self):
        return {'format': self.format, 'sessions': self.sessions,
                'hits': self.hits, 'since': self.since,
                'until': self.until}

    def summary(self):
        return '%d sessions, %d hits exported (%s)' % (
            self.sessions, self.hits, self.format)

    def __repr__(self):
        return '<ExportReport %s>' % self.summary()


# -- rows ----------------------------------------------------------------


def _json(value):
    """JSON bytes; the standard library writes what orjson refuses
    (integers beyond 64 bits)."""
    try:
        return orjson.dumps(value)
    except TypeError:
        return json.dumps(value).encode()


def session_columns(session):
    """The session fields each of its rows carries."""
    meta = session['search_meta']
    return {'session_id': session['session_id'],
            'batch_id': session['batch_id'],
            'session_number': session['session_number'],
            'user_id': session['user_id'], 'client': meta['client'],
            'late': bool(meta.get('late'))}


def hit_records(session):
    """The hits of a stored visit as ``trackstore ingest`` reads them.
    An anonymous visitor's client id is given where it is not the hit's
    stamp (a cookie id), so that a load gives the same owner."""
    client = session['search_meta']['client']
    owner = client[2:] if client.startswith('a:') else None
    for hit in hits_of(session):
        event = {'timestamp': format_us(hit.us),
                 'customer-id': hit.customer, 'session-stamp': hit.stamp}
        if owner is not None and owner != hit.stamp:
            event['client-id'] = owner
        event.update(hit.event)
        # hits_of gives the id's text; an integer's goes out as one
        yield {'id': check_id(hit.id)[0], 'type': hit.type,
               'event': event}


def visits(storage, since=None, until=None, progress=None):
    """The stored visits (sessions made from hits) to export, as the
    DAO's dicts; ``progress(done, total)`` is told of each session."""
    records = clickstream_records(storage)
    total = 0 if records is None else len(records.numbers)
    low = None if since is None else since * US
    high = None if until is None else until * US
    jar = getattr(storage, '_p_jar', None)
    for done, session in enumerate(
            ClickstreamDao(storage).iter_records(), 1):
        if progress is not None:
            progress(done, total)
        if jar is not None and not done % GC_EVERY:
            jar.cacheGC()
        meta = session.get('search_meta') or {}
        if 'client' not in meta or 'first_ts' not in meta:
            continue    # a search session registered by the API
        first = int(round(meta['first_ts'] * US))
        if (low is None or first >= low) and (high is None or first < high):
            yield session


# -- writers ---------------------------------------------------------------


class _Jsonl:

    def __init__(self, out):
        self.out = out

    def write(self, columns, record):
        self.out.write(_json(dict(record, session=columns)) + b'\n')

    def close(self):
        pass


def flat_row(columns, record):
    """A hit's row of ``COLUMNS`` (as values, fields as JSON text)."""
    event = dict(record['event'])
    row = dict(columns)
    row.update(
        id=str(record['id']), type=record['type'],
        timestamp=event.pop('timestamp'),
        customer_id=event.pop('customer-id'),
        session_stamp=event.pop('session-stamp'),
        client_id=event.pop('client-id', None),
        fields=_json(event).decode())
    return row


class _Csv:

    def __init__(self, out):
        self.text = io.TextIOWrapper(out, 'utf-8', newline='',
                                     write_through=True)
        self.writer = csv.writer(self.text)
        self.writer.writerow(COLUMNS)

    def write(self, columns, record):
        row = flat_row(columns, record)
        self.writer.writerow([row[name] for name in COLUMNS])

    def close(self):
        self.text.flush()
        # The caller closes the file it gave.
        self.text.detach()


def parquet_schema():
    import pyarrow as pa
    text = pa.string()
    return pa.schema([
        ('session_id', text), ('batch_id', text),
        ('session_number', pa.int64()), ('user_id', text),
        ('client', text), ('late', pa.bool_()), ('id', text),
        ('type', text), ('timestamp', pa.timestamp('us', tz='UTC')),
        ('customer_id', text), ('session_stamp', text),
        ('client_id', text), ('fields', text)])


class _Parquet:
    """Rows gathered by column (pyarrow's own layout), written a row
    group at a time so that a long export holds one group at most."""

    def __init__(self, out):
        import pyarrow.parquet as pq
        self.schema = parquet_schema()
        self.writer = pq.ParquetWriter(out, self.schema)
        self._start()

    def _start(self):
        self.columns = {name: [] for name in COLUMNS}
        self.rows = 0

    def write(self, columns, record):
        row = flat_row(columns, record)
        row['timestamp'] = parse_timestamp(row['timestamp'])
        for name, values in self.columns.items():
            values.append(row[name])
        self.rows += 1
        if self.rows >= ROW_GROUP:
            self._flush()

    def _flush(self):
        import pyarrow as pa
        if self.rows:
            self.writer.write_table(
                pa.Table.from_pydict(self.columns, schema=self.schema))
            self._start()

    def close(self):
        self._flush()
        self.writer.close()


WRITERS = {'jsonl': _Jsonl, 'csv': _Csv, 'parquet': _Parquet}


def export(storage, out, format='jsonl', since=None, until=None,
           progress=None):
    """Write the sessions of ``storage`` with their hits to ``out`` (a
    path, written whole or not at all, or a binary file) in ``format``
    (see the module docstring); return an ``ExportReport``."""
    if format not in WRITERS:
        raise ValueError('format must be one of %s, not %r'
                         % (', '.join(FORMATS), format))
    if hasattr(out, 'write'):
        return _export(storage, out, format, since, until, progress)
    part = '%s.part' % (out,)
    try:
        with open(part, 'wb') as f:
            report = _export(storage, f, format, since, until, progress)
        os.replace(part, out)
    finally:
        if os.path.exists(part):
            os.unlink(part)
    return report


def _export(storage, out, format, since, until, progress):
    report = ExportReport(format, since, until)
    writer = WRITERS[format](out)
    for session in visits(storage, since, until, progress):
        columns = session_columns(session)
        report.sessions += 1
        for record in hit_records(session):
            writer.write(columns, record)
            report.hits += 1
    writer.close()
    return report


# -- reading an export back ------------------------------------------------


def format_of(path):
    """The format an export's name says, or None."""
    for format in FORMATS:
        if os.fspath(path).endswith('.' + format):
            return format
    return None


def read_export(path, format=None):
    """Yield the hits of an export (any of the three formats; by default
    told by the name) as records ``trackstore ingest`` reads, each with
    its ``session`` columns."""
    format = format or format_of(path) or 'jsonl'
    if format == 'jsonl':
        with open(path, 'rb') as f:
            for line in f:
                if line.strip():
                    yield orjson.loads(line)
        return
    rows = _csv_rows(path) if format == 'csv' else _parquet_rows(path)
    for row in rows:
        yield from_row(row)


def from_row(row):
    """An ingest record from a row of ``COLUMNS`` (CSV text or Parquet
    values)."""
    event = {'timestamp': row['timestamp'],
             'customer-id': row['customer_id'] or None,
             'session-stamp': row['session_stamp']}
    if row['client_id']:
        event['client-id'] = row['client_id']
    event.update(orjson.loads(row['fields']))
    session = {name: row[name] for name in SESSION_COLUMNS}
    session['session_number'] = int(session['session_number'])
    session['user_id'] = session['user_id'] or None
    late = session['late']
    session['late'] = late if late.__class__ is bool else late == 'True'
    return {'id': check_id(row['id'])[0], 'type': row['type'],
            'event': event, 'session': session}


def _csv_rows(path):
    with open(path, newline='', encoding='utf-8') as f:
        yield from csv.DictReader(f)


def _parquet_rows(path):
    import pyarrow as pa
    import pyarrow.parquet as pq
    parquet = pq.ParquetFile(path)
    for batch in parquet.iter_batches():
        micros = batch.column('timestamp').cast(pa.int64()).to_pylist()
        for row, us in zip(batch.to_pylist(), micros):
            row['timestamp'] = format_us(us)
            yield row
