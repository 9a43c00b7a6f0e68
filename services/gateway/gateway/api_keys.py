"""API keys for integrations: created by admins, shown once, stored hashed, scoped, revocable.

Plain Python over a SQLAlchemy session; nothing here knows about nameko.

A key is ``crm_<key id>_<secret>``. The id finds the row; the secret (256
random bits) is checked against its stored SHA-256 in constant time. A key
acts as the admin who created it (records it creates are owned by that
admin), with that user's current role and team, but only on routes its
scopes cover: ``<resource>:read`` for GET, ``<resource>:write`` for any other
method, where the resource is the route's tag (``customers``, ``orders``,
``price-lists`` ...). Routes about people and credentials (sign-in, users,
API keys, the audit log) never accept a key: a leaked integration key must
not be able to mint more keys or change who may sign in.
"""
import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import or_, select, update

from crm_common.errors import NotFound, Unauthorized, ValidationFailed
from crm_common.pagination import check_limit, keyset_page
from crm_common.types import utcnow

from gateway import audit_trail
from gateway.models import ApiKey, User

HEADER = "X-API-Key"
PREFIX = "crm"
KEY_PATTERN = re.compile(r"^crm_([0-9a-f]{32})_([A-Za-z0-9_-]{43})$")
# Tags of routes a key may never call, whatever its scopes.
KEYLESS_TAGS = frozenset({"auth", "users", "api keys", "audit"})
# Writing last_used_at on every request would turn each read into a write;
# once a minute per key is precise enough to tell a live key from a dead one.
LAST_USED_PRECISION = timedelta(minutes=1)
BAD_KEY = "The API key is not valid, has expired or has been revoked."


def scope_of(method, tags):
    """The scope a route needs from an API key ("customers:read"), or None when keys may not call it."""
    if not tags or any(tag in KEYLESS_TAGS for tag in tags):
        return None
    resource = tags[0].replace(" ", "-")
    return f"{resource}:{'read' if method == 'GET' else 'write'}"


def known_scopes(routes):
    """Every scope some route needs, sorted: what POST /api-keys accepts."""
    return sorted({scope for route in routes if not route.public
                   for scope in [scope_of(route.method, route.tags)] if scope})


def hash_secret(secret):
    return hashlib.sha256(secret.encode()).hexdigest()


@dataclass(frozen=True)
class KeyPrincipal:
    """The caller behind a valid key: its creator, limited by the key's scopes."""

    user_id: str
    role: str
    team_id: str | None
    key_id: str
    scopes: frozenset
    rate_limit_per_minute: int | None


def to_dict(key):
    return {
        "id": key.id, "name": key.name, "scopes": key.scopes.split(), "created_by": key.created_by,
        "rate_limit_per_minute": key.rate_limit_per_minute, "created_at": key.created_at,
        "expires_at": key.expires_at, "revoked_at": key.revoked_at, "last_used_at": key.last_used_at,
    }


class ApiKeys:
    def __init__(self, session, clock=utcnow, context=None):
        self.session = session
        self._clock = clock
        # Who creates and revokes keys, for the audit trail.
        self.context = context

    def create(self, creator_id, data, allowed_scopes):
        """A new key from validated ``data``; returns (ApiKey, the full key, shown this once)."""
        unknown = sorted(set(data["scopes"]) - set(allowed_scopes))
        if unknown:
            raise ValidationFailed("Some scopes do not exist.",
                                   {"scopes": [f"Unknown scope: {scope}." for scope in unknown]})
        expires_at = data.get("expires_at")
        if expires_at is not None and expires_at <= self._clock():
            raise ValidationFailed("The expiry is in the past.", {"expires_at": ["Must be in the future."]})
        key_id = secrets.token_hex(16)
        secret = secrets.token_urlsafe(32)
        key = ApiKey(id=key_id, name=data["name"], secret_hash=hash_secret(secret),
                     scopes=" ".join(sorted(set(data["scopes"]))), created_by=creator_id,
                     rate_limit_per_minute=data.get("rate_limit_per_minute"),
                     created_at=self._clock(), expires_at=expires_at)
        self.session.add(key)
        self.session.flush()
        audit_trail.write_entry(self.session, self.context, "api_key.created", "api_key", key.id, changes={
            "name": {"old": None, "new": key.name}, "scopes": {"old": None, "new": key.scopes.split()},
            "expires_at": {"old": None, "new": expires_at}})
        return key, f"{PREFIX}_{key_id}_{secret}"

    def list(self, limit=None, cursor=None):
        rows, next_cursor = keyset_page(self.session, select(ApiKey), ApiKey.created_at, ApiKey.id,
                                        descending=False, limit=check_limit(limit), cursor=cursor)
        return {"items": rows, "next_cursor": next_cursor}

    def revoke(self, key_id):
        """Revoke a key (again: no change, no error); the key answers 401 from now on."""
        key = self.session.get(ApiKey, key_id)
        if key is None:
            raise NotFound("No such API key.")
        if key.revoked_at is None:
            key.revoked_at = self._clock()
            audit_trail.write_entry(self.session, self.context, "api_key.revoked", "api_key", key.id,
                                    changes={"revoked_at": {"old": None, "new": key.revoked_at}})
        return key

    def authenticate(self, presented):
        """The KeyPrincipal of a valid key; Unauthorized for anything else (one message for every case)."""
        match = KEY_PATTERN.match(presented.strip()) if isinstance(presented, str) else None
        if match is None:
            raise Unauthorized(BAD_KEY)
        key_id, secret = match.groups()
        row = self.session.execute(
            select(ApiKey, User).join(User, User.id == ApiKey.created_by).where(ApiKey.id == key_id)
        ).one_or_none()
        # Hash and compare even without a row, so timing says nothing about which ids exist.
        stored = row.ApiKey.secret_hash if row else "0" * 64
        if not hmac.compare_digest(hash_secret(secret), stored) or row is None:
            raise Unauthorized(BAD_KEY)
        key, user = row
        now = self._clock()
        if key.revoked_at is not None or (key.expires_at is not None and key.expires_at <= now) or not user.active:
            raise Unauthorized(BAD_KEY)
        self._touch(key, now)
        return KeyPrincipal(user_id=user.id, role=user.role, team_id=user.team_id, key_id=key.id,
                            scopes=frozenset(key.scopes.split()), rate_limit_per_minute=key.rate_limit_per_minute)

    def _touch(self, key, now):
        if key.last_used_at is not None and now - key.last_used_at < LAST_USED_PRECISION:
            return
        # Conditional, so concurrent requests of one key write at most once per interval.
        self.session.execute(
            update(ApiKey)
            .where(ApiKey.id == key.id,
                   or_(ApiKey.last_used_at.is_(None), ApiKey.last_used_at < now - LAST_USED_PRECISION))
            .values(last_used_at=now)
            .execution_options(synchronize_session=False)
        )
        self.session.commit()
