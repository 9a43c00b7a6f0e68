"""Who may call the API: password hashing, access tokens, rotating refresh tokens.

Plain Python over a SQLAlchemy session; nothing here knows about nameko.

- Passwords are hashed with argon2id.
- Access tokens are JWTs signed with HS256 (and only HS256 is accepted, so a
  token claiming ``alg: none`` or another algorithm is refused), valid for 15
  minutes, carrying the user id, role and team.
- Refresh tokens are opaque random strings, stored as SHA-256 hashes. Each is
  good for one use, which returns a new pair; presenting a used one again
  revokes every token descended from the same login.
- A login starts a session: the refresh-token family. Its id travels in every
  access token as ``sid``; signing out revokes the family and lists the sid
  as revoked until the last access token of the session has expired, and
  every authenticated request looks its sid up (one primary-key read).
- Failed sign-ins are throttled per account and per client address
  (gateway.throttle).
"""
import hashlib
import logging
import os
import secrets
import tempfile
from dataclasses import dataclass
from datetime import timedelta

import jwt
from argon2 import PasswordHasher, Type
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from sqlalchemy import delete, distinct, select, update

from crm_common.config import env, var_dir
from crm_common.context import ROLES, RequestContext
from crm_common.errors import RateLimited, Unauthorized, ValidationFailed
from crm_common.types import new_id, utcnow

from gateway import audit_trail
from gateway.models import RefreshToken, RevokedSession, User
from gateway.throttle import SignInThrottle, throttle_keys

log = logging.getLogger(__name__)

ISSUER = "crm"
AUDIENCE = "crm-api"
ALGORITHM = "HS256"
ACCESS_TOKEN_TTL = timedelta(minutes=15)
REFRESH_TOKEN_TTL = timedelta(days=14)
# Tolerated clock difference between gateway instances when checking exp/iat.
CLOCK_LEEWAY = timedelta(seconds=5)
JWT_SECRET_FILE = "jwt-secret"
MIN_SECRET_BYTES = 32

# One message for every failed sign-in, so a caller cannot tell an unknown
# account from a wrong password.
BAD_CREDENTIALS = "The email or password is not correct."
BAD_ACCESS_TOKEN = "The access token is not valid or has expired; sign in again."
BAD_REFRESH_TOKEN = "The refresh token is not valid or has expired; sign in again."
WRONG_CURRENT_PASSWORD = "The current password is not correct."


# --- passwords ---------------------------------------------------------------

def _run_inline(function, *args):
    return function(*args)


class PasswordHashing:
    """argon2id hashing with OWASP's recommended minimum (19 MiB, 2 passes, 1 lane).

    One hash takes tens of milliseconds of CPU. ``run_blocking`` lets the
    caller move that work off its event loop (the gateway passes eventlet's
    thread pool); by default it runs inline.
    """

    def __init__(self, time_cost=2, memory_cost=19456, parallelism=1, run_blocking=_run_inline):
        self._hasher = PasswordHasher(time_cost=time_cost, memory_cost=memory_cost,
                                      parallelism=parallelism, type=Type.ID)
        self._run = run_blocking
        self._decoy_hash = None

    def hash(self, password):
        return self._run(self._hasher.hash, password)

    def verify(self, password_hash, password):
        try:
            return self._run(self._hasher.verify, password_hash, password)
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return False

    def needs_rehash(self, password_hash):
        return self._hasher.check_needs_rehash(password_hash)

    def spend_verify_time(self, password):
        """Take as long as a real verification, for sign-ins to unknown accounts:
        answering faster would reveal that the account does not exist."""
        if self._decoy_hash is None:
            self._decoy_hash = self.hash(secrets.token_urlsafe(16))
        self.verify(self._decoy_hash, password)


# --- the signing secret ----------------------------------------------------

def write_secret_file(path, text):
    """Create ``path`` holding ``text``, readable by the owner only (0600).

    Returns False, leaving the file alone, when it already exists. The text is
    written to a temporary file first and linked into place, so a concurrent
    reader never sees a half-written file and two writers cannot both win.
    """
    directory = os.path.dirname(path) or "."
    fd, temporary = tempfile.mkstemp(dir=directory, prefix=".tmp-")
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(text + "\n")
        try:
            os.link(temporary, path)
        except FileExistsError:
            return False
        return True
    finally:
        os.unlink(temporary)


def load_jwt_secret():
    """The key that signs access tokens: CRM_JWT_SECRET, else a random one kept in
    $CRM_VAR_DIR/jwt-secret (generated on first use, mode 0600) so tokens survive
    restarts. Several gateway instances must share one secret: set the variable."""
    secret = env("CRM_JWT_SECRET")
    if secret:
        if len(secret.encode()) < MIN_SECRET_BYTES:
            raise ValueError(f"CRM_JWT_SECRET must be at least {MIN_SECRET_BYTES} bytes long")
        return secret
    path = os.path.join(var_dir(), JWT_SECRET_FILE)
    if write_secret_file(path, secrets.token_urlsafe(48)):
        log.info("generated a JWT signing secret in %s", path)
    with open(path) as handle:
        secret = handle.read().strip()
    if len(secret.encode()) < MIN_SECRET_BYTES:
        raise ValueError(f"{path} holds fewer than {MIN_SECRET_BYTES} bytes; delete it to regenerate")
    return secret


# --- access tokens -----------------------------------------------------------

@dataclass(frozen=True)
class Principal:
    """The authenticated caller, as an access token describes it."""

    user_id: str
    role: str
    team_id: str | None
    session_id: str | None = None


def _never_revoked(session_id):
    return False


class AccessTokens:
    """Issues and verifies access tokens.

    ``is_revoked(session_id)`` tells whether a session was signed out; the
    gateway passes a lookup in its revoked_sessions table (SessionRevocations).
    """

    def __init__(self, secret, ttl=ACCESS_TOKEN_TTL, clock=utcnow, is_revoked=_never_revoked):
        self._secret = secret
        self.ttl = ttl
        self._clock = clock
        self.is_revoked = is_revoked

    @property
    def ttl_seconds(self):
        return int(self.ttl.total_seconds())

    def issue(self, user, session_id):
        now = self._clock()
        claims = {
            "iss": ISSUER,
            "aud": AUDIENCE,
            "sub": user.id,
            "role": user.role,
            "team": user.team_id,
            "sid": session_id,
            "iat": now,
            "exp": now + self.ttl,
            "jti": new_id(),
        }
        return jwt.encode(claims, self._secret, algorithm=ALGORITHM)

    def verify(self, token):
        """The Principal of a valid token; Unauthorized for anything else."""
        try:
            claims = jwt.decode(
                token,
                self._secret,
                algorithms=[ALGORITHM],  # pinned: never trust the token's own "alg"
                audience=AUDIENCE,
                issuer=ISSUER,
                leeway=CLOCK_LEEWAY,
                # Tokens from before sessions had ids are refused: the client refreshes once.
                options={"require": ["exp", "iat", "iss", "aud", "sub", "jti", "sid"]},
            )
        except jwt.InvalidTokenError:
            raise Unauthorized(BAD_ACCESS_TOKEN)
        role, team, session_id = claims.get("role"), claims.get("team"), claims["sid"]
        if (role not in ROLES or not isinstance(claims["sub"], str) or not isinstance(session_id, str)
                or not (team is None or isinstance(team, str))):
            raise Unauthorized(BAD_ACCESS_TOKEN)
        # Last, so that forged or expired tokens never cost a database read.
        if self.is_revoked(session_id):
            raise Unauthorized(BAD_ACCESS_TOKEN)
        return Principal(user_id=claims["sub"], role=role, team_id=team, session_id=session_id)


# --- refresh tokens ----------------------------------------------------------

def hash_refresh_token(token):
    # The token is 256 random bits, so a fast hash suffices: there is nothing to brute-force.
    return hashlib.sha256(token.encode()).hexdigest()


class RefreshTokens:
    def __init__(self, session, ttl=REFRESH_TOKEN_TTL, clock=utcnow, on_reuse=None):
        self.session = session
        self.ttl = ttl
        self._clock = clock
        # Called with the reused token's row before the family's revocation commits (the audit entry).
        self._on_reuse = on_reuse

    def issue(self, user_id, family_id=None):
        """A new token for ``user_id``; a new family unless ``family_id`` continues one."""
        token = secrets.token_urlsafe(32)
        now = self._clock()
        self.session.add(RefreshToken(
            token_hash=hash_refresh_token(token),
            family_id=family_id or new_id(),
            user_id=user_id,
            created_at=now,
            expires_at=now + self.ttl,
        ))
        return token

    def find(self, token):
        """The stored row of ``token`` (spent, revoked or not), or None."""
        if not isinstance(token, str) or not token:
            return None
        return self.session.execute(
            select(RefreshToken).where(RefreshToken.token_hash == hash_refresh_token(token))
        ).scalar_one_or_none()

    def rotate(self, token):
        """Spend ``token``: returns (user_id, family_id, its successor in the same family).

        A token used before means two parties hold it, one of them not the
        user: the family is revoked, committed at once (the Unauthorized that
        follows rolls the caller's transaction back), and the caller must sign
        in again.
        """
        row = self.find(token)
        now = self._clock()
        if row is None or row.revoked_at is not None or row.expires_at <= now:
            raise Unauthorized(BAD_REFRESH_TOKEN)
        # Compare-and-set, so two concurrent uses of one token cannot both succeed.
        spent = self.session.execute(
            update(RefreshToken)
            .where(RefreshToken.id == row.id, RefreshToken.used_at.is_(None))
            .values(used_at=now)
            .execution_options(synchronize_session=False)
        ).rowcount
        if spent != 1:
            self.revoke_family(row.family_id)
            if self._on_reuse is not None:
                self._on_reuse(row)
            self.session.commit()
            log.warning("refresh token reused; revoked its family %s", row.family_id)
            raise Unauthorized(BAD_REFRESH_TOKEN)
        return row.user_id, row.family_id, self.issue(row.user_id, row.family_id)

    def revoke_family(self, family_id):
        self.session.execute(
            update(RefreshToken)
            .where(RefreshToken.family_id == family_id, RefreshToken.revoked_at.is_(None))
            .values(revoked_at=self._clock())
            .execution_options(synchronize_session=False)
        )

    def live_families(self, user_id, since):
        """The sessions of ``user_id`` with a token issued after ``since`` (so maybe a live access token)."""
        return self.session.execute(
            select(distinct(RefreshToken.family_id))
            .where(RefreshToken.user_id == user_id, RefreshToken.created_at > since)
        ).scalars().all()

    def revoke_user_families(self, user_id, keep_family_id=None):
        query = update(RefreshToken).where(RefreshToken.user_id == user_id, RefreshToken.revoked_at.is_(None))
        if keep_family_id is not None:
            query = query.where(RefreshToken.family_id != keep_family_id)
        self.session.execute(query.values(revoked_at=self._clock()).execution_options(synchronize_session=False))


# --- signing out ---------------------------------------------------------------

class SessionRevocations:
    """Signed-out sessions: their refresh tokens revoked, their access tokens refused.

    A revoked session id is listed until every access token that could carry it
    has expired (one access-token lifetime, plus the clock leeway); expired
    entries are purged whenever a session is revoked.
    """

    def __init__(self, session, access_ttl=ACCESS_TOKEN_TTL, clock=utcnow):
        self.session = session
        self.access_ttl = access_ttl
        self._clock = clock
        self.refresh_tokens = RefreshTokens(session, clock=clock)

    def revoke(self, user_id, session_id):
        self.revoke_many(user_id, [session_id])

    def revoke_many(self, user_id, session_ids):
        now = self._clock()
        expires_at = now + self.access_ttl + CLOCK_LEEWAY
        for session_id in session_ids:
            self.refresh_tokens.revoke_family(session_id)
            # merge: revoking a session twice (two tabs signing out) is no error.
            self.session.merge(RevokedSession(session_id=session_id, user_id=user_id, revoked_at=now,
                                              expires_at=expires_at))
        self.session.execute(delete(RevokedSession).where(RevokedSession.expires_at < now))
        _announce_revoked(session_ids, expires_at)

    def revoke_others(self, user_id, keep_session_id):
        """Every session of ``user_id`` but ``keep_session_id`` (after a password change)."""
        since = self._clock() - self.access_ttl - CLOCK_LEEWAY
        others = [family for family in self.refresh_tokens.live_families(user_id, since)
                  if family != keep_session_id]
        self.refresh_tokens.revoke_user_families(user_id, keep_family_id=keep_session_id)
        self.revoke_many(user_id, others)

    def is_revoked(self, session_id):
        return self.session.get(RevokedSession, session_id) is not None

    def listed_since(self, since):
        """(session id, expires at) of every revocation made at or after ``since`` (all if None)
        that still matters (some access token may carry it)."""
        query = select(RevokedSession.session_id, RevokedSession.expires_at).where(
            RevokedSession.expires_at > self._clock())
        if since is not None:
            query = query.where(RevokedSession.revoked_at >= since)
        return self.session.execute(query).all()


# Revocations made by this process, announced to its RevocationList at once.
_revocation_listeners = []


def _announce_revoked(session_ids, expires_at):
    for listener in _revocation_listeners:
        listener(session_ids, expires_at)


class RevocationList:
    """The signed-out sessions, held in memory: what AccessTokens asks on every request.

    Asking revoked_sessions by primary key on every authenticated request was a
    database round trip per request: a quarter of the gateway's CPU under load.
    The list is small (a revocation matters for one access-token lifetime). It
    is read whole once, then only what was revoked since, at most every
    ``refresh_seconds`` (CRM_REVOCATION_REFRESH_SECONDS, default 1). A session
    signed out through this process is refused at once, before its transaction
    commits (if that fails, the session stays refused here until its tokens
    expire: failing closed); one signed out through another gateway instance,
    from that instance's next refresh, within ``refresh_seconds``.
    """

    # Revocations are stamped by each instance's clock: read back a margin for skew.
    OVERLAP = timedelta(seconds=30)

    def __init__(self, load, refresh_seconds=1.0, clock=utcnow):
        self._load = load  # since -> [(session id, expires at)]
        self._refresh = timedelta(seconds=refresh_seconds)
        self._clock = clock
        self._expires = {}  # session id -> expires at
        self._read_at = None
        _revocation_listeners.append(self._note)

    def close(self):
        if self._note in _revocation_listeners:
            _revocation_listeners.remove(self._note)

    def _note(self, session_ids, expires_at):
        for session_id in session_ids:
            self._expires[session_id] = expires_at

    def is_revoked(self, session_id):
        now = self._clock()
        if self._read_at is None or now - self._read_at >= self._refresh:
            since = self._read_at - self.OVERLAP if self._read_at is not None else None
            self._read_at = now  # first, so that concurrent requests do not all read
            self._note_rows(self._load(since), now)
        expires_at = self._expires.get(session_id)
        return expires_at is not None and expires_at > now

    def _note_rows(self, rows, now):
        for session_id, expires_at in rows:
            self._expires[session_id] = expires_at
        for session_id in [key for key, expires_at in self._expires.items() if expires_at <= now]:
            del self._expires[session_id]


# --- signing in --------------------------------------------------------------

@dataclass(frozen=True)
class TokenPair:
    access_token: str
    expires_in: int
    refresh_token: str
    token_type: str = "Bearer"


class SignIn:
    """Exchanges credentials, or a refresh token, for a new token pair."""

    def __init__(self, session, passwords: PasswordHashing, access_tokens: AccessTokens, throttle=None,
                 context: RequestContext | None = None):
        self.session = session
        self.passwords = passwords
        self.access_tokens = access_tokens
        self.refresh_tokens = RefreshTokens(session, on_reuse=self._audit_reuse)
        self.throttle = throttle or SignInThrottle(session)
        # The request (id, client address) the audit entries name; the actor is set per entry.
        self.context = context or RequestContext.system()

    def login(self, email, password, address=None):
        """A new session for good credentials. ``address`` is the client's, for throttling.

        A locked account or address is refused before the password is looked
        at: guessing on while locked learns nothing.
        """
        keys = throttle_keys(email, address)
        try:
            self.throttle.check(keys)
        except RateLimited:
            self._audit_failure(email, None, "locked")
            self.session.commit()  # the error rolls the worker's transaction back
            raise
        user = self.session.execute(
            select(User).where(User.email == email.strip().lower())
        ).scalar_one_or_none()
        if user is None:
            self.passwords.spend_verify_time(password)
            self._audit_failure(email, None, "unknown account")
            self._count_failure(keys)
            raise Unauthorized(BAD_CREDENTIALS)
        # An inactive user answers like a wrong password: nothing tells who has an account.
        if not self.passwords.verify(user.password_hash, password) or not user.active:
            self._audit_failure(email, user, "inactive account" if user.active is False else "wrong password")
            self._count_failure(keys)
            raise Unauthorized(BAD_CREDENTIALS)
        self.throttle.succeeded(email)
        if self.passwords.needs_rehash(user.password_hash):
            # Stronger parameters since this hash was made: upgrade it now that we know the password.
            user.password_hash = self.passwords.hash(password)
        family_id = new_id()
        audit_trail.write_entry(self.session, audit_trail.as_actor(self.context, user), "user.login_succeeded",
                                "user", user.id)
        return self._pair_for(user, family_id, self.refresh_tokens.issue(user.id, family_id))

    def check_current_password(self, user, password, address=None):
        """For a change of password: the signed-in user proves they know the current one.

        A wrong one counts as a failed sign-in (a stolen access token must not
        become a way to guess the password without limit).
        """
        keys = throttle_keys(user.email, address)
        self.throttle.check(keys)
        if not self.passwords.verify(user.password_hash, password):
            self._count_failure(keys)
            raise ValidationFailed(WRONG_CURRENT_PASSWORD, {"current_password": [WRONG_CURRENT_PASSWORD]})

    def _audit_failure(self, email, user, reason):
        """A failed sign-in: nobody is signed in, so no actor; the account tried is named (its email
        masked). Only admins read this; the caller's answer says nothing of it."""
        context = audit_trail.anonymous(self.context)
        audit_trail.write_entry(self.session, context, "user.login_failed", "user", user.id if user else None,
                                detail={"email": audit_trail.masked_email(email), "reason": reason},
                                outcome="failure")

    def _audit_reuse(self, row):
        context = audit_trail.anonymous(self.context)
        audit_trail.write_entry(self.session, context, "user.refresh_token_reused", "user", row.user_id,
                                detail={"session_id": row.family_id, "sessions_signed_out": 1},
                                outcome="refused")

    def _count_failure(self, keys):
        self.throttle.failed(keys)
        # Committed now: the error the caller raises next rolls the worker's transaction back.
        self.session.commit()

    def refresh(self, refresh_token):
        user_id, family_id, successor = self.refresh_tokens.rotate(refresh_token)
        user = self.session.get(User, user_id)
        if user is None or not user.active:
            raise Unauthorized(BAD_REFRESH_TOKEN)
        # A fresh access token carries the user's current role and team.
        return self._pair_for(user, family_id, successor)

    def logout(self, principal, refresh_token=None):
        """End the caller's session: the one of their access token, and the one of
        ``refresh_token`` when it is theirs (a client may hold a refresh token of
        another of its own sessions). Someone else's token is ignored, not revoked."""
        sessions = [principal.session_id]
        row = self.refresh_tokens.find(refresh_token) if refresh_token else None
        if row is not None and row.user_id == principal.user_id and row.family_id not in sessions:
            sessions.append(row.family_id)
        SessionRevocations(self.session, self.access_tokens.ttl).revoke_many(principal.user_id, sessions)
        audit_trail.write_entry(self.session, self.context, "user.logged_out", "user", principal.user_id,
                                detail={"sessions": len(sessions)})

    def _pair_for(self, user, family_id, refresh_token):
        return TokenPair(
            access_token=self.access_tokens.issue(user, family_id),
            expires_in=self.access_tokens.ttl_seconds,
            refresh_token=refresh_token,
        )
