"""Throttling of failed sign-ins, per account and per client address.

Plain Python over a SQLAlchemy session; the counts live in the gateway's
database so that every gateway instance sees the same ones.

After ``MAX_FAILURES`` failures within ``WINDOW`` a key is locked: the first
lock lasts ``FIRST_LOCK``, each further one in a row twice as long, up to
``MAX_LOCK``. While either the account or the address is locked, sign-ins
are refused before any password is checked, with the same answer whether or
not the account exists: an unknown email is counted and locked exactly like a
known one (the key is the normalised email, not a user id). A successful
sign-in clears the account's count (not the address's: one good password
must not buy an attacker a fresh series of guesses on other accounts).
"""
import ipaddress
import math
from datetime import timedelta
from functools import lru_cache

from sqlalchemy import delete, or_, select
from sqlalchemy.exc import IntegrityError

from crm_common.config import env
from crm_common.errors import RateLimited
from crm_common.types import utcnow

from gateway.models import SignInThrottle as ThrottleRow

MAX_FAILURES = 5
WINDOW = timedelta(minutes=15)
FIRST_LOCK = timedelta(minutes=1)
MAX_LOCK = timedelta(hours=1)
# A key quiet for this long starts again from a first (short) lock, and its row is purged.
FORGET_AFTER = timedelta(days=1)

LOCKED = "Too many failed sign-ins. Wait before trying again."


def normalise_email(email):
    return email.strip().lower()


def throttle_keys(email, address):
    """The keys a sign-in attempt counts against, in a fixed order (rows are locked in this order)."""
    keys = [f"account:{normalise_email(email)}"[:300]]
    if address:
        keys.append(f"address:{address}")
    return sorted(keys)


class SignInThrottle:
    def __init__(self, session, clock=utcnow, max_failures=MAX_FAILURES):
        self.session = session
        self._clock = clock
        self.max_failures = max_failures

    def check(self, keys):
        """RateLimited (with the seconds to wait) when any of ``keys`` is locked."""
        now = self._clock()
        locked_until = self.session.execute(
            select(ThrottleRow.locked_until).where(ThrottleRow.key.in_(keys),
                                                   ThrottleRow.locked_until > now)
        ).scalars().all()
        if locked_until:
            seconds = max(1, math.ceil((max(locked_until) - now).total_seconds()))
            error = RateLimited(LOCKED, extra={"retry_after": seconds})
            # The gateway's entrypoint adds these to the 429 (as it does for its own rate limit).
            error.rate_limit_headers = {"Retry-After": str(seconds)}
            raise error

    def failed(self, keys):
        """Count a failure against each key, locking those that reach the limit.

        The caller commits (and must, even though it then answers with an error).
        """
        now = self._clock()
        for key in keys:
            row = self._row_for_update(key, now)
            if row.locked_until is not None and row.locked_until > now:
                continue  # a concurrent attempt locked it meanwhile
            if row.locked_until is not None and now - row.locked_until > FORGET_AFTER:
                row.lockouts = 0
            if now - row.window_started_at > WINDOW:
                row.failures, row.window_started_at = 0, now
            row.failures += 1
            if row.failures >= self.max_failures:
                row.lockouts += 1
                row.locked_until = now + min(FIRST_LOCK * 2 ** (row.lockouts - 1), MAX_LOCK)
                row.failures, row.window_started_at = 0, now
            row.updated_at = now
        self._purge(now)

    def succeeded(self, email):
        self.session.execute(delete(ThrottleRow).where(ThrottleRow.key == throttle_keys(email, None)[0]))

    def _row_for_update(self, key, now):
        query = select(ThrottleRow).where(ThrottleRow.key == key).with_for_update()
        row = self.session.execute(query).scalar_one_or_none()
        if row is not None:
            return row
        try:
            with self.session.begin_nested():
                row = ThrottleRow(key=key, failures=0, window_started_at=now, lockouts=0, updated_at=now)
                self.session.add(row)
            return row
        except IntegrityError:
            # Another gateway counted the first failure of this key at the same moment.
            return self.session.execute(query).scalar_one()

    def _purge(self, now):
        # Indexed by updated_at: cheap, and it keeps the table as small as the recent failures.
        self.session.execute(delete(ThrottleRow).where(
            ThrottleRow.updated_at < now - FORGET_AFTER,
            or_(ThrottleRow.locked_until.is_(None), ThrottleRow.locked_until < now)))


# --- the client's address ----------------------------------------------------

@lru_cache(maxsize=8)
def _networks(setting):
    return tuple(ipaddress.ip_network(part.strip(), strict=False) for part in setting.split(",") if part.strip())


def trusted_proxies():
    """CRM_TRUSTED_PROXIES: comma-separated addresses or networks of the reverse proxies in front."""
    return _networks(env("CRM_TRUSTED_PROXIES", "") or "")


def _is_trusted(address, proxies):
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in network for network in proxies)


def client_address(remote_addr, forwarded_for=None, proxies=None):
    """The address a request came from: the socket peer, unless the peer is a trusted proxy.

    Behind trusted proxies the X-Forwarded-For hops are read from the right
    (the hop the nearest proxy appended) and the first one that is not itself a
    trusted proxy is the client. With one proxy that is the first hop; and
    what a client writes into the header itself never decides its address.
    """
    proxies = trusted_proxies() if proxies is None else proxies
    if not remote_addr or not forwarded_for or not _is_trusted(remote_addr, proxies):
        return remote_addr or None
    hops = [hop.strip() for hop in forwarded_for.split(",") if hop.strip()]
    for hop in reversed(hops):
        if not _is_trusted(hop, proxies):
            try:
                return str(ipaddress.ip_address(hop))
            except ValueError:
                return remote_addr  # garbage from the client: fall back to what we know
    return hops[0] if hops else remote_addr
