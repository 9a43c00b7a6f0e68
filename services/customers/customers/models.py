"""The customers service's own tables."""
from sqlalchemy import (
    DDL, Boolean, ForeignKey, Index, Integer, String, Text, UniqueConstraint, event,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, deferred, mapped_column, relationship

from crm_common.crypto import EncryptedBytes, EncryptedJson, EncryptedText
from crm_common.types import JsonDocument, UtcDateTime, Uuid, new_id, utcnow


class Base(DeclarativeBase):
    pass


class Customer(Base):
    __tablename__ = "customers"

    id: Mapped[str] = mapped_column(Uuid(), primary_key=True, default=new_id)
    kind: Mapped[str] = mapped_column(String(10))
    name: Mapped[str] = mapped_column(String(200))
    # {"name", "industry", "size", "website"}; the company a person works for,
    # or the company's own details when kind is company.
    company: Mapped[dict] = mapped_column(JsonDocument(), default=dict)
    # {"phones": [E.164...], "emails": [...], "address": {"country", "region", "city", "street", "postcode"},
    #  "id_number"}: personal data, encrypted at rest (crm_common.crypto). Nothing in SQL reads
    # inside it: exact lookup by phone/email goes through customer_identifiers' blind index.
    contact: Mapped[dict] = mapped_column(EncryptedJson(), default=dict)
    owner_id: Mapped[str | None] = mapped_column(Uuid())
    # The owner's team at assignment time: managers see their team's customers.
    owner_team_id: Mapped[str | None] = mapped_column(String(64))
    lifecycle_stage: Mapped[str] = mapped_column(String(20))
    lifecycle_changed_at: Mapped[object] = mapped_column(UtcDateTime)
    # {"lead": iso, "prospect": iso, ...}: when the customer last entered each stage.
    lifecycle_dates: Mapped[dict] = mapped_column(JsonDocument(), default=dict)
    tier: Mapped[str | None] = mapped_column(String(1))
    region: Mapped[str | None] = mapped_column(String(100))
    industry: Mapped[str | None] = mapped_column(String(100))
    source: Mapped[str | None] = mapped_column(String(100))
    notes: Mapped[str | None] = mapped_column(Text)
    custom_fields: Mapped[dict] = mapped_column(JsonDocument(), default=dict)
    # The id the customer had in the system it was imported from: imports are
    # idempotent by it.
    external_id: Mapped[str | None] = mapped_column(String(100))
    # Lower-cased, accent-free name, company and contact names: what keyword search scans.
    search_text: Mapped[str] = mapped_column(Text, default="")
    # Normalised "name|company": two customers with the same key are likely duplicates.
    dedupe_key: Mapped[str] = mapped_column(String(420), default="")
    # The earliest open next-follow-up date of the customer (None: nothing planned).
    next_followup_at: Mapped[object | None] = mapped_column(UtcDateTime)
    merged_into_id: Mapped[str | None] = mapped_column(Uuid())
    created_by: Mapped[str | None] = mapped_column(Uuid())
    created_at: Mapped[object] = mapped_column(UtcDateTime, default=utcnow)
    updated_at: Mapped[object] = mapped_column(UtcDateTime, default=utcnow)
    deleted_at: Mapped[object | None] = mapped_column(UtcDateTime)
    # Set when the person's data was erased on request (customers.personal_data): the
    # record stays, anonymised, so orders keep pointing at something.
    erased_at: Mapped[object | None] = mapped_column(UtcDateTime)
    version: Mapped[int] = mapped_column(Integer, default=1)

    tag_rows: Mapped[list["CustomerTag"]] = relationship(
        back_populates="customer", cascade="all, delete-orphan", lazy="selectin",
        order_by="CustomerTag.tag",
    )
    identifiers: Mapped[list["CustomerIdentifier"]] = relationship(
        back_populates="customer", cascade="all, delete-orphan",
    )

    # UPDATEs say "WHERE version = <what was read>": two concurrent edits of
    # one version cannot both win.
    __mapper_args__ = {"version_id_col": version}

    __table_args__ = (
        Index("ix_customers_owner_created", "owner_id", "created_at"),
        Index("ix_customers_team_created", "owner_team_id", "created_at"),
        Index("ix_customers_created", "created_at"),
        Index("ix_customers_updated", "updated_at"),
        Index("ix_customers_name", "name"),
        Index("ix_customers_dedupe_key", "dedupe_key"),
        Index("ix_customers_owner_followup", "owner_id", "next_followup_at"),
        UniqueConstraint("external_id", name="uq_customers_external_id"),
    )

    @property
    def tags(self):
        return sorted(row.tag for row in self.tag_rows)


# Keyword search on SQLite: an FTS5 trigram index over customers.search_text, so a word of 3+
# characters is looked up instead of LIKE-scanning every customer (customers.search). FTS5 rows
# need integer rowids and customers has UUIDs, and customers' own rowid is no key (VACUUM and
# alembic's batch copies renumber it), so customer_search_rows maps one to the other. Triggers
# keep both in step with every writer (the domain, the import fast path, erasure) in the
# writer's transaction. case_sensitive 1: search_text is already folded; matching its exact
# characters is what LIKE on it does. Migration 0007 makes the same objects in SQLite files
# (a batch alter of customers drops triggers: a later migration doing one must make them again).
SQLITE_SEARCH_DDL = (
    "CREATE TABLE customer_search_rows ("
    "id INTEGER PRIMARY KEY, customer_id VARCHAR(36) NOT NULL UNIQUE)",
    "CREATE VIRTUAL TABLE customer_search USING fts5(search_text, tokenize = 'trigram case_sensitive 1')",
    "CREATE TRIGGER customer_search_insert AFTER INSERT ON customers BEGIN "
    "INSERT INTO customer_search_rows (customer_id) VALUES (new.id); "
    "INSERT INTO customer_search (rowid, search_text) "
    "VALUES ((SELECT id FROM customer_search_rows WHERE customer_id = new.id), new.search_text); "
    "END",
    "CREATE TRIGGER customer_search_update AFTER UPDATE OF id, search_text ON customers BEGIN "
    "UPDATE customer_search_rows SET customer_id = new.id WHERE customer_id = old.id; "
    "UPDATE customer_search SET search_text = new.search_text "
    "WHERE rowid = (SELECT id FROM customer_search_rows WHERE customer_id = new.id); "
    "END",
    "CREATE TRIGGER customer_search_delete AFTER DELETE ON customers BEGIN "
    "DELETE FROM customer_search WHERE rowid = (SELECT id FROM customer_search_rows WHERE customer_id = old.id); "
    "DELETE FROM customer_search_rows WHERE customer_id = old.id; "
    "END",
)
for _statement in SQLITE_SEARCH_DDL:
    event.listen(Customer.__table__, "after_create", DDL(_statement).execute_if(dialect="sqlite"))


class CustomerTag(Base):
    __tablename__ = "customer_tags"

    customer_id: Mapped[str] = mapped_column(
        Uuid(), ForeignKey("customers.id", ondelete="CASCADE"), primary_key=True)
    tag: Mapped[str] = mapped_column(String(50), primary_key=True, index=True)

    customer: Mapped[Customer] = relationship(back_populates="tag_rows")


class CustomerIdentifier(Base):
    """A normalised phone or email of a customer: exact lookup and duplicate detection.

    ``value`` is the blind index of the normalised value (customers.domain.identifier_value,
    a keyed HMAC): equal values still match in SQL, the table shows no phone or email."""

    __tablename__ = "customer_identifiers"

    customer_id: Mapped[str] = mapped_column(
        Uuid(), ForeignKey("customers.id", ondelete="CASCADE"), primary_key=True)
    kind: Mapped[str] = mapped_column(String(10), primary_key=True)  # phone | email
    value: Mapped[str] = mapped_column(String(254), primary_key=True)

    customer: Mapped[Customer] = relationship(back_populates="identifiers")

    __table_args__ = (Index("ix_customer_identifiers_lookup", "kind", "value"),)


class CustomerHistory(Base):
    """One change to a customer: what changed field by field, who, when, in which request."""

    __tablename__ = "customer_history"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    customer_id: Mapped[str] = mapped_column(Uuid(), ForeignKey("customers.id", ondelete="CASCADE"))
    # created | updated | deleted | restored | assigned | merged | merged_into |
    # contact_added | contact_updated | contact_removed | followup_logged | imported
    action: Mapped[str] = mapped_column(String(30))
    # {"field": {"old": ..., "new": ...}}: old and new phones, emails, addresses, so encrypted.
    changes: Mapped[dict] = mapped_column(EncryptedJson(), default=dict)
    actor_id: Mapped[str | None] = mapped_column(Uuid())
    actor_role: Mapped[str | None] = mapped_column(String(20))
    request_id: Mapped[str | None] = mapped_column(String(128))
    occurred_at: Mapped[object] = mapped_column(UtcDateTime, default=utcnow)

    __table_args__ = (Index("ix_customer_history_customer", "customer_id", "id"),)


class CustomFieldDefinition(Base):
    """An admin-defined extra field that customers' ``custom_fields`` are checked against."""

    __tablename__ = "customer_field_definitions"

    key: Mapped[str] = mapped_column(String(50), primary_key=True)
    label: Mapped[str] = mapped_column(String(100))
    type: Mapped[str] = mapped_column(String(10))  # text | number | boolean | date | choice
    choices: Mapped[list] = mapped_column(JsonDocument(), default=list)
    required: Mapped[bool] = mapped_column(Boolean, default=False)
    created_by: Mapped[str | None] = mapped_column(Uuid())
    created_at: Mapped[object] = mapped_column(UtcDateTime, default=utcnow)


class Contact(Base):
    """A person at a company customer."""

    __tablename__ = "contacts"

    id: Mapped[str] = mapped_column(Uuid(), primary_key=True, default=new_id)
    customer_id: Mapped[str] = mapped_column(Uuid(), ForeignKey("customers.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(200))
    title: Mapped[str | None] = mapped_column(String(100))
    phones: Mapped[list] = mapped_column(EncryptedJson(), default=list)
    emails: Mapped[list] = mapped_column(EncryptedJson(), default=list)
    is_primary: Mapped[bool] = mapped_column(Boolean, default=False)
    notes: Mapped[str | None] = mapped_column(Text)
    created_by: Mapped[str | None] = mapped_column(Uuid())
    created_at: Mapped[object] = mapped_column(UtcDateTime, default=utcnow)
    updated_at: Mapped[object] = mapped_column(UtcDateTime, default=utcnow)
    version: Mapped[int] = mapped_column(Integer, default=1)

    __mapper_args__ = {"version_id_col": version}
    __table_args__ = (Index("ix_contacts_customer", "customer_id", "created_at"),)


class Followup(Base):
    """One contact with a customer (a call, a visit...): together, the relationship history."""

    __tablename__ = "followups"

    id: Mapped[str] = mapped_column(Uuid(), primary_key=True, default=new_id)
    customer_id: Mapped[str] = mapped_column(Uuid(), ForeignKey("customers.id", ondelete="CASCADE"))
    type: Mapped[str] = mapped_column(String(10))  # call | meeting | email | visit | note
    occurred_at: Mapped[object] = mapped_column(UtcDateTime)
    summary: Mapped[str] = mapped_column(Text)
    outcome: Mapped[str | None] = mapped_column(Text)
    next_followup_at: Mapped[object | None] = mapped_column(UtcDateTime)
    # The customer's owner when this was logged: whose day plan the next step lands in.
    owner_id: Mapped[str | None] = mapped_column(Uuid())
    owner_team_id: Mapped[str | None] = mapped_column(String(64))
    # Set when a later follow-up of the same customer took care of next_followup_at.
    closed_at: Mapped[object | None] = mapped_column(UtcDateTime)
    closed_by_followup_id: Mapped[str | None] = mapped_column(Uuid())
    created_by: Mapped[str | None] = mapped_column(Uuid())
    created_at: Mapped[object] = mapped_column(UtcDateTime, default=utcnow)

    __table_args__ = (
        Index("ix_followups_customer", "customer_id", "occurred_at"),
        Index("ix_followups_due", "owner_id", "next_followup_at"),
    )


class SavedView(Base):
    """A named customer filter that one user keeps."""

    __tablename__ = "customer_views"

    id: Mapped[str] = mapped_column(Uuid(), primary_key=True, default=new_id)
    user_id: Mapped[str] = mapped_column(Uuid())
    name: Mapped[str] = mapped_column(String(100))
    filters: Mapped[dict] = mapped_column(JsonDocument(), default=dict)
    sort: Mapped[str | None] = mapped_column(String(30))
    created_at: Mapped[object] = mapped_column(UtcDateTime, default=utcnow)

    __table_args__ = (UniqueConstraint("user_id", "name", name="uq_customer_views_user_name"),)


class ImportJob(Base):
    """One customer import: the uploaded file, its options, progress and final report."""

    __tablename__ = "import_jobs"

    id: Mapped[str] = mapped_column(Uuid(), primary_key=True, default=new_id)
    status: Mapped[str] = mapped_column(String(10))  # queued | running | done | failed
    filename: Mapped[str] = mapped_column(String(255))
    file_format: Mapped[str] = mapped_column(String(4))  # csv | xlsx
    # Kept until the job is done, then dropped: the file holds PII, so it is encrypted meanwhile.
    content: Mapped[bytes | None] = deferred(mapped_column(EncryptedBytes()))
    mapping: Mapped[dict] = mapped_column(JsonDocument(), default=dict)
    dry_run: Mapped[bool] = mapped_column(Boolean, default=False)
    on_duplicate: Mapped[str] = mapped_column(String(10))  # skip | update | create
    # {user_id: team_id} of the users rows may name as owner, as the gateway
    # knew them when the import started: a row's owner_team_id comes from here.
    owner_teams: Mapped[dict] = mapped_column(JsonDocument(), default=dict)
    total_rows: Mapped[int | None] = mapped_column(Integer)
    done_rows: Mapped[int] = mapped_column(Integer, default=0)
    # Rejected rows' reasons may quote a cell (a phone, an email): encrypted.
    report: Mapped[dict | None] = mapped_column(EncryptedJson())
    error: Mapped[str | None] = mapped_column(Text)
    # Who started it, as the context the rows are written with.
    created_by: Mapped[str | None] = mapped_column(Uuid())
    created_by_role: Mapped[str | None] = mapped_column(String(20))
    created_by_team_id: Mapped[str | None] = mapped_column(String(64))
    request_id: Mapped[str | None] = mapped_column(String(128))
    created_at: Mapped[object] = mapped_column(UtcDateTime, default=utcnow)
    started_at: Mapped[object | None] = mapped_column(UtcDateTime)
    # Renewed by each chunk a running job writes: a job whose heartbeat stopped died with its process.
    heartbeat_at: Mapped[object | None] = mapped_column(UtcDateTime)
    finished_at: Mapped[object | None] = mapped_column(UtcDateTime)

    __table_args__ = (Index("ix_import_jobs_status", "status", "created_at"),)


class ImportJobEvent(Base):
    """An event of a running import job, held back until the job ends (then moved to the outbox
    in the transaction that ends it): consumers catch up after the import rather than during it."""

    __tablename__ = "import_job_events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    job_id: Mapped[str] = mapped_column(Uuid())
    event_id: Mapped[str] = mapped_column(String(36))
    event_type: Mapped[str] = mapped_column(String(100))
    # Encrypted like crm_outbox.payload: moved there as stored (INSERT ... SELECT), still sealed.
    payload: Mapped[str] = mapped_column(EncryptedText())
    created_at: Mapped[object] = mapped_column(UtcDateTime)

    __table_args__ = (Index("ix_import_job_events_job", "job_id", "id"),)
