"""Report latency at volume: every report, timed over the bench data set through the gateway.

    .venv/bin/python loadtests/bench/report_latency.py [--runs 50] [--only sales-funnel,...]

Starts the whole system on copies of the bench data set (dataset.py: 100,000 customers
imported through the API, and 1,000,000 order lines, 50,000 opportunities, 200,000
follow-ups and 20,000 contracts written by the reporting service's own replay of the
events; 50 reps in 5 teams), signs in as the admin, the busiest sales rep and that rep's
manager, and runs each report --runs times after a warm-up with the filter mixes users
really send (an admin's default last 12 months and 24 months, a sales rep's own records,
a manager's team, a region filter, day and month granularity). Prints p50/p95/max in ms per
report and filter mix, the answer's JSON size, and PASS/FAIL against the p95 goal (200 ms);
exits 1 when a mix misses it.

To see where a slow report spends its time, profile the reporting service while this runs
(py-spy dump or record on its pid) and use EXPLAIN on the database a run leaves up.
"""
import argparse
import json
import statistics
import sys
import time
from collections import Counter
from datetime import datetime, timedelta, timezone

import warnings

# nameko (imported by crm_common) warns that eventlet is deprecated on every start: noise here.
warnings.filterwarnings("ignore", message=r"\s*Eventlet is deprecated")

from crm_common.testing_system import ADMIN_EMAIL, ADMIN_PASSWORD, login, running_system  # noqa: E402

import dataset  # noqa: E402

GOAL_MS = 200.0


def cases(data, team):
    """(report, label, caller, filters): the filter mixes users send, callers admin | sales | manager."""
    today = datetime.now(timezone.utc).date()
    two_years = (today.replace(day=1) - timedelta(days=700)).replace(day=1).isoformat()
    last_quarter = (today - timedelta(days=90)).isoformat()
    pipeline = data["pipeline"]["id"]
    mixes = []

    def add(report, label, caller, filters=None):
        mixes.append((report, label, caller, dict(filters or {})))

    add("customers-summary", "admin, last 12 months", "admin")
    add("customers-summary", "admin, 24 months, day", "admin", {"from": two_years, "granularity": "day"})
    add("customers-summary", "sales rep (own)", "sales")
    add("customers-summary", "manager (team)", "manager")
    add("customers-summary", "admin, region=east, tier=A", "admin", {"region": "east", "tier": "A"})
    for report in ("sales-by-period", "sales-by-owner", "sales-by-product", "sales-top-customers"):
        add(report, "admin, last 12 months", "admin")
        add(report, "admin, 24 months", "admin", {"from": two_years})
        add(report, "sales rep (own)", "sales")
        add(report, "manager (team)", "manager")
        add(report, "admin, region=east", "admin", {"region": "east"})
        add(report, "admin, team filter", "admin", {"team": team})
    add("sales-by-period", "admin, 12 months, day", "admin", {"granularity": "day"})
    add("sales-by-period", "admin, 24 months, week", "admin", {"from": two_years, "granularity": "week"})
    add("sales-by-period", "admin, industry+tier, quarter", "admin",
        {"industry": "retail", "tier": "B", "granularity": "quarter"})
    add("sales-top-customers", "admin, limit 100", "admin", {"limit": "100"})
    for caller, label in (("admin", "admin"), ("sales", "sales rep (own)"), ("manager", "manager (team)")):
        add("sales-funnel", f"{label}, 12 months", caller, {"pipeline": pipeline})
        add("sales-forecast", f"{label}", caller)
        add("activities", f"{label}, 12 months", caller, {"from": (today - timedelta(days=365)).isoformat()})
        add("contracts", f"{label}", caller)
    add("sales-funnel", "admin, 24 months", "admin", {"pipeline": pipeline, "from": two_years})
    add("sales-forecast", "admin, one pipeline", "admin", {"pipeline": pipeline})
    add("activities", "admin, default", "admin")
    add("activities", "admin, quarter by day, 90 days", "admin",
        {"from": last_quarter, "granularity": "day", "days": "90"})
    add("contracts", "admin, 90 days", "admin", {"days": "90"})
    return mixes


def percentile(values, fraction):
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(fraction * (len(ordered) - 1))))]


# The gateway's route of each report.
ROUTES = {"customers-summary": "/reports/customers/summary", "sales-by-period": "/reports/sales/by-period",
          "sales-by-owner": "/reports/sales/by-owner", "sales-by-product": "/reports/sales/by-product",
          "sales-top-customers": "/reports/sales/top-customers", "sales-funnel": "/reports/sales/funnel",
          "sales-forecast": "/reports/sales/forecast", "activities": "/reports/activities",
          "contracts": "/reports/contracts"}


class OverHttp:
    """Runs reports through GET /api/v1/reports/... on the running gateway."""

    mode = "HTTP (gateway -> reporting RPC)"

    def __init__(self, apis):
        self.apis = apis

    def run(self, report, caller, filters):
        response = self.apis[caller].get(ROUTES[report], params=filters, timeout=30)
        if response.status_code != 200:
            raise RuntimeError(f"{report} {filters} as {caller}: {response.status_code} {response.text[:300]}")
        return response.json()


def measure(runner, mixes, runs, warmup):
    results = []
    for report, label, caller, filters in mixes:
        try:
            for _ in range(warmup):
                runner.run(report, caller, filters)
        except Exception as error:  # one broken report must not hide the others' figures
            print(f"  {report:<20} {label:<32} ERROR {type(error).__name__}: {str(error)[:200]}", flush=True)
            results.append((report, label, caller, filters, None))
            continue
        timings = []
        for _ in range(runs):
            started = time.perf_counter()
            answer = runner.run(report, caller, filters)
            timings.append((time.perf_counter() - started) * 1000)
        results.append((report, label, caller, filters, timings))
        p95 = percentile(timings, 0.95)
        # The answer's size: what reporting serialises, sends over RPC and the gateway re-encodes.
        size = len(json.dumps(answer, default=str)) / 1024
        print(f"  {report:<20} {label:<32} {statistics.median(timings):>8.1f} {p95:>8.1f} {max(timings):>8.1f}"
              f" {size:>8.1f}  {'PASS' if p95 < GOAL_MS else 'FAIL'}", flush=True)
    return results


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--customers", type=int, default=100_000)
    parser.add_argument("--lines", type=int, default=1_000_000, help="order lines in the data set")
    parser.add_argument("--runs", type=int, default=50, help="timed runs per report and filter mix")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--only", help="comma-separated report names to run")
    args = parser.parse_args()

    data = dataset.prepare(dataset.parameters(customers=args.customers, lines=args.lines))
    book = Counter(data["customers"].values())
    rep = next(user for user in data["users"] if user["id"] == book.most_common(1)[0][0])
    manager = next(user for user in data["users"] if user["role"] == "manager" and user["team_id"] == rep["team_id"])
    mixes = cases(data, rep["team_id"])
    if args.only:
        wanted = set(args.only.split(","))
        mixes = [mix for mix in mixes if mix[0] in wanted]
    print(f"sales rep = the busiest owner {rep['email']} ({rep['team_id']}); manager {manager['email']}", flush=True)
    with running_system("bench", extra_env={"CRM_DATA_KEYS_FILE": data["keys_file"]},
                        templates=data["templates"], test_timers=False) as system:
        apis = {"admin": login(system, ADMIN_EMAIL, ADMIN_PASSWORD),
                "sales": login(system, rep["email"], data["password"]),
                "manager": login(system, manager["email"], data["password"])}
        results = run_table(OverHttp(apis), mixes, args)

    errors = [result for result in results if result[4] is None]
    results = [result for result in results if result[4] is not None]
    failing = [result for result in results if percentile(result[4], 0.95) >= GOAL_MS]
    worst = max((percentile(result[4], 0.95) for result in results), default=0)
    print(f"\nworst p95 {worst:.1f} ms; {len(results) - len(failing)} of {len(results) + len(errors)} "
          f"report/filter mixes under {GOAL_MS:.0f} ms" + (f"; {len(errors)} failed with an error" if errors else ""))
    return 1 if failing or errors else 0


def run_table(runner, mixes, args):
    print(f"\n{runner.mode}: {args.runs} runs each after {args.warmup} warm-up runs")
    print(f"  {'report':<20} {'filters':<32} {'p50 ms':>8} {'p95 ms':>8} {'max ms':>8} {'JSON KB':>8}"
          f"  goal {GOAL_MS:.0f} ms p95",
          flush=True)
    return measure(runner, mixes, args.runs, args.warmup)


if __name__ == "__main__":
    sys.exit(main())
