"""`make bench`: the CRM's main routes under load, next to the floor of this stack on this machine.

    .venv/bin/python loadtests/bench/run_bench.py [--seconds 20] [--warmup 5] [--connections 32]

Starts the whole system on copies of the bench data set (dataset.py: users, 100,000
customers and a read model of 1,000,000 order lines, all made through the system itself
and kept as PostgreSQL templates; made on the first run, reused after), and the floor: a
bare nameko HTTP entrypoint calling a bare RPC echo (floor_service.py) on a vhost of its own.

Every scenario runs as the people who use the CRM: each of the 32 connections is one
manager or sales rep signed in with their own token, reading and searching within what
they may see (their own or their team's customers), opening reports with the periods,
granularities and regions managers pick, and creating realistic customers (person or
company, phones, emails, address, tags, an owner).

Then every scenario, the floor first, is driven by the same closed-loop load driver
(driver.py, in loadtests/.venv) with the same connections for the same time, and one
table is printed: requests/s, p50/p95/p99, errors, the ratio of requests/s to the
floor's, the target and PASS/MISS. The same figures, with each target's verdict, the
machine and the commit, go to var/bench/<UTC time>.json and var/bench/latest.json.
Exits 1 when a target is missed.

The figures are the whole machine's: every service, RabbitMQ, PostgreSQL and the driver
share its cores, so anything else running at the same time lowers them.
"""
import argparse
import json
import os
import random
import subprocess
import sys
import time
import unicodedata
import uuid
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from urllib.parse import urlencode, urlparse

import warnings

# nameko (imported by crm_common) warns that eventlet is deprecated on every start: noise here.
warnings.filterwarnings("ignore", message=r"\s*Eventlet is deprecated")

from sqlalchemy import create_engine, text  # noqa: E402

from crm_common.testing import _postgres_admin_connection, postgres_base_url  # noqa: E402
from crm_common.testing_system import (  # noqa: E402
    AMQP_URI, RABBIT_API, RabbitAdmin, free_port, login, running_system, wait_until,
)

import dataset  # noqa: E402
import seed  # noqa: E402  (loadtests/seed.py, on the path through dataset)
from crmload.data import report_filters  # noqa: E402
from floor_service import running_floor  # noqa: E402

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
DRIVER_PYTHON = ROOT / "loadtests" / ".venv" / "bin" / "python"
# Customers each person's reads spread over (more than fit one page of any cache).
READS_PER_PERSON = 200
# Report and search requests prepared per person, taken in turn.
QUERIES_PER_PERSON = 60
EVENT_DELIVERY_SECONDS = 120
# PostgreSQL connections the bench's system opens under load (its services' pools at 32
# connections: 76 at most in a run here): with fewer free, requests fail with
# "too many clients" and the figures measure that.
SYSTEM_CONNECTIONS = 90


# --- targets ------------------------------------------------------------------

def target(text, check):
    return {"text": text, "check": check}


def p95_within(result, limit_ms):
    """p95 at most ``limit_ms`` and no errors (a scenario that answered nothing has no p95)."""
    return result["p95_ms"] is not None and result["p95_ms"] <= limit_ms and result["errors"] == 0


# Scenario -> what it must reach on the 2-core reference machine (issue 9). ``check`` gets
# the scenario's figures (with ratio_to_floor) and the extra facts the run collected.
TARGETS = {
    "floor": None,
    "customer_read": target(">=60% floor rps, p95<=50ms", lambda r, facts: (
        (r["ratio_to_floor"] or 0) >= 0.60 and p95_within(r, 50))),
    "customer_search": target("p95<=150ms", lambda r, facts: p95_within(r, 150)),
    "customer_create": target(">=200/s, events delivered", lambda r, facts: (
        r["rps"] >= 200 and facts.get("events_delivered", False) and r["errors"] == 0)),
    "report_sales_by_period": target("p95<=200ms", lambda r, facts: p95_within(r, 200)),
    "report_funnel": target("p95<=200ms", lambda r, facts: p95_within(r, 200)),
}
FIGURES = ("rps", "p50_ms", "p95_ms", "p99_ms", "errors")


# --- the report -----------------------------------------------------------------

def build_report(measured, facts, machine, commit, settings):
    """The JSON document of one run: scenario -> figures with their ratio to the floor, plus
    ``machine``, ``commit``, the run's ``settings`` and each target's ``verdicts``.

    ``measured`` maps scenario -> the driver's answer; ``facts`` maps scenario -> extra facts
    a target needs (customer_create: events_delivered)."""
    floor_rps = measured["floor"]["rps"]
    report = {}
    for name, figures in measured.items():
        scenario = {key: figures[key] for key in FIGURES}
        scenario["ratio_to_floor"] = round(figures["rps"] / floor_rps, 3) if floor_rps else None
        report[name] = scenario
    report["verdicts"] = {}
    for name, scenario in measured.items():
        goal = TARGETS.get(name)
        if goal is None:
            continue
        scenario_facts = facts.get(name, {})
        report["verdicts"][name] = {"target": goal["text"], "met": bool(goal["check"](report[name], scenario_facts)),
                                    **scenario_facts}
        if scenario["errors"]:
            # What failed (HTTP status or exception name -> count): the first thing to look at.
            report["verdicts"][name]["errors_by_kind"] = scenario["error_samples"]
    report["machine"] = machine
    report["commit"] = commit
    report["settings"] = settings
    return report


def missed(report):
    return [name for name, verdict in report["verdicts"].items() if not verdict["met"]]


def format_table(report):
    def number(value, digits=1):
        return "-" if value is None else f"{value:.{digits}f}"

    header = (f"{'scenario':<24} {'rps':>8} {'p50 ms':>8} {'p95 ms':>8} {'p99 ms':>8} {'errors':>7} "
              f"{'ratio':>6}  {'target':<28} result")
    lines = [header, "-" * len(header)]
    for name in TARGETS:
        if name not in report:
            continue
        scenario = report[name]
        verdict = report["verdicts"].get(name)
        goal, result = ("(the floor)", "") if verdict is None else (
            verdict["target"], "PASS" if verdict["met"] else "MISS")
        lines.append(f"{name:<24} {number(scenario['rps']):>8} {number(scenario['p50_ms']):>8} "
                     f"{number(scenario['p95_ms']):>8} {number(scenario['p99_ms']):>8} {scenario['errors']:>7} "
                     f"{number(scenario['ratio_to_floor'], 2):>6}  {goal:<28} {result}")
    machine = report["machine"]
    settings = report["settings"]
    lines.append(f"{settings['connections']} connections, {settings['seconds']} s after {settings['warmup_seconds']} s"
                 f" warm-up; {machine['cores']} cores, {machine['memory_mb']} MB; commit {report['commit'][:12]}")
    return "\n".join(lines)


def write_report(report, directory):
    """var/bench/<UTC time>.json and var/bench/latest.json; returns the first one's path."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / (datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ") + ".json")
    document = json.dumps(report, indent=2) + "\n"
    path.write_text(document)
    (directory / "latest.json").write_text(document)
    return path


def machine_facts():
    with open("/proc/meminfo") as meminfo:
        total_kb = next(int(line.split()[1]) for line in meminfo if line.startswith("MemTotal:"))
    return {"cores": os.cpu_count(), "memory_mb": total_kb // 1024}


def current_commit():
    answer = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True)
    return answer.stdout.strip() or "unknown"


# --- driving the load ---------------------------------------------------------------

def drive(settings, base_url, sessions, method="GET", ok_statuses=(200,)):
    """One scenario through driver.py (loadtests/.venv); ``sessions``: [{"headers", "paths", "bodies"?}],
    one per person, the connections shared among them. Returns the driver's JSON answer."""
    scenario = {"base_url": base_url, "method": method, "sessions": sessions, "ok_statuses": list(ok_statuses),
                **settings}
    answer = subprocess.run([str(DRIVER_PYTHON), str(HERE / "driver.py")], input=json.dumps(scenario),
                            capture_output=True, text=True,
                            timeout=settings["warmup_seconds"] + settings["seconds"] + 120)
    if answer.returncode != 0:
        sys.exit(f"the load driver failed:\n{answer.stderr[-2000:]}")
    return json.loads(answer.stdout)


def print_figures(name, figures):
    p95 = "-" if figures["p95_ms"] is None else f"{figures['p95_ms']:.1f}"
    extra = f"  errors {figures['error_samples']}" if figures["errors"] else ""
    print(f"  {name}: {figures['rps']:.1f} rps, p95 {p95} ms{extra}", flush=True)


# --- the system -------------------------------------------------------------------------

def check_connection_headroom():
    admin = _postgres_admin_connection()
    with admin.cursor() as cursor:
        cursor.execute("SELECT current_setting('max_connections')::int"
                       " - current_setting('superuser_reserved_connections')::int - count(*)"
                       " FROM pg_stat_activity WHERE backend_type = 'client backend'")
        free = cursor.fetchone()[0]
    admin.close()
    if free < SYSTEM_CONNECTIONS:
        sys.exit(f"PostgreSQL at {postgres_base_url()} has {free} free connections and the bench's system needs "
                 f"about {SYSTEM_CONNECTIONS}: stop the other systems using it, or point CRM_TEST_PG_URL at "
                 f"another server")


@contextmanager
def floor_on_own_vhost(workdir):
    rabbit = RabbitAdmin(RABBIT_API)
    amqp = urlparse(AMQP_URI)
    vhost = f"crm_floor_{uuid.uuid4().hex[:8]}"
    rabbit.create_vhost(vhost, amqp.username or "guest")
    try:
        with running_floor(f"{amqp.scheme}://{amqp.netloc}/{vhost}", workdir, free_port()) as base_url:
            yield base_url
    finally:
        rabbit.delete_vhost(vhost)


# --- who sends what -------------------------------------------------------------------------

def people(data, connections, rng):
    """Whom the connections sign in as: every manager, then sales reps, each rep at most once
    and the busiest likelier; one person per connection."""
    managers = [user for user in data["users"] if user["role"] == "manager"]
    reps = [user for user in data["users"] if user["role"] == "sales"]
    book = {rep["id"]: 0 for rep in reps}
    for owner in data["customers"].values():
        book[owner] += 1
    chosen = []
    while len(managers) + len(chosen) < min(connections, len(managers) + len(reps)):
        rep = rng.choices(reps, [book[rep["id"]] + 1 for rep in reps])[0]
        if rep not in chosen:
            chosen.append(rep)
    return managers + chosen


def visible_customers(data, person):
    """The customers ``person`` may open: their own (a rep), their team's (a manager)."""
    team_of = {user["id"]: user["team_id"] for user in data["users"]}
    if person["role"] == "manager":
        return [customer for customer, owner in data["customers"].items() if team_of[owner] == person["team_id"]]
    return [customer for customer, owner in data["customers"].items() if owner == person["id"]]


def fold(text):
    """``text`` without accents, as a person types a name on a keyboard without them."""
    return "".join(ch for ch in unicodedata.normalize("NFKD", text) if not unicodedata.combining(ch))


def search_queries(rng, count):
    """(kind, term): what people type into the customer search: common and rare, whole and partial,
    Chinese and accented English, company names with and without their number, and words that
    match nothing."""
    makers = {
        "chinese surname": lambda: rng.choice(seed.SURNAMES_ZH),
        "chinese 2-char": lambda: rng.choice(seed.COMPANY_WORDS_ZH),
        "chinese city+word": lambda: rng.choice(seed.CITIES_ZH) + rng.choice(seed.COMPANY_WORDS_ZH),
        "english name": lambda: rng.choice(seed.LAST_EN),
        "partial word": lambda: rng.choice(seed.LAST_EN + seed.COMPANY_WORDS_EN)[:4].lower(),
        "accent-free": lambda: fold(rng.choice(["Müller", "Núñez", "Zoë", "Chloé", "François", "Björn"])),
        "two words": lambda: f"{rng.choice(seed.COMPANY_WORDS_EN)} {rng.choice(seed.TRADES_EN)}".lower(),
        "company + number": lambda: (f"{rng.choice(seed.COMPANY_WORDS_EN)} {rng.choice(seed.TRADES_EN)} "
                                     f"{rng.randint(1, 999)}"),
        "no match": lambda: "zqxj" + str(rng.randint(0, 99)),
    }
    kinds = rng.choices(list(makers), k=count)
    return [(kind, makers[kind]()) for kind in kinds]


def new_customer_body(rng, person, team_members):
    """A POST /customers body as a salesperson fills the form in; {n} (the driver's number, unique
    in the run) keeps names, phones and emails apart. A rep owns what they create; a manager hands
    it to one of the team."""
    is_company = rng.random() < 0.4
    name = seed.company_name(rng) if is_company else seed.person_name(rng)
    body = {
        "kind": "company" if is_company else "person",
        "name": f"{name} {{n}}",
        "contact": {
            "phones": [f"+86{rng.choice(seed.CN_MOBILE_PREFIXES)}{{n8}}"],
            "emails": [f"bench.{{n}}@{rng.choice(seed.EMAIL_DOMAINS)}"],
            "address": {"country": "CN", "city": rng.choice(seed.CITIES_ZH),
                        "street": f"{rng.randint(1, 999)}号 {rng.choice(['人民路', '中山路', 'Nanjing Road'])}"},
        },
        "region": rng.choice(seed.REGIONS), "industry": rng.choice(seed.INDUSTRIES),
        "source": rng.choice(seed.SOURCES), "tier": rng.choice("ABCD"),
        "tags": rng.sample(seed.TAGS, rng.randint(0, 3)),
        "owner_id": person["id"] if person["role"] == "sales" else rng.choice(team_members)["id"],
    }
    if not is_company and rng.random() < 0.5:
        body["company"] = {"name": seed.company_name(rng), "industry": rng.choice(seed.INDUSTRIES)}
    return json.dumps(body, ensure_ascii=False)


def scenarios(data, signed_in, rng):
    """scenario -> (method, sessions, ok statuses): what each person sends in each scenario."""
    pipeline = data["pipeline"]["id"]
    reads, searches, by_period, funnel, creates = [], [], [], [], []
    for person, headers in signed_in:
        mine = visible_customers(data, person)
        reads.append({"headers": headers, "paths": [
            f"/customers/{customer}" for customer in rng.sample(mine, min(READS_PER_PERSON, len(mine)))]})
        searches.append({"headers": headers, "paths": [
            f"/customers?{urlencode({'q': term})}" for _, term in search_queries(rng, QUERIES_PER_PERSON)]})
        periods = [report_filters(rng, granularities=("day", "week", "month", "quarter"))
                   for _ in range(QUERIES_PER_PERSON)]
        by_period.append({"headers": headers, "paths": [
            f"/reports/sales/by-period?{urlencode(filters)}" for filters in periods]})
        funnel.append({"headers": headers, "paths": [
            f"/reports/sales/funnel?{urlencode({'pipeline': pipeline, 'from': f['from'], 'to': f['to']})}"
            for f in periods]})
        team = [user for user in data["users"] if user["role"] == "sales" and user["team_id"] == person["team_id"]]
        creates.append({"headers": {**headers, "Content-Type": "application/json"}, "paths": ["/customers"],
                        "bodies": [new_customer_body(rng, person, team) for _ in range(QUERIES_PER_PERSON)]})
    return {
        "customer_read": ("GET", reads, (200,)),
        "customer_search": ("GET", searches, (200,)),
        "report_sales_by_period": ("GET", by_period, (200,)),
        "report_funnel": ("GET", funnel, (200,)),
        "customer_create": ("POST", creates, (201,)),
    }


def replica_count(system):
    """Customers the sales service has in its replica: what customer.created events delivered."""
    engine = create_engine(system.env["CRM_SALES_DB_URL"])
    with engine.connect() as connection:
        count = connection.execute(text("SELECT count(*) FROM customer_replica")).scalar()
    engine.dispose()
    return count


def events_delivered(system, created):
    """Whether every customer created reached the sales replica within the deadline; and the seconds waited."""
    started = time.monotonic()
    try:
        wait_until(lambda: replica_count(system) >= created, EVENT_DELIVERY_SECONDS, interval=0.5,
                   message="customer.created events in the sales replica")
    except AssertionError:
        print(f"  only {replica_count(system)} of {created} created customers reached the sales replica "
              f"within {EVENT_DELIVERY_SECONDS} s", flush=True)
        return False, round(time.monotonic() - started, 1)
    return True, round(time.monotonic() - started, 1)


def measure_creates(system, settings, api, sessions):
    """POST /customers under load, then whether every customer created reached the sales replica."""
    replica_before = replica_count(system)
    figures = drive(settings, api, sessions, method="POST", ok_statuses=(201,))
    print_figures("customer_create", figures)
    created = figures["succeeded_total"]
    delivered, waited = events_delivered(system, replica_before + created)
    return figures, {"events_delivered": delivered, "created": created, "delivery_wait_seconds": waited}


# --- main ---------------------------------------------------------------------------------

def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=20, help="measured seconds per scenario")
    parser.add_argument("--warmup", type=float, default=5, help="unmeasured seconds before each")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--customers", type=int, default=100_000, help="customers in the data set")
    parser.add_argument("--lines", type=int, default=1_000_000, help="order lines in the data set")
    parser.add_argument("--out", type=Path, default=ROOT / "var" / "bench")
    parser.add_argument("--only", type=lambda names: set(names.split(",")), default=set(TARGETS),
                        help="comma-separated scenarios to measure (the floor always is: ratios need it)")
    args = parser.parse_args()
    unknown = args.only - set(TARGETS)
    if unknown:
        parser.error(f"unknown scenario(s) {', '.join(sorted(unknown))}; known: {', '.join(TARGETS)}")
    if not DRIVER_PYTHON.exists():
        sys.exit(f"{DRIVER_PYTHON} is missing: run `make loadtest-venv` first")
    settings = {"connections": args.connections, "seconds": args.seconds, "warmup_seconds": args.warmup}
    check_connection_headroom()
    data = dataset.prepare(dataset.parameters(customers=args.customers, lines=args.lines))

    measured, facts = {}, {}
    with running_system("bench", extra_env={"CRM_DATA_KEYS_FILE": data["keys_file"]},
                        templates=data["templates"]) as system:
        with floor_on_own_vhost(system.workdir) as floor_url:
            print(f"measuring: {args.connections} connections, {args.seconds:g} s after {args.warmup:g} s warm-up",
                  flush=True)
            measured["floor"] = drive(settings, floor_url, [{"paths": ["/echo?value=bench"]}])
            print_figures("floor", measured["floor"])

        api = system.gateway_url + "/api/v1"
        rng = random.Random(7)
        # Each person signs in once; a token lives 15 minutes, longer than all the scenarios.
        signed_in = [(person, {"Authorization": login(system, person["email"], data["password"])
                               .http.headers["Authorization"]})
                     for person in people(data, args.connections, rng)]
        print(f"signed in {sum(p['role'] == 'manager' for p, _ in signed_in)} managers and "
              f"{sum(p['role'] == 'sales' for p, _ in signed_in)} sales reps", flush=True)
        for name, (method, sessions, ok_statuses) in scenarios(data, signed_in, rng).items():
            if name not in args.only:
                continue
            if name == "customer_create":
                measured[name], facts[name] = measure_creates(system, settings, api, sessions)
                continue
            measured[name] = drive(settings, api, sessions, method=method, ok_statuses=ok_statuses)
            print_figures(name, measured[name])

    report = build_report(measured, facts, machine_facts(), current_commit(), settings)
    path = write_report(report, args.out)
    print()
    print(format_table(report))
    print(f"\nsaved {path.relative_to(ROOT) if path.is_relative_to(ROOT) else path} (and latest.json)")
    failed = missed(report)
    if failed:
        print(f"missed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
