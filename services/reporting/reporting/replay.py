"""Replaying an archive of events into the read models.

    python -m reporting.replay [--db-url URL] [--batch 500] FILE [FILE ...]

Each FILE holds one event envelope per line (JSON), as the producers publish
them; ``-`` reads standard input. The database is the reporting service's
(``--db-url``, else CRM_REPORTING_DB_URL), migrated to the current schema
first; stop the service, or at least its consumers, while a replay runs.

The events go through the code the event handlers run (reporting.ingest): each
is validated, recorded once under its event id, and written with the version
guards. So a replayed archive leaves the read models as live delivery of the
same events would, a late older version changes nothing, and replaying a file
twice changes nothing.

What it adds is batching: consecutive events of one kind are written together,
up to ``--batch`` per transaction, so each table takes one statement per batch
instead of one per event. A batch holds at most one event per record (a second
version of a record starts the next batch), because one statement must not
write a row twice. Events with a path of their own (customer.imported,
customer.deleted, customer.merged) are applied one at a time, in order.

Used to fill a new reporting database from an archive of events, and by
`make bench` to build its read model of 1,000,000 order lines through
reporting's own write path.
"""
import argparse
import json
import os
import sys
import time

from sqlalchemy import select

from crm_common.consumer import processed_events_table
from crm_common.db import make_engine, make_session_factory
from crm_common.errors import ValidationFailed
from crm_common.migrate import upgrade
from crm_common.types import utcnow
from crm_common.validation import load

from reporting.ingest import KINDS, Ingest, _kind_of, apply_event

# Events whose effect is not "write these records": applied alone through apply_event.
ONE_AT_A_TIME = ("customer.imported", "customer.deleted", "customer.merged")


def record_key(kind, data):
    """The record an event describes: what must not appear twice in one batch."""
    return data.get("stage_change_id") if kind == "stage_changes" else data.get("id")


class Replay:
    """Applies envelopes in order, batching consecutive ones of one kind; counts what it did."""

    def __init__(self, session_factory, batch_size=500):
        self.Session = session_factory
        self.batch_size = batch_size
        self.kind, self.batch, self.keys = None, [], set()
        self.applied = self.skipped = 0

    def add(self, envelope):
        event_type = envelope.get("type") or ""
        if event_type in ONE_AT_A_TIME:
            self.flush()
            with self.Session.begin() as session:
                if apply_event(session, envelope):
                    self.applied += 1
                else:
                    self.skipped += 1
            return
        kind = _kind_of(event_type)
        if kind is None or (kind == "followups" and event_type != "followup.logged"):
            with self.Session.begin() as session:
                apply_event(session, envelope)  # refuses it (ValidationFailed), naming the type
            return
        key = record_key(kind, envelope.get("data") or {})
        if kind != self.kind or key in self.keys or len(self.batch) >= self.batch_size:
            self.flush()
        self.kind = kind
        self.batch.append(envelope)
        self.keys.add(key)

    def flush(self):
        if not self.batch:
            return
        schema, write = KINDS[self.kind]
        records = [load(schema, envelope.get("data")) for envelope in self.batch]
        with self.Session.begin() as session:
            fresh = first_deliveries(session, self.batch)
            write(Ingest(session), [record for record, envelope in zip(records, self.batch)
                                    if envelope["event_id"] in fresh])
        self.applied += len(fresh)
        self.skipped += len(self.batch) - len(fresh)
        self.kind, self.batch, self.keys = None, [], set()


def first_deliveries(session, envelopes):
    """The event ids among ``envelopes`` not processed before, now recorded (crm_common.consumer's
    first_delivery, for a batch: one query and one insert)."""
    ids = {envelope["event_id"] for envelope in envelopes}
    seen = set(session.execute(select(processed_events_table.c.event_id)
                               .where(processed_events_table.c.event_id.in_(ids))).scalars())
    now = utcnow()
    fresh = {}
    for envelope in envelopes:
        if envelope["event_id"] not in seen:
            fresh.setdefault(envelope["event_id"], {"event_id": envelope["event_id"],
                                                    "event_type": envelope["type"], "processed_at": now})
    if fresh:
        session.execute(processed_events_table.insert(), list(fresh.values()))
    return set(fresh)


def envelopes_of(paths):
    for path in paths:
        handle = sys.stdin if path == "-" else open(path, encoding="utf-8")
        with handle:
            for number, line in enumerate(handle, 1):
                if line.strip():
                    try:
                        yield json.loads(line)
                    except json.JSONDecodeError as error:
                        raise SystemExit(f"{path}:{number}: not a JSON envelope: {error}") from None


def replay(url, paths, batch_size=500, progress=None):
    """Migrate the database at ``url``, then apply every envelope of ``paths``; returns (applied, skipped)."""
    upgrade("reporting.migrations", url)
    engine = make_engine(url, pool_size=1)
    try:
        run = Replay(make_session_factory(engine), batch_size)
        for count, envelope in enumerate(envelopes_of(paths), 1):
            run.add(envelope)
            if progress and count % 100_000 == 0:
                progress(count)
        run.flush()
        return run.applied, run.skipped
    finally:
        engine.dispose()


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m reporting.replay",
                                     description=__doc__.split("\n\n")[1],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("files", nargs="+", metavar="FILE", help="JSON lines of event envelopes (- for stdin)")
    parser.add_argument("--db-url", default=os.environ.get("CRM_REPORTING_DB_URL"),
                        help="the reporting database (default: $CRM_REPORTING_DB_URL)")
    parser.add_argument("--batch", type=int, default=500, help="events per transaction, at most")
    args = parser.parse_args(argv)
    if not args.db_url:
        parser.error("no database: pass --db-url or set CRM_REPORTING_DB_URL")
    started = time.monotonic()
    try:
        applied, skipped = replay(args.db_url, args.files, args.batch,
                                  progress=lambda count: print(f"  {count} events read", flush=True))
    except ValidationFailed as error:
        # Nothing of the failing batch is written; the batches before it are (a rerun skips them).
        sys.exit(f"stopped at an event reporting cannot read: {error} {json.dumps(error.errors)}")
    print(f"applied {applied} events, skipped {skipped} already processed, "
          f"in {time.monotonic() - started:.1f} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
