"""Rate limits per principal: token buckets in each instance's memory, the limit
divided among the live instances (counted by heartbeats), and the 429 with its
headers over HTTP."""
from datetime import datetime, timedelta, timezone

from sqlalchemy import select

from gateway.models import GatewayInstance
from gateway.ratelimit import LiveInstances, RateLimiter, configured_limit, limiter_for

from gateway_fakes import FakeNotifications
from gateway_support import assert_problem, wait_for


class Clock:
    now = 1000.0

    def __call__(self):
        return self.now


def test_a_burst_up_to_the_limit_passes_then_refills_at_the_limit_per_minute():
    clock = Clock()
    limiter = RateLimiter(clock=clock)
    decisions = [limiter.take("user:a", 3) for _ in range(4)]
    assert [d.allowed for d in decisions] == [True, True, True, False]
    assert [d.remaining for d in decisions[:3]] == [2, 1, 0]
    refused = decisions[3]
    assert refused.retry_after == 20 and refused.headers()["Retry-After"] == "20"
    assert refused.headers()["RateLimit-Limit"] == "3" and refused.headers()["RateLimit-Remaining"] == "0"
    assert limiter.take("user:b", 3).allowed  # another principal has its own bucket
    clock.now += 20
    assert limiter.take("user:a", 3).allowed
    assert not limiter.take("user:a", 3).allowed


def test_the_limit_comes_from_the_environment_and_zero_turns_it_off(monkeypatch):
    assert configured_limit() == 1200
    monkeypatch.setenv("CRM_RATE_LIMIT_PER_MINUTE", "90")
    assert configured_limit() == 90
    monkeypatch.setenv("CRM_RATE_LIMIT_PER_MINUTE", "0")
    assert configured_limit() == 0


class Instances:
    """A fixed count of live gateway instances, as LiveInstances reports it."""

    def __init__(self, count):
        self.live = count

    def count(self):
        return self.live


def test_each_instance_holds_its_share_of_the_limit_and_refills_at_its_share():
    clock, instances = Clock(), Instances(2)
    one, other = RateLimiter(clock=clock, instances=instances), RateLimiter(clock=clock, instances=instances)
    # A limit of 6 over two instances: a bucket of 3 on each, refilled at 3 a minute.
    decisions = [limiter.take("key:a", 6) for _ in range(4) for limiter in (one, other)]
    assert [d.allowed for d in decisions] == [True] * 6 + [False] * 2
    assert [d.remaining for d in decisions[:6]] == [2, 2, 1, 1, 0, 0]
    # The header names the principal's limit; Remaining and Reset are this instance's bucket.
    assert decisions[0].headers()["RateLimit-Limit"] == "6" and decisions[0].reset == 20
    assert decisions[6].retry_after == 20 and decisions[6].headers()["Retry-After"] == "20"
    clock.now += 20
    assert [one.take("key:a", 6).allowed for _ in range(2)] == [True, False]


def test_a_limit_smaller_than_the_number_of_instances_still_serves_one_request_per_instance():
    clock = Clock()
    limiter = RateLimiter(clock=clock, instances=Instances(4))
    decisions = [limiter.take("key:a", 2) for _ in range(2)]
    assert [d.allowed for d in decisions] == [True, False]
    assert decisions[1].retry_after == 120  # half a request a minute here
    clock.now += 120
    assert limiter.take("key:a", 2).allowed


def test_when_an_instance_joins_the_bucket_shrinks_and_when_one_leaves_it_grows_only_by_refill():
    clock, instances = Clock(), Instances(2)
    limiter = RateLimiter(clock=clock, instances=instances)
    assert limiter.take("user:a", 60).remaining == 29
    instances.live = 3  # a bucket of 20 now
    assert limiter.take("user:a", 60).remaining == 19
    assert sum(limiter.take("user:a", 60).allowed for _ in range(30)) == 19
    clock.now += 10
    instances.live = 1
    # The 10 s before the change refill at the smaller share (20 a minute), not 60:
    # the instances that left may have spent theirs meanwhile.
    assert sum(limiter.take("user:a", 60).allowed for _ in range(10)) == 3
    clock.now += 10  # from now on, 60 a minute
    assert sum(limiter.take("user:a", 60).allowed for _ in range(20)) == 10


def admitted_per_sliding_minute(admitted_at):
    """The most requests admitted within any 60 seconds (times in seconds, sorted)."""
    most, first = 0, 0
    for last, at in enumerate(admitted_at):
        while at - admitted_at[first] >= 60:
            first += 1
        most = max(most, last - first + 1)
    return most


def test_over_any_minute_and_however_the_requests_are_spread_a_principal_gets_at_most_twice_the_limit():
    """The documented tolerance for a stable set of instances: N*b + L*t/60, 2L for t = 60."""
    import random

    random.seed(7)
    limit = 100
    for count in (1, 2, 3, 5):
        clock = Clock()
        limiters = [RateLimiter(clock=clock, instances=Instances(count)) for _ in range(count)]
        weights = [random.random() ** 3 for _ in limiters]  # an uneven balancer
        admitted_at = []
        for _ in range(20000):
            clock.now += random.expovariate(30.0)  # about 30 requests a second, in bursts
            if random.choices(limiters, weights)[0].take("user:a", limit).allowed:
                admitted_at.append(clock.now)
        assert admitted_per_sliding_minute(admitted_at) <= 2 * limit, count


def test_a_joining_instance_adds_at_most_its_share_and_the_others_refill_until_their_next_heartbeat():
    """The documented tolerance for a start: 2L + b' * (1 + H/60) in the minute around it.

    Instances really count each other by heartbeats (LiveInstances on one
    database, one fake clock), each beating every H seconds at its own phase."""
    from crm_common.db import make_engine
    from gateway.models import Base

    engine = make_engine("sqlite://")
    Base.metadata.create_all(engine)
    wall, monotonic = WallClock(), Clock()
    heartbeat, limit = 5.0, 120

    def start(name):
        instances = LiveInstances(engine, interval=heartbeat, clock=wall, instance_id=name)
        instances.beat()
        return RateLimiter(clock=monotonic, instances=instances)

    limiters = [start("a"), start("b")]
    for limiter in limiters:
        limiter.instances.beat()
    step = 0.05
    # Each instance beats every H seconds at a phase of its own.
    next_beat = [heartbeat, heartbeat / 2]
    admitted_at = []
    for tick in range(int(240 / step)):
        now = tick * step
        monotonic.now, wall.now = 1000.0 + now, WallClock.start + timedelta(seconds=now)
        # A third instance joins between the others' beats; each counts it at its next one.
        if tick == int(61 / step):
            limiters.append(start("c"))
            next_beat.append(now + heartbeat)
        for index, limiter in enumerate(limiters):
            if now >= next_beat[index]:
                limiter.instances.beat()
                next_beat[index] += heartbeat
        # The worst case: the principal waits until the join, with every bucket
        # full, then asks every instance as often as its bucket allows.
        if len(limiters) < 3:
            continue
        for limiter in limiters:
            while limiter.take("user:a", limit).allowed:
                admitted_at.append(now)
    assert [limiter.instances.count() for limiter in limiters] == [3, 3, 3]
    bound = 2 * limit + (limit / 3) * (1 + heartbeat / 60)
    most = admitted_per_sliding_minute(admitted_at)
    assert 2 * limit < most <= bound, (most, bound)


class WallClock:
    start = datetime(2026, 12, 7, 12, 0, tzinfo=timezone.utc)

    def __init__(self):
        self.now = self.start

    def __call__(self):
        return self.now


def live_instances(engine, name, clock, heartbeat=5.0):
    return LiveInstances(engine, interval=heartbeat, clock=clock, instance_id=name)


def test_instances_count_the_heartbeats_of_the_last_three_intervals_and_a_clean_stop_at_once():
    from crm_common.db import make_engine
    from gateway.models import Base

    engine = make_engine("sqlite://")
    Base.metadata.create_all(engine)
    clock = WallClock()
    a, b, c = (live_instances(engine, name, clock) for name in "abc")
    assert a.count() == 1  # the first ask counts (and writes a's heartbeat)
    assert b.beat() == 2 and a.count() == 1  # a learns of b at its own next beat, not before
    assert a.beat() == 2
    assert c.beat() == 3
    clock.now += timedelta(seconds=14)  # c missed two beats: still live
    assert a.beat() == 3 and b.beat() == 3
    clock.now += timedelta(seconds=2)  # 16 s since c's last beat: three heartbeats, c is gone
    assert a.beat() == 2
    b.leave()
    assert a.beat() == 1
    # The rows of instances gone are deleted, not only left out of the count.
    with engine.connect() as connection:
        assert connection.execute(select(GatewayInstance.id)).scalars().all() == ["a"]


def test_the_backend_follows_the_database(pg_url):
    from crm_common.db import make_engine
    from crm_common.migrate import upgrade

    assert limiter_for(make_engine("sqlite://")).instances is None  # SQLite: one instance
    upgrade("gateway.migrations", pg_url)
    engine = make_engine(pg_url)
    try:
        one, other = limiter_for(engine), limiter_for(engine)
        assert one.instances.count() == 1 and other.instances.count() == 2
        assert one.instances.beat() == 2 and one.instances.beat() == 2  # the same row, written again
        assert [one.take("user:a", 4).allowed for _ in range(3)] == [True, True, False]
        other.instances.leave()
        assert one.instances.beat() == 1
    finally:
        engine.dispose()


def test_over_the_limit_a_user_gets_429_with_retry_after_and_ratelimit_headers(start_gateway, monkeypatch):
    monkeypatch.setenv("CRM_RATE_LIMIT_PER_MINUTE", "3")
    gateway = start_gateway()
    token = gateway.login()["access_token"]
    answers = [gateway.get("/api/v1/me", token=token) for _ in range(4)]
    assert [a.status_code for a in answers] == [200, 200, 200, 429]
    assert [a.headers["RateLimit-Remaining"] for a in answers] == ["2", "1", "0", "0"]
    assert all(a.headers["RateLimit-Limit"] == "3" for a in answers)
    refused = assert_problem(answers[3], 429, "rate_limited")
    assert int(answers[3].headers["Retry-After"]) == 20 and "3" in refused["detail"]
    # Public routes (sign-in has its own throttle) are not counted against the user.
    assert gateway.get("/health").status_code == 200


def test_a_key_has_its_own_limit(gateway, admin_token, start_fake):
    start_fake(FakeNotifications)
    created = gateway.post("/api/v1/api-keys", token=admin_token,
                           json={"name": "slow", "scopes": ["notifications:read"], "rate_limit_per_minute": 2})
    key = {"X-API-Key": created.json()["key"]}
    statuses = [gateway.get("/api/v1/me", token=admin_token).status_code]
    for _ in range(3):
        statuses.append(gateway.get("/api/v1/notifications", headers=key).status_code)
    assert statuses == [200, 200, 200, 429]
    # The admin's own allowance is untouched by the key's.
    assert gateway.get("/api/v1/me", token=admin_token).headers["RateLimit-Limit"] == "1200"


def test_on_postgresql_a_gateway_beats_while_it_runs_and_removes_its_heartbeat_when_it_stops(
        start_gateway, pg_url, monkeypatch):
    from crm_common.db import make_engine

    monkeypatch.setenv("CRM_GATEWAY_HEARTBEAT_SECONDS", "0.2")
    gateway = start_gateway(db_url=pg_url)
    engine = make_engine(pg_url)

    def heartbeats():
        with engine.connect() as connection:
            return connection.execute(select(GatewayInstance.last_seen)).scalars().all()

    try:
        wait_for(lambda: len(heartbeats()) == 1, 10, message="the gateway's first heartbeat")
        first = heartbeats()[0]
        wait_for(lambda: heartbeats()[0] > first, 10, message="a later heartbeat")
        assert "crm_gateway_live_instances 1.0" in gateway.get("/metrics").text
        gateway.container.stop()
        assert heartbeats() == []
    finally:
        engine.dispose()
