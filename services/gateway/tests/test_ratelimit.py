"""Rate limits per principal: token buckets in memory (SQLite), minute windows shared in
PostgreSQL, and the 429 with its headers over HTTP."""
from gateway.ratelimit import RateLimiter, SharedWindows, configured_limit, limiter_for

from gateway_fakes import FakeNotifications
from gateway_support import assert_problem


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


def test_on_postgresql_gateway_instances_share_one_count_per_principal_and_minute(pg_url):
    from crm_common.db import make_engine
    from crm_common.migrate import upgrade

    upgrade("gateway.migrations", pg_url)
    engine = make_engine(pg_url, isolation_level="AUTOCOMMIT")  # as limiter_for makes it
    try:
        clock = Clock()
        clock.now = 60 * 1000 + 15.0  # 15 s into a minute
        one, other = SharedWindows(engine, clock=clock), SharedWindows(engine, clock=clock)
        assert isinstance(limiter_for(make_engine(pg_url)), SharedWindows)
        decisions = [one.take("user:a", 3), other.take("user:a", 3), one.take("user:a", 3), other.take("user:a", 3)]
        assert [d.allowed for d in decisions] == [True, True, True, False]
        assert [d.remaining for d in decisions] == [2, 1, 0, 0]
        assert decisions[3].headers()["Retry-After"] == "45" and decisions[3].headers()["RateLimit-Reset"] == "45"
        assert other.take("key:b", 3).allowed  # another principal has its own count
        clock.now += 45  # the next minute
        assert one.take("user:a", 3).allowed
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
