"""psycopg2 cooperates with eventlet: a slow query blocks its green thread only.

A blocking driver would stall every worker of a service; this proves the
driver we ship, through the engine crm_common.db makes, under the monkey
patch ``nameko test`` (like ``nameko run``) applies.
"""
import time

import eventlet
from eventlet import patcher
from sqlalchemy import text

from crm_common.db import make_engine


def test_monkey_patch_is_applied():
    assert patcher.is_monkey_patched("socket")
    assert patcher.is_monkey_patched("thread")


def test_eight_slow_queries_run_concurrently(pg_url):
    engine = make_engine(pg_url)
    try:
        with engine.connect() as connection:  # warm up: connect outside the timing
            connection.execute(text("SELECT 1"))

        def slow_query(_):
            with engine.connect() as connection:
                connection.execute(text("SELECT pg_sleep(0.5)"))
                return True

        ticks = []

        def heartbeat():
            # Another green thread keeps running while the queries wait.
            while True:
                ticks.append(time.monotonic())
                eventlet.sleep(0.05)

        beat = eventlet.spawn(heartbeat)
        started = time.monotonic()
        results = list(eventlet.GreenPool(8).imap(slow_query, range(8)))
        elapsed = time.monotonic() - started
        beat.kill()
    finally:
        engine.dispose()

    assert results == [True] * 8
    assert elapsed < 2.0, f"8 x pg_sleep(0.5) took {elapsed:.2f}s: the driver blocks the hub"
    assert elapsed >= 0.5
    during = [t for t in ticks if started <= t <= started + elapsed]
    assert len(during) >= 5
