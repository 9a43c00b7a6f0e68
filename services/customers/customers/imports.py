"""Importing customers from a table (CSV or XLSX), and the jobs that run large imports.

Every row goes through the same validation as a customer created one at a
time (``CustomerBook.prepare``). A row that fails is reported with its
spreadsheet row number, the field and the reason, and nothing of it is
written; the other rows still import.

Duplicates: a row whose external_id already belongs to a customer *is* that
customer (so running an import twice creates nothing the second time, whatever
the policy); otherwise a row sharing a phone, an email or name + company with
a live customer, or with an earlier row of the same file, is a duplicate and
``on_duplicate`` decides: skip it, update the match, or create it anyway.

Speed (the goal: 100,000 rows in under a minute): rows are handled in
chunks of 1000; each chunk looks up its external ids and duplicate keys in
one query per kind of key, and writes its new customers, tags, identifiers,
history and events in bulk (``crm_common.bulk.insert_rows``: COPY on
PostgreSQL outside eventlet, i.e. in the import runner), while the next chunk
is being validated (``ChunkWriter``). Validation takes a fast path for plain
rows (``customers.import_fastpath``, which builds exactly what the core's
schemas and ``CustomerBook.prepare`` build, and sends every row it is not sure
of through them). A background job holds its customer.imported events back
(``import_job_events``) and moves them to the outbox in the transaction that
ends the job, so the consumers catch up after the import instead of
competing with its writes. Updates (rarer) go through ``CustomerBook.update``
one by one, and their events go out at once (consumers order snapshots by
version). See loadtests/bench/import_customers.py.

Plain Python over SQLAlchemy sessions; nothing here knows about nameko.
"""
import base64
import binascii
import logging
import re
import threading
import time
from dataclasses import dataclass
from datetime import timedelta
from functools import partial
from itertools import islice

from sqlalchemy import delete, func, literal, select, update

from crm_common.audit import record_audit
from crm_common.bulk import insert_rows
from crm_common.context import RequestContext
from crm_common.db import OUTBOX_WRITTEN
from crm_common.errors import CrmError, NotFound, ValidationFailed
from crm_common.metrics import count_after_commit
from crm_common.outbox import outbox_rows, outbox_table, record_events
from crm_common.types import new_id, utcnow
from crm_common.validation import load

from crm_common import tabular
from customers.domain import PRODUCER, CustomerBook, diff, to_dict
from customers.import_fastpath import prepare_fast
from customers.import_schemas import CUSTOM_PREFIX, LIST_FIELDS, ImportJobOut, ImportOptions, is_importable
from customers.custom_fields import CustomFieldCatalogue
from customers.metrics import CUSTOMERS_IMPORTED
from customers.models import (
    Customer, CustomerHistory, CustomerIdentifier, CustomerTag, ImportJob, ImportJobEvent,
)
from customers.schemas import CustomerUpdate, default_phone_region

log = logging.getLogger(__name__)

# Up to this many data rows are imported while the caller waits; more become a job.
SYNC_ROW_LIMIT = 500
CHUNK_ROWS = 1000
DEFAULT_KIND = "person"
YIELD_EVERY_ROWS = 100
MAX_REJECTED_ENTRIES = 1000
# A running job that wrote nothing for this long has lost its process.
ABANDONED_AFTER = timedelta(minutes=10)
# New customers per customer.imported event (a few hundred KB of JSON).
IMPORTED_EVENT_BATCH = 500
# What an outbox row keeps while it is held back in import_job_events.
HELD_COLUMNS = ("event_id", "event_type", "payload", "created_at")
# Several values in one cell: "a@x.cn; b@x.cn", "vip，华东" (Chinese comma and semicolon too).
LIST_SEPARATORS = re.compile(r"[,;/，；]")
TRUE_WORDS = ("true", "yes", "y", "1", "是", "真")
FALSE_WORDS = ("false", "no", "n", "0", "否", "假")
# What a rejected row names when the core's message is about a whole group.
ERROR_PATH_TO_FIELD = {"contact.phones": "phones", "contact.emails": "emails"}

job_out = ImportJobOut()


def job_to_dict(job):
    return job_out.dump(job)


def decode_content(content_base64):
    try:
        return base64.b64decode(content_base64, validate=True)
    except (binascii.Error, TypeError, ValueError):
        raise ValidationFailed("The file did not arrive intact.", {"file": ["Not valid base64."]})


def check_mapping(header, mapping):
    """The mapping to use: every mapped column must be in the file's header (422 naming ``mapping``
    otherwise). Without a mapping, each column named like an importable field fills that field:
    an exported file imports as it is."""
    if mapping is None:
        mapping = {column: column for column in header if is_importable(column)}
        if not mapping:
            raise ValidationFailed("No column of the file is named like a customer field.", {"mapping": [
                f"Give a mapping; the file's columns are: {', '.join(header)}."]})
        return mapping
    missing = [column for column in mapping if column not in header]
    if missing:
        raise ValidationFailed("The mapping names columns the file does not have.", {"mapping": [
            f"No column {column!r} in the file; its columns are: {', '.join(header)}." for column in missing]})
    return mapping


# --- a row → the data of a customer ------------------------------------------

def split_list(text):
    return [part.strip() for part in LIST_SEPARATORS.split(text) if part.strip()]


def _custom_value(text, definition):
    """Cell text as the custom field's type wants it; text that does not convert is left for the check to refuse."""
    if definition is None:
        return text
    if definition.type == "number":
        try:
            number = float(text.replace(",", ""))
            return int(number) if number.is_integer() else number
        except ValueError:
            return text
    if definition.type == "boolean":
        word = text.strip().lower()
        return True if word in TRUE_WORDS else False if word in FALSE_WORDS else text
    return text


def row_data(fields, values, definitions):
    """The create data of one row: {field: cell} turned into the nested shape CustomerCreate takes.
    Empty cells are left out, so defaults apply on create and values stay on update."""
    data = {}
    for field, text in zip(fields, values):
        if field is None or text == "":
            continue
        value = split_list(text) if field in LIST_FIELDS else text
        if field.startswith(CUSTOM_PREFIX):
            key = field[len(CUSTOM_PREFIX):]
            data.setdefault("custom_fields", {})[key] = _custom_value(text, definitions.get(key))
        elif field.startswith("company."):
            data.setdefault("company", {})[field[len("company."):]] = value
        elif field.startswith("address."):
            data.setdefault("contact", {}).setdefault("address", {})[field[len("address."):]] = value
        elif field in ("phones", "emails"):
            data.setdefault("contact", {})[field] = value
        else:
            data[field] = value
    # Most files list people and have no kind column; a company list maps one.
    data.setdefault("kind", DEFAULT_KIND)
    return data


def _flatten(messages, path=()):
    """ValidationFailed's nested {field: {sub: [messages]}} as (dotted path, message) pairs."""
    if isinstance(messages, dict):
        for key, value in messages.items():
            # List positions (phones.2) name the list, the message names the value.
            yield from _flatten(value, path if isinstance(key, int) or str(key).isdigit() else path + (str(key),))
    elif isinstance(messages, (list, tuple)):
        for message in messages:
            yield from _flatten(message, path)
    else:
        yield ".".join(path), str(messages)


def import_field(path):
    """The import field (as the mapping names it) of an error path of the core's validation."""
    if path.startswith("custom_fields."):
        return CUSTOM_PREFIX + path[len("custom_fields."):]
    if path.startswith("contact.address."):
        return path[len("contact."):]
    return ERROR_PATH_TO_FIELD.get(path, path or "row")


# --- the import itself ---------------------------------------------------------

CUSTOMER_COLUMNS = [(column.key, attribute.key) for attribute in Customer.__mapper__.column_attrs
                    for column in attribute.columns]


@dataclass
class PreparedRow:
    """One valid row as the new customer it would become: plain values, so that
    rows can be prepared in other processes and sent back."""

    number: int
    data: dict  # the row's create data: what an update applies
    values: dict  # the customers table row
    tags: list
    identifiers: list  # [(kind, blind index of the value)], as customer_identifiers stores them
    snapshot: dict  # the customer as the API and customer.created show it

    @property
    def id(self):
        return self.values["id"]

    @property
    def external_id(self):
        return self.values["external_id"]

    @property
    def keys(self):
        """What makes another customer a duplicate of this one: phones, emails, name + company."""
        keys = list(self.identifiers)
        # A key without a name part ("|acme") says nothing (the core's rule too).
        dedupe_key = self.values["dedupe_key"]
        if dedupe_key and not dedupe_key.startswith("|"):
            keys.append(("name", dedupe_key))
        return keys


def owner_team(context, owner_teams, data):
    """The team of the row's owner, from the users the gateway listed (None: the importer's team)."""
    owner_id = data.get("owner_id")
    if owner_teams is None or not owner_id or owner_id == context.user_id:
        return None
    if owner_id not in owner_teams:
        raise ValidationFailed("The owner is not a user of this CRM.", {"owner_id": ["Unknown user."]})
    return owner_teams[owner_id]


def prepare_rows(book, fields, owner_teams, numbered_rows):
    """Validate rows as CustomerBook.create would: ([PreparedRow], [(row number, ValidationFailed)]).
    Reads nothing but the custom field definitions; writes nothing."""
    catalogue = CustomFieldCatalogue(book.session, book.context)
    definitions = catalogue.definitions()
    region = default_phone_region()
    prepared, rejected = [], []
    for count, (number, values) in enumerate(numbered_rows, 1):
        data = row_data(fields, values, definitions)
        try:
            team_id = owner_team(book.context, owner_teams, data)
            # Plain rows (most) are checked and built without marshmallow and the ORM; the others
            # (and every row that fails) take the full path, which gives the messages.
            fast = prepare_fast(book.context, catalogue, data, team_id, new_id(), region)
            if fast is None:
                customer = book.prepare(data, team_id)
        except ValidationFailed as error:
            rejected.append((number, error))
            continue
        if fast is not None:
            row_values, tags, identifiers, snapshot = fast
        else:
            customer.id, customer.version = new_id(), 1
            row_values = {column: getattr(customer, attribute) for column, attribute in CUSTOMER_COLUMNS}
            tags, identifiers = customer.tags, [(i.kind, i.value) for i in customer.identifiers]
            snapshot = to_dict(customer)
        prepared.append(PreparedRow(number=number, data=data, values=row_values, tags=tags,
                                    identifiers=identifiers, snapshot=snapshot))
        if count % YIELD_EVERY_ROWS == 0:
            # Under eventlet: let other green threads run (RPCs, the outbox relay).
            time.sleep(0)
    return prepared, rejected



class Importer:
    """Imports rows chunk by chunk, remembering across chunks what the file itself holds
    (external ids, phones, emails and name keys of earlier rows) and the report so far."""

    def __init__(self, context: RequestContext, header, mapping, on_duplicate, dry_run, owner_teams=None):
        self.context = context
        self.on_duplicate = on_duplicate
        self.dry_run = dry_run
        self.owner_teams = owner_teams
        columns = {column: field for column, field in mapping.items()}
        self.fields = [columns.get(column) for column in header]
        self.columns = {field: column for column, field in mapping.items()}
        self.report = new_report(dry_run)
        # Keys of the rows seen so far in this file → the customer id they became or matched.
        self.seen_external = {}
        self.seen_keys = {}
        self.created_ids = set()
        # A background job's id: its events wait in import_job_events until the job ends.
        self.hold_events_for = None

    # --- per chunk -----------------------------------------------------------

    def run_chunk(self, session, numbered_rows):
        """Import one chunk of (row_number, values) in ``session`` (the caller commits or rolls back)."""
        self.merge(self.write(session, self.plan(session, numbered_rows)))

    def plan(self, session, numbered_rows, prepared=None):
        """Decide each row of a chunk: rejected, skipped, created or updating a match. Reads only;
        returns what ``write`` writes. ``prepared``: the chunk already through ``prepare_rows``
        (in another process); otherwise it is prepared here."""
        if prepared is None:
            prepared = prepare_rows(CustomerBook(session, self.context), self.fields, self.owner_teams,
                                    numbered_rows)
        rows, rejected = prepared
        self.report["rows_read"] += len(rows) + len(rejected)
        for number, error in rejected:
            self._reject(number, error)
        existing = self._existing_matches(session, rows)
        created, updates = [], []
        for row in rows:
            match_id = self._match(row, existing)
            if match_id is None or (self.on_duplicate == "create" and match_id != self._external_match(row, existing)):
                self.created_ids.add(row.id)
                self._remember(row, row.id)
                created.append(row)
            elif self.on_duplicate == "update":
                self._remember(row, match_id)
                updates.append((row.number, row.data, match_id))
            else:
                self._remember(row, match_id)
                self.report["skipped"] += 1
        return created, updates

    def write(self, session, planned):
        """Insert a chunk's new customers and apply its updates; returns the outcome for ``merge``."""
        created, updates = planned
        outcome = new_report(self.dry_run)
        self._insert(session, created)
        outcome["created"] = len(created)
        if created:  # a dry run's chunk is rolled back, and so is this count
            count_after_commit(session, CUSTOMERS_IMPORTED, len(created))
        book = CustomerBook(session, self.context)
        for number, data, match_id in updates:
            self._update(session, book, number, data, match_id, outcome)
        return outcome

    def merge(self, outcome):
        """Add a chunk's write outcome to the report (in the thread that owns the report)."""
        for key in ("created", "updated", "skipped", "rejected_count"):
            self.report[key] += outcome[key]
        room = MAX_REJECTED_ENTRIES - len(self.report["rejected"])
        self.report["rejected"].extend(outcome["rejected"][:max(room, 0)])
        self.report["rejected"].sort(key=lambda entry: entry["row"])

    def _reject(self, number, error, report=None):
        report = self.report if report is None else report
        report["rejected_count"] += 1
        entries = report["rejected"]
        for path, reason in _flatten(error.errors or {"row": [error.detail]}):
            if len(entries) >= MAX_REJECTED_ENTRIES:
                return
            field = import_field(path)
            entries.append({"row": number, "field": field, "column": self.columns.get(field), "reason": reason})

    # --- duplicates ------------------------------------------------------------

    def _existing_matches(self, session, customers):
        """{("external", id) | (kind, value): customer id} of the database, in one query per kind of key."""
        found = {}
        external_ids = {customer.external_id for customer in customers if customer.external_id}
        # Deleted customers keep their external id: re-importing one must not create a second record.
        for chunk in _batches(external_ids, 1000):
            for customer_id, external_id in session.execute(
                    select(Customer.id, Customer.external_id).where(Customer.external_id.in_(chunk))):
                found[("external", external_id)] = customer_id
        identifiers, names = set(), set()
        for customer in customers:
            for kind, value in customer.keys:
                (names if kind == "name" else identifiers).add(value if kind == "name" else (kind, value))
        # Identifiers first, without joining customers (a third of the time on a large table),
        # then which of the few customers they name are live, and the oldest of those.
        holders = {}
        for kind in ("phone", "email"):
            values = {value for key_kind, value in identifiers if key_kind == kind}
            for chunk in _batches(values, 1000):
                for value, customer_id in session.execute(select(CustomerIdentifier.value, CustomerIdentifier.customer_id)
                                                          .where(CustomerIdentifier.kind == kind,
                                                                 CustomerIdentifier.value.in_(chunk))):
                    holders.setdefault((kind, value), []).append(customer_id)
        live = {}
        for chunk in _batches({customer_id for ids in holders.values() for customer_id in ids}, 1000):
            live.update(session.execute(select(Customer.id, Customer.created_at).where(
                Customer.id.in_(chunk), Customer.deleted_at.is_(None))).all())
        for key, ids in holders.items():
            oldest = min(((live[customer_id], customer_id) for customer_id in ids if customer_id in live), default=None)
            if oldest:
                found[key] = oldest[1]
        for chunk in _batches(names, 1000):
            rows = session.execute(select(Customer.dedupe_key, Customer.id).where(
                Customer.dedupe_key.in_(chunk), Customer.deleted_at.is_(None)).order_by(Customer.created_at))
            for key, customer_id in rows:
                found.setdefault(("name", key), customer_id)
        return found

    def _external_match(self, customer, existing):
        if not customer.external_id:
            return None
        return self.seen_external.get(customer.external_id) or existing.get(("external", customer.external_id))

    def _match(self, customer, existing):
        """The id of the customer this row is (by external id) or duplicates (by phone, email, name)."""
        by_external_id = self._external_match(customer, existing)
        if by_external_id:
            return by_external_id
        for key in customer.keys:
            match = self.seen_keys.get(key) or existing.get(key)
            if match:
                return match
        return None

    def _remember(self, customer, customer_id):
        if customer.external_id:
            self.seen_external.setdefault(customer.external_id, customer_id)
        for key in customer.keys:
            self.seen_keys.setdefault(key, customer_id)

    # --- writing ---------------------------------------------------------------

    def _insert(self, session, rows):
        """The new customers of a chunk, their tags, identifiers, history and events: one INSERT per table."""
        if not rows:
            return
        tags, identifiers, history = [], [], []
        now = utcnow()
        for row in rows:
            tags.extend({"customer_id": row.id, "tag": tag} for tag in row.tags)
            identifiers.extend({"customer_id": row.id, "kind": kind, "value": value}
                               for kind, value in row.identifiers)
            history.append({"customer_id": row.id, "action": "imported", "changes": diff({}, row.snapshot),
                            "actor_id": self.context.user_id, "actor_role": self.context.role,
                            "request_id": self.context.request_id, "occurred_at": now})
        # Plain rows in bulk (COPY on PostgreSQL, executemany elsewhere): the ORM's unit of work,
        # and even INSERT ... VALUES, would cost more than the validation of the rows.
        insert_rows(session, Customer.__table__, [row.values for row in rows])
        insert_rows(session, CustomerTag.__table__, tags)
        insert_rows(session, CustomerIdentifier.__table__, identifiers)
        insert_rows(session, CustomerHistory.__table__, history)
        # One event per batch of new customers rather than customer.created and
        # customer.assigned per row: 100,000 rows would be 200,000 messages, and
        # every consumer's per-message cost would then dwarf the import itself.
        events = [("customer.imported", {"customers": [row.snapshot for row in batch]})
                  for batch in _batches(rows, IMPORTED_EVENT_BATCH)]
        if self.hold_events_for is None:
            record_events(session, PRODUCER, events, self.context)
        else:
            # Written with the chunk, published when the job ends (release_held_events): the
            # consumers' work then follows the import instead of competing with its writes.
            insert_rows(session, ImportJobEvent.__table__, [
                {"job_id": self.hold_events_for, **{key: row[key] for key in HELD_COLUMNS}}
                for row in outbox_rows(PRODUCER, events, self.context)])

    def _update(self, session, book, number, data, customer_id, outcome):
        """Apply a row to the customer it matched; a row that changes nothing is skipped."""
        if self.dry_run and customer_id in self.created_ids:
            # Created by an earlier chunk of this dry run, which was rolled back: check the row as a change.
            try:
                load(CustomerUpdate, {key: value for key, value in data.items() if key not in ("owner_id", "kind")})
            except ValidationFailed as error:
                self._reject(number, error, outcome)
                return
            outcome["updated"] += 1
            return
        savepoint = session.begin_nested()
        try:
            customer = book.get(customer_id)
            changes = self._changes(customer, data)
            before = to_dict(customer)
            after = book.update(customer_id, changes) if changes else before
        except NotFound:
            savepoint.rollback()
            # A deleted customer, or one the importer may not see, keeps its external id.
            self._reject(number, ValidationFailed("", {"external_id" if data.get("external_id") else "row": [
                "Matches a customer you cannot update (deleted, or not yours)."]}), outcome)
            return
        except CrmError as error:
            savepoint.rollback()
            self._reject(number, error if isinstance(error, ValidationFailed)
                         else ValidationFailed("", {"row": [error.detail]}), outcome)
            return
        if not diff(before, after):
            savepoint.rollback()
            outcome["skipped"] += 1
            return
        savepoint.commit()
        outcome["updated"] += 1

    @staticmethod
    def _changes(customer, data):
        """The row as a PATCH: nested groups merged into what the customer has, the owner left alone
        (owners change through assignment), its kind and external id kept."""
        changes = {key: value for key, value in data.items() if key not in ("owner_id", "kind")}
        if customer.external_id and changes.get("external_id") not in (None, customer.external_id):
            # Matched by phone, email or name: the customer keeps the id its own source gave it.
            del changes["external_id"]
        if "company" in changes:
            changes["company"] = {**(customer.company or {}), **changes["company"]}
        if "contact" in changes:
            contact = {**(customer.contact or {}), **changes["contact"]}
            if "address" in changes["contact"]:
                contact["address"] = {**((customer.contact or {}).get("address") or {}),
                                      **changes["contact"]["address"]}
            changes["contact"] = contact
        return changes


def new_report(dry_run):
    return {"rows_read": 0, "created": 0, "updated": 0, "skipped": 0, "rejected": [], "rejected_count": 0,
            "dry_run": dry_run}


def _batches(values, size):
    values = list(values)
    for start in range(0, len(values), size):
        yield values[start:start + size]


def _chunks(iterable, size):
    iterator = iter(iterable)
    while chunk := list(islice(iterator, size)):
        yield chunk


# --- starting an import (the RPC) ------------------------------------------------

class Imports:
    """The import jobs as one caller may use them."""

    def __init__(self, session, context: RequestContext):
        self.session = session
        self.context = context

    def start(self, content, filename, options, owner_teams=None):
        """Import a small file now, or queue a large one as a job. Returns the job as a dict."""
        CustomerBook(self.session, self.context).require_writer()
        options = load(ImportOptions, options)
        table = tabular.read_table(content)
        options["mapping"] = check_mapping(table.header, options.get("mapping"))
        rows = table.rows()
        head = list(islice(rows, SYNC_ROW_LIMIT + 1))
        job = ImportJob(
            filename=(filename or f"import.{table.format}")[:255], file_format=table.format,
            mapping=options["mapping"], dry_run=options["dry_run"], on_duplicate=options["on_duplicate"],
            owner_teams=owner_teams or {}, created_by=self.context.user_id, created_by_role=self.context.role,
            created_by_team_id=self.context.team_id, request_id=self.context.request_id, created_at=utcnow())
        if len(head) > SYNC_ROW_LIMIT:
            # Counted when the job starts: reading a large XLSX takes longer than a request should.
            job.status, job.content = "queued", content
            self.session.add(job)
            self.session.flush()
            return job_to_dict(job)
        importer = Importer(self.context, table.header, options["mapping"], options["on_duplicate"],
                            options["dry_run"], owner_teams)
        job.started_at = utcnow()
        if options["dry_run"]:
            savepoint = self.session.begin_nested()
            importer.run_chunk(self.session, head)
            savepoint.rollback()
        else:
            importer.run_chunk(self.session, head)
        job.status, job.total_rows, job.done_rows = "done", len(head), len(head)
        job.report, job.finished_at = importer.report, utcnow()
        self.session.add(job)
        self.session.flush()
        audit_import(self.session, self.context, job.id, "done", importer.report, len(head))
        return job_to_dict(job)

    def get(self, job_id):
        """A job its creator or an admin may see (404 for anyone else, as for a missing one)."""
        job = self.session.get(ImportJob, str(job_id))
        if job is None or not (self.context.is_admin or job.created_by == self.context.user_id):
            raise NotFound(f"Import {job_id} was not found.")
        return job_to_dict(job)


def audit_import(session, context, job_id, status, report, total_rows, error=None):
    """One audit entry per import job, with its counts: new customers are written in bulk (COPY on
    PostgreSQL), past the ORM, so there is no entry per row to add up."""
    report = report or {}
    if report.get("dry_run"):
        return  # a dry run changes nothing
    detail = {"status": status, "total_rows": total_rows, "dry_run": report.get("dry_run")}
    detail.update({key: report.get(key) for key in ("rows_read", "created", "updated", "skipped", "rejected_count")})
    if error:
        detail["error"] = error
    record_audit(session, context, PRODUCER, "import.completed" if status == "done" else "import.failed",
                 "import", job_id, detail=detail, outcome="success" if status == "done" else "failure")


def _job_context(job):
    return RequestContext(request_id=job.request_id, user_id=job.created_by, role=job.created_by_role,
                          team_id=job.created_by_team_id)


# --- running queued jobs (the claim loop) ------------------------------------------

def release_held_events(session, job_ids):
    """Move the events the jobs held back to the outbox, in file order, in the caller's
    transaction (the one that ends the jobs: no event is lost, none goes out twice)."""
    held = ImportJobEvent.__table__
    for job_id in job_ids:
        moved = session.execute(outbox_table.insert().from_select(
            ["event_id", "event_type", "payload", "created_at", "attempts"],
            select(held.c.event_id, held.c.event_type, held.c.payload, literal(utcnow(), held.c.created_at.type),
                   literal(0)).where(held.c.job_id == job_id).order_by(held.c.id))).rowcount
        if moved:
            session.execute(delete(held).where(held.c.job_id == job_id))
            session.info[OUTBOX_WRITTEN] = True


def fail_abandoned_jobs(session_factory, now=None):
    """Mark failed the running jobs whose process died (no chunk written for ABANDONED_AFTER);
    returns how many. Their report is lost, but what they wrote stays: the error says so."""
    cutoff = (now or utcnow()) - ABANDONED_AFTER
    with session_factory() as session:
        failed_ids = session.execute(
            update(ImportJob)
            .where(ImportJob.status == "running",
                   func.coalesce(ImportJob.heartbeat_at, ImportJob.started_at) < cutoff)
            .values(status="failed", content=None, finished_at=utcnow(), error=(
                "The import stopped: the process running it ended. The rows counted in done_rows were "
                "imported. Run the file again: rows with an external id already imported are recognised "
                "and, with on_duplicate=skip, the others that were imported are skipped as duplicates."))
            .returning(ImportJob.id)
        ).scalars().all()
        release_held_events(session, failed_ids)
        session.commit()
        failed = len(failed_ids)
    if failed:
        log.warning("marked %d abandoned import job(s) failed", failed)
    return failed


def claim_next_job(session_factory):
    """Take the oldest queued job for this process; None when there is none.

    The claim is one conditional UPDATE (status queued → running): when two
    instances race for the same job, exactly one sees its row change.
    """
    with session_factory() as session:
        for job_id in session.execute(select(ImportJob.id).where(ImportJob.status == "queued")
                                      .order_by(ImportJob.created_at).limit(5)).scalars():
            claimed = session.execute(update(ImportJob).where(ImportJob.id == job_id, ImportJob.status == "queued")
                                      .values(status="running", started_at=utcnow())).rowcount
            session.commit()
            if claimed == 1:
                return job_id
    return None


class InlinePreparer:
    """Prepares each chunk in this process (small jobs, tests, SQLite in memory)."""

    def __init__(self, session_factory, context):
        self.session_factory = session_factory
        self.context = context

    def map(self, fields, owner_teams, chunks):
        for chunk in chunks:
            with self.session_factory() as session:
                yield prepare_rows(CustomerBook(session, self.context), fields, owner_teams, chunk)


def run_job(session_factory, job_id, chunk_rows=CHUNK_ROWS, preparer=None):
    """Run a claimed job chunk by chunk, each chunk in its own committed transaction, then store the report.

    ``preparer(context)`` gives what validates the chunks (``InlinePreparer`` by default;
    customers.import_runner passes one that spreads them over processes)."""
    try:
        _run_job(session_factory, job_id, chunk_rows, preparer or partial(InlinePreparer, session_factory))
    except Exception as error:
        log.exception("import %s failed", job_id)
        reason = error.detail if isinstance(error, CrmError) else f"The import stopped on an internal error ({type(error).__name__})."
        with session_factory() as session:
            session.execute(update(ImportJob).where(ImportJob.id == job_id).values(
                status="failed", error=reason, content=None, finished_at=utcnow()))
            # What the committed chunks wrote stays: so do their events.
            release_held_events(session, [job_id])
            job = session.get(ImportJob, job_id)
            if job is not None:
                audit_import(session, _job_context(job), job_id, "failed", job.report, job.total_rows, reason)
            session.commit()


def _run_job(session_factory, job_id, chunk_rows, make_preparer):
    with session_factory() as session:
        job = session.get(ImportJob, job_id)
        content = job.content
        context = _job_context(job)
        options = {"mapping": job.mapping, "on_duplicate": job.on_duplicate, "dry_run": job.dry_run}
        owner_teams = job.owner_teams or None
        # Made first: a process pool starts up while the rows are counted.
        preparer = make_preparer(context)
        table = tabular.read_table(content)
        job.total_rows = sum(1 for _ in table.rows())
        session.commit()
    table = tabular.read_table(content)
    importer = Importer(context, table.header, options["mapping"], options["on_duplicate"], options["dry_run"],
                        owner_teams)
    importer.hold_events_for = job_id
    writer = ChunkWriter(session_factory, importer, job_id)
    done = 0
    try:
        for prepared in preparer.map(importer.fields, owner_teams, _chunks(table.rows(), chunk_rows)):
            with session_factory() as session:
                planned = importer.plan(session, None, prepared)
            rows, rejected = prepared
            done += len(rows) + len(rejected)
            writer.start(planned, done)
    finally:
        writer.wait()
    with session_factory() as session:
        session.execute(update(ImportJob).where(ImportJob.id == job_id).values(
            status="done", report=importer.report, content=None, done_rows=done, finished_at=utcnow()))
        release_held_events(session, [job_id])
        audit_import(session, context, job_id, "done", importer.report, done)
        session.commit()


class ChunkWriter:
    """Writes one chunk in the background while the next chunk is validated.

    Validation is Python work and writing is mostly the database's, so on two
    cores the two overlap. Writes stay in file order: a chunk is written only
    after the previous one committed (its updates may touch customers the
    previous chunk created). A thread under plain Python, a green thread under
    eventlet (which yields to it whenever the validation loop yields). SQLite
    cannot share its one in-memory connection between threads: there it writes
    in line.
    """

    def __init__(self, session_factory, importer, job_id):
        self.session_factory = session_factory
        self.importer = importer
        self.job_id = job_id
        self.inline = session_factory.kw["bind"].dialect.name == "sqlite"
        self.thread = None
        self.result = None

    def start(self, planned, done_rows):
        self.wait()
        if self.inline:
            self.importer.merge(self._write(planned, done_rows))
            return
        self.thread = threading.Thread(target=self._run, args=(planned, done_rows), daemon=True)
        self.thread.start()

    def wait(self):
        """Wait for the chunk being written; its error (if any) is raised here."""
        if self.thread is None:
            return
        self.thread.join()
        self.thread = None
        outcome, error = self.result
        if error is not None:
            raise error
        self.importer.merge(outcome)

    def _run(self, planned, done_rows):
        try:
            self.result = (self._write(planned, done_rows), None)
        except Exception as error:
            self.result = (None, error)

    def _write(self, planned, done_rows):
        with self.session_factory() as session:
            outcome = self.importer.write(session, planned)
            if self.importer.dry_run:
                session.rollback()
            # Progress commits with the chunk's rows: done_rows never runs ahead of what is written.
            session.execute(update(ImportJob).where(ImportJob.id == self.job_id).values(
                done_rows=done_rows, heartbeat_at=utcnow()))
            session.commit()
        return outcome


def run_queued_jobs(session_factory, run=None):
    """Claim and run queued jobs one at a time until none is left; returns how many ran.
    ``run(job_id)`` runs a claimed job (default: ``run_job`` in this process)."""
    run = run or partial(run_job, session_factory)
    fail_abandoned_jobs(session_factory)
    ran = 0
    while (job_id := claim_next_job(session_factory)) is not None:
        run(job_id)
        ran += 1
    return ran


def fail_unfinished(session_factory, job_id, reason):
    """Mark a job failed if whatever ran it stopped without ending it; True when it did."""
    with session_factory() as session:
        failed = session.execute(update(ImportJob).where(ImportJob.id == job_id, ImportJob.status == "running")
                                 .values(status="failed", error=reason, content=None,
                                         finished_at=utcnow())).rowcount
        if failed == 1:
            release_held_events(session, [job_id])
        session.commit()
    return failed == 1
