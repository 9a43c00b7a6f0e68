"""The gateway's own tables: users and their refresh tokens."""
from sqlalchemy import JSON, Boolean, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from crm_common.crypto import EncryptedText
from crm_common.types import UtcDateTime, Uuid, new_id, utcnow


class Base(DeclarativeBase):
    pass


class User(Base):
    __tablename__ = "users"

    id: Mapped[str] = mapped_column(Uuid(), primary_key=True, default=new_id)
    # Stored lower-cased, so the unique index makes emails unique regardless of case.
    email: Mapped[str] = mapped_column(String(254))
    name: Mapped[str] = mapped_column(String(200))
    role: Mapped[str] = mapped_column(String(20))
    team_id: Mapped[str | None] = mapped_column(String(64))
    # The language of what the CRM writes to this user (emails): en | zh-CN.
    language: Mapped[str] = mapped_column(String(10), default="en")
    # An inactive user keeps their records but can no longer sign in or be notified.
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    password_hash: Mapped[str] = mapped_column(String(255))
    created_at: Mapped[object] = mapped_column(UtcDateTime, default=utcnow)
    updated_at: Mapped[object] = mapped_column(UtcDateTime, default=utcnow)
    version: Mapped[int] = mapped_column(Integer, default=1)

    __table_args__ = (
        Index("ix_users_email", "email", unique=True),
        # Keyset pages of GET /users walk (created_at, id).
        Index("ix_users_created_at_id", "created_at", "id"),
        Index("ix_users_role", "role"),
    )
    __mapper_args__ = {"version_id_col": version}


class RefreshToken(Base):
    """One refresh token. Only its SHA-256 is stored: a stolen table grants nothing.

    Tokens issued from one login form a family; each use of a token marks it
    used and issues its successor in the same family. A used token presented
    again means someone kept a copy, so the whole family is revoked.
    """

    __tablename__ = "refresh_tokens"

    id: Mapped[str] = mapped_column(Uuid(), primary_key=True, default=new_id)
    token_hash: Mapped[str] = mapped_column(String(64))
    family_id: Mapped[str] = mapped_column(Uuid())
    user_id: Mapped[str] = mapped_column(Uuid(), ForeignKey("users.id", ondelete="CASCADE"))
    created_at: Mapped[object] = mapped_column(UtcDateTime, default=utcnow)
    expires_at: Mapped[object] = mapped_column(UtcDateTime)
    used_at: Mapped[object | None] = mapped_column(UtcDateTime)
    revoked_at: Mapped[object | None] = mapped_column(UtcDateTime)

    __table_args__ = (
        Index("ix_refresh_tokens_token_hash", "token_hash", unique=True),
        Index("ix_refresh_tokens_family_id", "family_id"),
        Index("ix_refresh_tokens_user_id", "user_id"),
    )


class IdempotencyRecord(Base):
    """The outcome of a POST sent with an Idempotency-Key, kept so a retry gets the same answer.

    A row without ``completed_at`` is a request still in flight (or one whose
    gateway died mid-way: it may be taken over once it is older than the
    in-flight limit).
    """

    __tablename__ = "idempotency_records"

    user_id: Mapped[str] = mapped_column(Uuid(), primary_key=True)
    key: Mapped[str] = mapped_column(String(200), primary_key=True)
    fingerprint: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[object] = mapped_column(UtcDateTime, default=utcnow)
    completed_at: Mapped[object | None] = mapped_column(UtcDateTime)
    status: Mapped[int | None] = mapped_column(Integer)
    headers: Mapped[str | None] = mapped_column(Text)
    # The whole answer, a customer's phones and emails included: encrypted at rest.
    body: Mapped[str | None] = mapped_column(EncryptedText)

    __table_args__ = (Index("ix_idempotency_records_created_at", "created_at"),)


class ApiKey(Base):
    """An integration's API key. Only the SHA-256 of its secret is stored.

    A key acts as the admin who created it, limited to its scopes
    (``customers:read`` ...), so what it creates is owned by that admin.
    """

    __tablename__ = "api_keys"

    id: Mapped[str] = mapped_column(Uuid(), primary_key=True, default=new_id)
    name: Mapped[str] = mapped_column(String(200))
    # The secret is 256 random bits: a fast hash suffices (nothing to brute-force).
    secret_hash: Mapped[str] = mapped_column(String(64))
    # Space-separated, sorted: "customers:read orders:write".
    scopes: Mapped[str] = mapped_column(Text)
    created_by: Mapped[str] = mapped_column(Uuid(), ForeignKey("users.id", ondelete="CASCADE"))
    # Requests per minute for this key; None: the gateway's default.
    rate_limit_per_minute: Mapped[int | None] = mapped_column(Integer)
    created_at: Mapped[object] = mapped_column(UtcDateTime, default=utcnow)
    expires_at: Mapped[object | None] = mapped_column(UtcDateTime)
    revoked_at: Mapped[object | None] = mapped_column(UtcDateTime)
    last_used_at: Mapped[object | None] = mapped_column(UtcDateTime)

    __table_args__ = (
        # GET /api-keys walks (created_at, id).
        Index("ix_api_keys_created_at_id", "created_at", "id"),
        Index("ix_api_keys_created_by", "created_by"),
    )


class RevokedSession(Base):
    """A signed-out session (one refresh-token family) whose access tokens must stop working.

    Access tokens are stateless JWTs carrying their session id (``sid``); every
    authenticated request looks its sid up here by primary key. A row is needed
    only while an access token of the session can still be alive, so it expires
    one access-token lifetime after the revocation and is purged after that.
    """

    __tablename__ = "revoked_sessions"

    session_id: Mapped[str] = mapped_column(Uuid(), primary_key=True)
    user_id: Mapped[str] = mapped_column(Uuid())
    revoked_at: Mapped[object] = mapped_column(UtcDateTime, default=utcnow)
    expires_at: Mapped[object] = mapped_column(UtcDateTime)

    __table_args__ = (Index("ix_revoked_sessions_expires_at", "expires_at"),)


class SignInThrottle(Base):
    """Failed sign-ins of one account (normalised email) or one client address.

    Kept in the database so that every gateway instance sees the same counts.
    ``lockouts`` counts the locks in a row: each lasts twice the previous one.
    """

    __tablename__ = "sign_in_throttles"

    key: Mapped[str] = mapped_column(String(300), primary_key=True)  # "account:<email>" | "address:<ip>"
    failures: Mapped[int] = mapped_column(Integer, default=0)
    window_started_at: Mapped[object] = mapped_column(UtcDateTime, default=utcnow)
    locked_until: Mapped[object | None] = mapped_column(UtcDateTime)
    lockouts: Mapped[int] = mapped_column(Integer, default=0)
    updated_at: Mapped[object] = mapped_column(UtcDateTime, default=utcnow)

    __table_args__ = (Index("ix_sign_in_throttles_updated_at", "updated_at"),)


class RateLimitWindow(Base):
    """Retired: requests of one principal in one minute, which gateways before
    migration 0008 counted here with one UPSERT per request. Nothing reads or
    writes it now (gateway.ratelimit keeps buckets in memory). The table stays
    for one release, because a rolling update runs old gateway instances beside
    new ones, and the old ones fail every request without it; a later
    migration drops it."""

    __tablename__ = "rate_limit_windows"

    principal: Mapped[str] = mapped_column(String(80), primary_key=True)
    minute: Mapped[int] = mapped_column(Integer, primary_key=True)  # unix time // 60
    count: Mapped[int] = mapped_column(Integer, default=0)

    __table_args__ = (Index("ix_rate_limit_windows_minute", "minute"),)


class GatewayInstance(Base):
    """A running gateway instance's heartbeat (gateway.ratelimit.LiveInstances):
    each instance divides the rate limits by the number of rows seen lately."""

    __tablename__ = "gateway_instances"

    id: Mapped[str] = mapped_column(String(120), primary_key=True)  # host:pid:random, new at each start
    last_seen: Mapped[object] = mapped_column(UtcDateTime)


class AuditEntry(Base):
    """One entry of the audit trail: who did what to which record, when and from where.

    Entries come from every service (event ``audit.recorded``, whose event id
    is this id, so a redelivered event inserts nothing) and from the gateway
    itself (sign-ins, users, API keys, refusals). The database refuses UPDATE
    and DELETE on this table (a trigger, migration 0006): entries are never
    changed. Values of PII fields are masked before they get here.
    """

    __tablename__ = "audit_entries"

    id: Mapped[str] = mapped_column(Uuid(), primary_key=True, default=new_id)
    occurred_at: Mapped[object] = mapped_column(UtcDateTime, default=utcnow)
    service: Mapped[str] = mapped_column(String(40))
    actor_id: Mapped[str | None] = mapped_column(String(64))
    actor_role: Mapped[str | None] = mapped_column(String(20))
    api_key_id: Mapped[str | None] = mapped_column(String(64))
    client_ip: Mapped[str | None] = mapped_column(String(64))
    request_id: Mapped[str | None] = mapped_column(String(64))
    entity_type: Mapped[str] = mapped_column(String(60))
    entity_id: Mapped[str | None] = mapped_column(String(64))
    action: Mapped[str] = mapped_column(String(100))
    outcome: Mapped[str] = mapped_column(String(10), default="success")  # success | failure | refused
    changes: Mapped[object | None] = mapped_column(JSON)
    detail: Mapped[object | None] = mapped_column(JSON)

    __table_args__ = (
        # GET /audit pages newest first on (occurred_at, id); each filter narrows by one column.
        Index("ix_audit_entries_occurred_at_id", "occurred_at", "id"),
        Index("ix_audit_entries_actor_id", "actor_id", "occurred_at"),
        Index("ix_audit_entries_entity", "entity_type", "entity_id", "occurred_at"),
        Index("ix_audit_entries_action", "action", "occurred_at"),
    )
