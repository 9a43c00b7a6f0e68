"""Read-model freshness under write load: how far behind the writes the reports are.

    .venv/bin/python loadtests/bench/report_freshness.py --rate 200 --seconds 60 --threads 24

Starts the whole system on throwaway PostgreSQL databases and a fresh RabbitMQ
vhost (as the end-to-end tests do), then writes through the gateway, a pure
client, from a thread pool paced at --rate writes per second for --seconds:
new customers (POST /customers) and placed orders (POST /orders, then
POST /orders/<id>/confirm: two writes) in turn. Prints the rate the gateway
really sustained (on a 2-core machine running every service, PostgreSQL and
RabbitMQ it may be well under the target). (An earlier mode published events
to the bus itself, posing as the services' outbox relays with envelopes read
from their databases: a benchmark must not write to the bus or read a
service's database, so it is gone.)

It prints the read-model lag from reporting's
crm_reporting_event_lag_seconds histogram (commit of the read model minus the
event's occurred_at; p50/p95/p99 interpolated within buckets, as Prometheus'
histogram_quantile does, over this run's observations only) and the end-to-end
lag: from the last write's answer (or the last publish) until the reports
(customers summary total, sales by period: orders and revenue) show the
expected totals, polled every 50 ms over HTTP.
"""
import argparse
import json
import sys
import threading
import time
import uuid
import warnings
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta, timezone
from decimal import Decimal

# nameko (imported by crm_common) warns that eventlet is deprecated on every start: noise here.
warnings.filterwarnings("ignore", message=r"\s*Eventlet is deprecated")

from crm_common.testing import wait_until  # noqa: E402
from crm_common.testing_system import ADMIN_EMAIL, ADMIN_PASSWORD, login, running_system  # noqa: E402

LAG_METRIC = "crm_reporting_event_lag_seconds"
CONSUMED = ("customer.created", "order.placed")


# --- reading the lag histogram ---------------------------------------------------

def lag_buckets(metrics_text, event_types=CONSUMED):
    """{upper bound: cumulative count} of the lag histogram, summed over the given event types."""
    buckets = {}
    for line in metrics_text.splitlines():
        if not line.startswith(LAG_METRIC + "_bucket{"):
            continue
        labels, value = line[len(LAG_METRIC + "_bucket{"):].rsplit("} ", 1)
        pairs = dict(part.split("=", 1) for part in labels.split(",") if "=" in part)
        if pairs.get("event_type", "").strip('"') not in event_types:
            continue
        bound = float(pairs["le"].strip('"'))
        buckets[bound] = buckets.get(bound, 0.0) + float(value)
    return buckets


def quantile(fraction, buckets):
    """histogram_quantile: linear interpolation inside the bucket the rank falls in."""
    bounds = sorted(buckets)
    if not bounds or buckets[bounds[-1]] == 0:
        return None
    rank = fraction * buckets[bounds[-1]]
    lower_bound, lower_count = 0.0, 0.0
    for bound in bounds:
        count = buckets[bound]
        if count >= rank:
            if bound == float("inf"):
                return lower_bound  # beyond the last finite bucket: its bound is all we know
            if count == lower_count:
                return bound
            return lower_bound + (bound - lower_bound) * (rank - lower_count) / (count - lower_count)
        lower_bound, lower_count = bound, count
    return bounds[-1]


def lag_summary(before, after):
    delta = {bound: after.get(bound, 0.0) - before.get(bound, 0.0) for bound in after}
    count = delta.get(float("inf"), 0)
    if not count:
        return "no observations of crm_reporting_event_lag_seconds (is it exported?)"
    p50, p95, p99 = (quantile(f, delta) for f in (0.5, 0.95, 0.99))
    return f"{int(count)} events: p50 {p50 * 1000:.0f} ms, p95 {p95 * 1000:.0f} ms, p99 {p99 * 1000:.0f} ms"


# --- writing -------------------------------------------------------------------

class Pacer:
    """Hands out start times ``1 / rate`` apart; a caller that is late starts at once (no catching up in bursts)."""

    def __init__(self, rate, seconds):
        self.interval = 1.0 / rate
        self.next = time.monotonic()
        self.deadline = self.next + seconds
        self.lock = threading.Lock()

    def wait(self):
        """Sleep until this caller's slot; False when the run is over."""
        with self.lock:
            now = time.monotonic()
            if now >= self.deadline:
                return False
            slot = max(self.next, now)
            self.next = slot + self.interval
        delay = slot - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        return True


class Tally:
    def __init__(self):
        self.lock = threading.Lock()
        self.writes = self.failures = self.customers = self.orders = 0
        self.revenue = Decimal(0)
        self.last_answer = None
        self.errors = {}

    def add(self, writes=1, customers=0, orders=0, revenue=Decimal(0)):
        with self.lock:
            self.writes += writes
            self.customers += customers
            self.orders += orders
            self.revenue += revenue
            self.last_answer = time.monotonic()

    def fail(self, what):
        with self.lock:
            self.failures += 1
            self.errors[what] = self.errors.get(what, 0) + 1
            self.last_answer = time.monotonic()


def new_customer_body(n):
    return {"kind": "company", "name": f"Freshness Co {n} {uuid.uuid4().hex[:6]}", "region": "east",
            "tier": "B", "source": "web"}


def order_body(customer_id):
    return {"customer_id": customer_id, "currency": "CNY",
            "lines": [{"description": "Bench widget", "quantity": "2", "unit_price": "50.00"}]}


def place_order(api, customer_id):
    """Create and confirm an order; returns the confirmed order or raises."""
    created = api.post("/orders", json=order_body(customer_id))
    if created.status_code != 201:
        raise RuntimeError(f"POST /orders {created.status_code} {created.text[:200]}")
    confirmed = api.post(f"/orders/{created.json()['id']}/confirm")
    if confirmed.status_code != 200:
        raise RuntimeError(f"confirm {confirmed.status_code} {confirmed.text[:200]}")
    return confirmed.json()


def seed_customers(api, count):
    """Customers the orders are placed for: sales must know them first (its replica is fed by events)."""
    ids = []
    for n in range(count):
        response = api.post("/customers", json=new_customer_body(n))
        assert response.status_code == 201, response.text
        ids.append(response.json()["id"])

    def sales_knows(customer_id):
        try:
            return place_order(api, customer_id)
        except RuntimeError:
            return None

    orders = [wait_until(lambda: sales_knows(customer_id), 30, interval=0.1,
                         message="sales knows the customer") for customer_id in ids]
    return ids, orders


def api_writes(api, rate, seconds, threads, customer_ids, tally):
    """Write at ``rate`` per second from ``threads`` threads: customer, order + confirm, customer, ..."""
    pacer = Pacer(rate, seconds)
    counter = iter(range(10 ** 9))
    counter_lock = threading.Lock()

    def worker():
        while True:
            with counter_lock:
                n = next(counter)
            # One cycle in two creates a customer (1 write), the other places an order (2 writes).
            if n % 2 == 0:
                if not pacer.wait():
                    return
                try:
                    response = api.post("/customers", json=new_customer_body(n), timeout=30)
                except Exception as error:
                    tally.fail(f"POST /customers {type(error).__name__}")
                    continue
                if response.status_code == 201:
                    tally.add(customers=1)
                else:
                    tally.fail(f"POST /customers {response.status_code}")
            else:
                if not pacer.wait():
                    return
                try:
                    created = api.post("/orders", json=order_body(customer_ids[n % len(customer_ids)]), timeout=30)
                    if created.status_code != 201:
                        tally.fail(f"POST /orders {created.status_code}")
                        continue
                    tally.add()
                    if not pacer.wait():
                        return  # the run ended between create and confirm: a draft order, not counted
                    confirmed = api.post(f"/orders/{created.json()['id']}/confirm", timeout=30)
                except Exception as error:
                    tally.fail(f"order {type(error).__name__}")
                    continue
                if confirmed.status_code == 200:
                    tally.add(orders=1, revenue=Decimal(confirmed.json()["total"]))
                else:
                    tally.fail(f"confirm {confirmed.status_code}")

    started = time.monotonic()
    with ThreadPoolExecutor(threads) as pool:
        for future in [pool.submit(worker) for _ in range(threads)]:
            future.result()
    return tally, time.monotonic() - started


# --- reading the reports -------------------------------------------------------------

def report_totals(api):
    """(customers, CNY orders, CNY revenue) as the reports show them now."""
    today = datetime.now(timezone.utc).date()
    summary = api.get("/reports/customers/summary")
    sales = api.get("/reports/sales/by-period", params={"from": (today - timedelta(days=1)).isoformat(),
                                                        "to": (today + timedelta(days=1)).isoformat()})
    if summary.status_code != 200 or sales.status_code != 200:
        raise RuntimeError(f"reports answered {summary.status_code} {summary.text[:200]} / "
                           f"{sales.status_code} {sales.text[:200]}")
    cny = [row for row in sales.json()["totals"] if row["currency"] == "CNY"]
    return (summary.json()["total"], cny[0]["orders"] if cny else 0,
            Decimal(cny[0]["revenue"]) if cny else Decimal(0))


def end_to_end(api, expected, since, timeout):
    """Seconds from ``since`` until the reports show ``expected``, or None after ``timeout``."""
    deadline = time.monotonic() + timeout
    seen = None
    while time.monotonic() < deadline:
        seen = report_totals(api)
        if seen == expected:
            return time.monotonic() - since, seen
        time.sleep(0.05)
    return None, seen


class BacklogWatch:
    """Samples, once a second during the run, how many written events the reports do not show yet."""

    def __init__(self, api, baseline):
        self.api, self.baseline = api, baseline
        self.tally = None
        self.worst = (0, 0.0)  # (events behind, seconds into the run)
        self.stopped = threading.Event()
        self.started = time.monotonic()
        self.thread = threading.Thread(target=self.run, daemon=True)

    def run(self):
        while not self.stopped.wait(1.0):
            if self.tally is None:
                continue
            with self.tally.lock:
                written = self.tally.customers + self.tally.orders
            try:
                customers, orders, _ = report_totals(self.api)
            except Exception:
                continue
            behind = written - (customers - self.baseline[0]) - (orders - self.baseline[1])
            if behind > self.worst[0]:
                self.worst = (behind, time.monotonic() - self.started)


def measure(system, admin, args, customer_ids):
    metrics_before_text = system.metrics("reporting")
    metrics_before = lag_buckets(metrics_before_text)
    baseline = report_totals(admin)
    watch = BacklogWatch(admin, baseline)
    watch.tally = Tally()
    watch.thread.start()
    tally, elapsed = api_writes(admin, args.rate, args.seconds, args.threads, customer_ids, watch.tally)
    last = tally.last_answer
    print(f"\n[api] {tally.writes} writes in {elapsed:.1f} s through the gateway = "
          f"{tally.writes / elapsed:.1f} writes/s sustained (target {args.rate}/s, {args.threads} threads); "
          f"{tally.customers} customers, {tally.orders} orders placed, {tally.failures} failed "
          f"{json.dumps(tally.errors) if tally.errors else ''}", flush=True)
    expected = (baseline[0] + tally.customers, baseline[1] + tally.orders, baseline[2] + tally.revenue)
    shown = report_totals(admin)
    behind_at_end = expected[0] - shown[0] + expected[1] - shown[1]
    seconds, seen = end_to_end(admin, expected, last, args.timeout)
    watch.stopped.set()
    watch.thread.join()
    print(f"[api] largest backlog seen (sampled each second): {watch.worst[0]} events not yet in the reports "
          f"{watch.worst[1]:.0f} s into the run")
    if seconds is None:
        print(f"[api] end to end: the reports did not reach {expected} within {args.timeout:.0f} s "
              f"(last seen {seen})")
    else:
        print(f"[api] end to end: reports showed the expected totals {seconds * 1000:.0f} ms after the last "
              f"write answered "
              f"(customers {expected[0]}, CNY orders {expected[1]}, revenue {expected[2]})")
        if behind_at_end > 0 and seconds > 0:
            print(f"[api] when the writes stopped the reports lacked {behind_at_end} events; reporting caught up "
                  f"at {behind_at_end / seconds:.0f} events/s (with the writers' CPU free again)")
        events = tally.customers + tally.orders
        print(f"[api] reporting consumed {events} events in {elapsed + seconds:.1f} s = "
              f"{events / (elapsed + seconds):.1f} events/s (from the first write until the reports caught up)")
    metrics_after = system.metrics("reporting")
    print(f"[api] read-model lag (crm_reporting_event_lag_seconds, customer.created + order.placed): "
          f"{lag_summary(metrics_before, lag_buckets(metrics_after))}", flush=True)
    for event_type in CONSUMED:
        lag = lag_summary(lag_buckets(metrics_before_text, (event_type,)), lag_buckets(metrics_after, (event_type,)))
        print(f"[api]   {event_type}: {lag}")
    return tally, elapsed, seconds


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rate", type=float, default=200.0, help="target writes per second")
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--threads", type=int, default=24, help="writer threads")
    parser.add_argument("--timeout", type=float, default=300.0, help="give the reports this long to catch up")
    args = parser.parse_args()

    with running_system("bench", test_timers=False) as system:
        print(f"system running at {system.gateway_url} (logs in {system.workdir})", flush=True)
        admin = login(system, ADMIN_EMAIL, ADMIN_PASSWORD)
        # Orders are placed for these.
        customer_ids, _ = seed_customers(admin, 20)
        # Start from a caught-up read model, so the baseline totals are the real ones.
        wait_until(lambda: report_totals(admin)[:2] == (20, 20), 60, interval=0.1,
                   message="the reports show the seeded customers and orders")
        tally, elapsed, seconds = measure(system, admin, args, customer_ids)
    fresh = f"{seconds * 1000:.0f} ms" if seconds is not None else "not reached"
    print(f"\nsummary: {tally.writes / elapsed:.1f}/s gateway writes; reports fresh after {fresh}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
