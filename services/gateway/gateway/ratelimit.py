"""Request rate limits per principal (a user, or an API key): token buckets in
each gateway instance's memory, the limit divided among the live instances.

Why in memory: counting in PostgreSQL was one UPSERT per authenticated
request, a quarter of the gateway's CPU under a read benchmark; the hot path
does no avoidable round trip (ARCHITECTURE.md 6b).

How the instances share a limit. ``L`` is a principal's limit a minute
(CRM_RATE_LIMIT_PER_MINUTE, or an API key's own), ``N`` the number of live
gateway instances. Each instance gives each principal a bucket of
``b = max(1, L/N)`` tokens that refills at ``L/N`` a minute; a request spends
one token or is refused (429). On PostgreSQL (several instances, autoscaled)
each instance writes a heartbeat row (``gateway_instances``: its id, last
seen) every ``H`` seconds (CRM_GATEWAY_HEARTBEAT_SECONDS, default 5) from a
background thread, and counts the rows seen within the last three heartbeats:
no request waits for it. A fixed instance count in the configuration would
be wrong whenever the autoscaler acts. On SQLite there is one instance
(ARCHITECTURE.md): N = 1 and no heartbeat.

Tolerance: how many answers other than 429 a principal gets.

- In any ``t`` seconds, while the same N instances run and each has counted
  them all: at most ``N*b + L*t/60``. For L >= N and t = 60 that is ``2L``,
  as with one bucket of L: a full bucket, then a minute of refill. However
  the balancer spreads the principal's requests: an uneven spread only
  lowers it (all of them on one instance: ``b + L*t/(60N)``).
- Each instance that starts within those t seconds (a restart is a start)
  adds at most ``b' * (1 + H/60)``, ``b' = max(1, L/N')`` with N' counting
  it: its buckets start full, and the others keep refilling at their larger
  old share until their next heartbeat counts it (within H seconds). E.g.
  L = 1200, scaling from two instances to three: 2400 + 400 * (1 + 5/60),
  at most 2833 in that minute.
- An instance that stops or dies adds nothing: the others widen their share
  only once its row is gone (at once after a clean stop, within three
  heartbeats after a crash), and a bucket refills at the smaller of its old
  and new share for the time before the change.
- An instance that cannot write its heartbeat (its database unreachable)
  keeps its last count; after three heartbeats the others stop counting it,
  and while that lasts it adds up to ``b`` a minute and ``b`` at once.
  Instances compare heartbeats stamped by their own clocks: clocks more than
  two heartbeats apart make that happen too.

RateLimit-Limit reports L; RateLimit-Remaining and RateLimit-Reset describe
the bucket of the instance that answered.

Plain Python over SQLAlchemy; nothing here knows about nameko.
"""
import logging
import math
import os
import secrets
import socket
import time
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import delete, func, select
from sqlalchemy.dialects import postgresql, sqlite

from crm_common.config import env
from crm_common.types import utcnow

from gateway.models import GatewayInstance

log = logging.getLogger(__name__)

DEFAULT_PER_MINUTE = 1200
DEFAULT_HEARTBEAT_SECONDS = 5.0
# An instance is live while its row was written within this many heartbeats:
# one or two late beats (a busy instance, a slow database) do not change N.
LIVE_BEATS = 3
SWEEP_EVERY = 1000


def configured_limit():
    """CRM_RATE_LIMIT_PER_MINUTE: requests per minute per principal, all gateway
    instances together (default 1200); 0 turns the default limit off."""
    return max(0, env("CRM_RATE_LIMIT_PER_MINUTE", DEFAULT_PER_MINUTE, int))


def configured_heartbeat():
    """CRM_GATEWAY_HEARTBEAT_SECONDS: how often an instance writes its heartbeat and counts the others."""
    return max(0.1, env("CRM_GATEWAY_HEARTBEAT_SECONDS", DEFAULT_HEARTBEAT_SECONDS, float))


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


def limiter_for(engine, heartbeat_seconds=DEFAULT_HEARTBEAT_SECONDS):
    """Buckets divided among the live instances on PostgreSQL; on SQLite, one instance's buckets."""
    if engine.dialect.name != "postgresql":
        return RateLimiter()
    return RateLimiter(instances=LiveInstances(engine, interval=heartbeat_seconds))


class RateLimiter:
    """Token buckets in this process: each principal's share of its limit on this instance.

    ``instances`` says how many gateway instances share each limit (None: this
    one alone); the bucket is read on every request, its count only now and then.
    """

    def __init__(self, clock=time.monotonic, instances=None):
        self._clock = clock
        self.instances = instances
        self._buckets = {}  # principal -> (tokens, updated at, share a minute then)
        self._calls = 0

    def take(self, principal, limit):
        """Spend one of ``principal``'s tokens, if there is one. ``limit``: requests a minute, all instances."""
        now = self._clock()
        share = limit / (self.instances.count() if self.instances else 1)
        # At least one token: a limit smaller than the number of instances
        # would otherwise never let a request through.
        size = max(1.0, share)
        tokens, updated, old_share = self._buckets.get(principal, (size, now, share))
        # The time since the last request refills at the smaller share: had N
        # just dropped, the larger one would pay out, for the time before,
        # tokens that the instance which left may have spent.
        tokens = min(size, tokens + (now - updated) * min(share, old_share) / 60.0)
        allowed = tokens >= 1.0
        if allowed:
            tokens -= 1.0
        # No green-thread switch between the read above and this write: the
        # bucket cannot be spent twice by concurrent requests.
        self._buckets[principal] = (tokens, now, share)
        self._sweep(now)
        rate = share / 60.0  # tokens per second from now on
        return Decision(
            allowed=allowed, limit=limit, remaining=int(tokens),
            reset=math.ceil((size - tokens) / rate),
            retry_after=0 if allowed else max(1, math.ceil((1.0 - tokens) / rate)),
        )

    def _sweep(self, now):
        """Now and then forget the buckets that are full again: a new one starts full too."""
        self._calls += 1
        if self._calls % SWEEP_EVERY:
            return
        full = [key for key, (tokens, updated, share) in self._buckets.items()
                if tokens + (now - updated) * share / 60.0 >= max(1.0, share)]
        for key in full:
            del self._buckets[key]


def new_instance_id():
    # The pid tells an operator which process; the random part keeps a restart
    # (same host, maybe the same pid in a container) from reusing a dead row.
    return f"{socket.gethostname()[:80]}:{os.getpid()}:{secrets.token_hex(4)}"


class LiveInstances:
    """How many gateway instances are running, counted from the heartbeats they write.

    ``beat`` writes this instance's row and counts the rows written within
    the last LIVE_BEATS heartbeats (itself included); the gateway calls it
    every ``interval`` seconds from a background thread, and ``leave`` when
    it stops. ``count`` is what the limiter asks on every request: the last
    count, read from memory.
    """

    def __init__(self, engine, interval=DEFAULT_HEARTBEAT_SECONDS, clock=utcnow, instance_id=None):
        self._engine = engine
        self.interval = interval
        self._clock = clock
        self.instance_id = instance_id or new_instance_id()
        self._count = None

    def count(self):
        if self._count is None:
            # A request came before the first heartbeat (the HTTP server and
            # the heartbeat thread start together): count now, once.
            try:
                return self.beat()
            except Exception:
                # Not a failed request for it: the background beat will retry.
                log.exception("could not count the gateway instances; assuming this one alone for now")
                return 1
        return self._count

    def beat(self):
        """Write this instance's heartbeat, forget the instances gone, count the live ones."""
        now = self._clock()
        since = now - timedelta(seconds=LIVE_BEATS * self.interval)
        with self._engine.begin() as connection:
            connection.execute(self._upsert(connection, now))
            # Rows of instances that died (a clean stop removes its own row).
            connection.execute(delete(GatewayInstance).where(GatewayInstance.last_seen < since))
            live = connection.execute(select(func.count()).select_from(GatewayInstance)).scalar_one()
        self._count = max(1, live)
        return self._count

    def leave(self):
        """Remove this instance's row, so the others widen their share at their next heartbeat."""
        with self._engine.begin() as connection:
            connection.execute(delete(GatewayInstance).where(GatewayInstance.id == self.instance_id))

    def _upsert(self, connection, now):
        # An atomic upsert: the first request's count and the first background
        # beat may both write the new row at once.
        dialect = postgresql if connection.dialect.name == "postgresql" else sqlite
        statement = dialect.insert(GatewayInstance).values(id=self.instance_id, last_seen=now)
        return statement.on_conflict_do_update(index_elements=[GatewayInstance.id], set_={"last_seen": now})
