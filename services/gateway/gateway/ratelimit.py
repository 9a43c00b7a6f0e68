"""Request rate limits per principal (a user, or an API key), in two backends.

Which one runs follows the gateway's database, because that decides how many
gateway instances there can be:

- PostgreSQL (deployments; several instances, autoscaled): one shared
  counter per principal and minute in the ``rate_limit_windows`` table, one
  UPSERT per authenticated request. Every instance sees the same count, so
  the limit holds however many instances run (a fixed count of instances to
  divide the limit by would be wrong as soon as the autoscaler acts). The
  window is fixed (the calendar minute): at a window's edge a principal may
  send up to twice the limit within a few seconds, and never more.
- SQLite (one instance only, see ARCHITECTURE.md): a token bucket in memory.
  A counter written on every request would queue every read behind SQLite's
  single writer lock. Each principal's bucket holds ``limit`` tokens and
  refills at ``limit`` per minute. A restart refills the buckets.

Plain Python over SQLAlchemy; nothing here knows about nameko.
"""
import math
import time
from dataclasses import dataclass

from sqlalchemy import delete
from sqlalchemy.dialects.postgresql import insert

from crm_common.config import env
from crm_common.db import make_engine

from gateway.models import RateLimitWindow

DEFAULT_PER_MINUTE = 1200
# Buckets untouched this long are full again and can be forgotten.
IDLE_SECONDS = 60.0
SWEEP_EVERY = 1000


def configured_limit():
    """CRM_RATE_LIMIT_PER_MINUTE: requests per minute per principal, all gateway
    instances together (default 1200); 0 turns the default limit off."""
    return max(0, env("CRM_RATE_LIMIT_PER_MINUTE", DEFAULT_PER_MINUTE, int))


@dataclass(frozen=True)
class Decision:
    allowed: bool
    limit: int
    remaining: int
    reset: int  # seconds until the bucket is full again
    retry_after: int  # seconds until one request is allowed (0 when allowed)

    def headers(self):
        """The IETF draft RateLimit-* fields (and Retry-After when refused)."""
        headers = {"RateLimit-Limit": str(self.limit), "RateLimit-Remaining": str(self.remaining),
                   "RateLimit-Reset": str(self.reset)}
        if not self.allowed:
            headers["Retry-After"] = str(self.retry_after)
        return headers


def limiter_for(engine):
    """The backend that fits the database: shared on PostgreSQL, in memory on SQLite."""
    if engine.dialect.name != "postgresql":
        return RateLimiter()
    # An engine of its own whose connections are autocommit for life: the
    # UPSERT is atomic alone, one round trip instead of BEGIN/UPSERT/COMMIT.
    # Not engine.execution_options(isolation_level=...): that resets the level
    # when the connection is checked in, and a connection cut just then raised
    # the bare driver error (unwrapped by SQLAlchemy), a 500 for a request
    # whose count was already taken.
    url = engine.url.render_as_string(hide_password=False)
    return SharedWindows(make_engine(url, pool_size=2, isolation_level="AUTOCOMMIT"))


class RateLimiter:
    """Token buckets in this process (SQLite deployments: one gateway instance)."""

    def __init__(self, clock=time.monotonic):
        self._clock = clock
        self._buckets = {}  # principal -> (tokens, updated at)
        self._calls = 0

    def take(self, principal, limit):
        """Spend one of ``principal``'s ``limit`` tokens per minute, if there is one."""
        now = self._clock()
        rate = limit / 60.0  # tokens per second
        tokens, updated = self._buckets.get(principal, (float(limit), now))
        tokens = min(float(limit), tokens + (now - updated) * rate)
        allowed = tokens >= 1.0
        if allowed:
            tokens -= 1.0
        # No green-thread switch between the read above and this write: the
        # bucket cannot be spent twice by concurrent requests.
        self._buckets[principal] = (tokens, now)
        self._sweep(now)
        return Decision(
            allowed=allowed, limit=limit, remaining=int(tokens),
            reset=math.ceil((limit - tokens) / rate),
            retry_after=0 if allowed else max(1, math.ceil((1.0 - tokens) / rate)),
        )

    def _sweep(self, now):
        self._calls += 1
        if self._calls % SWEEP_EVERY:
            return
        idle = [key for key, (_, updated) in self._buckets.items() if now - updated > IDLE_SECONDS]
        for key in idle:
            del self._buckets[key]


class SharedWindows:
    """Fixed one-minute windows counted in PostgreSQL, shared by every gateway instance."""

    def __init__(self, engine, clock=time.time):
        self._engine = engine  # autocommit (see limiter_for)
        self._clock = clock
        self._calls = 0

    def take(self, principal, limit):
        now = self._clock()
        minute = int(now // 60)
        upsert = insert(RateLimitWindow).values(principal=principal, minute=minute, count=1)
        # One statement, atomic under concurrency: the row is created or incremented, and its new count returned.
        upsert = upsert.on_conflict_do_update(
            index_elements=[RateLimitWindow.principal, RateLimitWindow.minute],
            set_={"count": RateLimitWindow.count + 1},
        ).returning(RateLimitWindow.count)
        with self._engine.connect() as connection:
            count = connection.execute(upsert).scalar_one()
            self._calls += 1
            if self._calls % SWEEP_EVERY == 0:
                connection.execute(delete(RateLimitWindow).where(RateLimitWindow.minute < minute - 1))
        reset = max(1, math.ceil((minute + 1) * 60 - now))
        allowed = count <= limit
        return Decision(allowed=allowed, limit=limit, remaining=max(0, limit - count), reset=reset,
                        retry_after=0 if allowed else reset)
