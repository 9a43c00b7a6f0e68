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
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone
from pathlib import Path
from urllib.parse import urlencode, urlparse

import warnings

# nameko (imported by crm_common) warns that eventlet is deprecated on every start: noise here.
warnings.filterwarnings("ignore", message=r"\s*Eventlet is deprecated")

import requests  # noqa: E402

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
# Opportunities each person moves between two stages, per phase.
DEALS_PER_PERSON = 10
EVENT_DELIVERY_SECONDS = 120
# PostgreSQL connections the bench's system opens under load (its services' pools at 32
# connections: 76 at most in a run here): with fewer free, requests fail with
# "too many clients" and the figures measure that.
SYSTEM_CONNECTIONS = 90


# --- targets ------------------------------------------------------------------

def target(text, check, ratio=None):
    """A goal: its wording, its check, and the ratio to the floor it asks for (if it asks one)."""
    return {"text": text, "check": check, "ratio": ratio}


def p95_within(result, limit_ms):
    """p95 at most ``limit_ms`` and no errors (a scenario that answered nothing has no p95)."""
    return result["p95_ms"] is not None and result["p95_ms"] <= limit_ms and result["errors"] == 0


def ratio_at_least(goal):
    """Requests/s at least ``goal`` times the floor's, with no errors."""
    return target(f">={goal:.2f} x floor, 0 errors", lambda r, facts: (
        (r["ratio_to_floor"] or 0) >= goal and r["errors"] == 0), ratio=goal)


def latency_within(p95_ms):
    """Open loop: p95 at most ``p95_ms``, p99 at most three times the p95, no errors."""
    return target(f"p95<={p95_ms:g}ms, p99<=3xp95", lambda r, facts: (
        p95_within(r, p95_ms) and r["p99_ms"] is not None and r["p99_ms"] <= 3 * r["p95_ms"]))


# Scenario -> what it must reach in one run on the 2-core reference machine (the Performance
# issue). ``check`` gets the scenario's figures (with ratio_to_floor) and the run's facts.
TARGETS = {
    "floor": None,
    "customer_read": ratio_at_least(0.60),
    "customer_search": ratio_at_least(0.35),
    "customer_create": target(">=0.25 x floor, events consumed", lambda r, facts: (
        (r["ratio_to_floor"] or 0) >= 0.25 and r["errors"] == 0 and facts.get("events_delivered", False)),
        ratio=0.25),
    "report_sales_by_period": ratio_at_least(0.50),
    "report_funnel": ratio_at_least(0.50),
    "opportunity_stage_move": ratio_at_least(0.25),
    "mixed": ratio_at_least(0.35),
}
# The latency phase: open loop at LATENCY_RATE of the floor's requests/s, LATENCY_SECONDS each.
LATENCY_TARGETS = {
    "customer_read": latency_within(25),
    "customer_search": latency_within(60),
    "customer_create": latency_within(60),
    "report_sales_by_period": latency_within(50),
    "report_funnel": latency_within(50),
    "opportunity_stage_move": latency_within(40),
}
LATENCY_RATE = 0.25
LATENCY_SECONDS = 30
FIGURES = ("rps", "p50_ms", "p95_ms", "p99_ms", "errors", "requests", "late")


# --- the report -----------------------------------------------------------------

def build_report(measured, facts, machine, commit, settings, latency=None):
    """The JSON document of one run: scenario -> figures with their ratio to the floor, plus
    ``machine``, ``commit``, the run's ``settings`` and each target's ``verdicts``.

    ``measured`` maps scenario -> the driver's answer; ``facts`` maps scenario -> extra facts
    a target needs (customer_create: events_delivered); ``latency`` maps scenario -> the open-loop
    phase's answer (under the "latency" key, its verdicts named "<scenario> (latency)")."""
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
        report["verdicts"][name] = {"target": goal["text"], "goal_ratio": goal["ratio"],
                                    "met": bool(goal["check"](report[name], scenario_facts)), **scenario_facts}
        if scenario["errors"]:
            # What failed (HTTP status or exception name -> count): the first thing to look at.
            report["verdicts"][name]["errors_by_kind"] = scenario["error_samples"]
    for name, figures in (latency or {}).items():
        scenario = {key: figures[key] for key in FIGURES}
        report.setdefault("latency", {})[name] = scenario
        goal = LATENCY_TARGETS[name]
        report["verdicts"][f"{name} (latency)"] = {"target": goal["text"], "met": bool(goal["check"](scenario, {})),
                                                  **({"errors_by_kind": figures["error_samples"]}
                                                     if figures["errors"] else {})}
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
    if report.get("latency"):
        lines.append(f"latency phase: open loop at {settings_rate(report):.1f} requests/s "
                     f"({LATENCY_RATE:.0%} of the floor's), {report['settings'].get('latency_seconds')} s each")
        for name, scenario in report["latency"].items():
            verdict = report["verdicts"][f"{name} (latency)"]
            lines.append(f"{name:<24} {number(scenario['rps']):>8} {number(scenario['p50_ms']):>8} "
                         f"{number(scenario['p95_ms']):>8} {number(scenario['p99_ms']):>8} {scenario['errors']:>7} "
                         f"{'':>6}  {verdict['target']:<28} {'PASS' if verdict['met'] else 'MISS'}")
    machine = report["machine"]
    settings = report["settings"]
    lines.append(f"{settings['connections']} connections, {settings['seconds']} s after {settings['warmup_seconds']} s"
                 f" warm-up; {machine['cores']} cores, {machine['memory_mb']} MB; commit {report['commit'][:12]}")
    return "\n".join(lines)


def settings_rate(report):
    return report["settings"].get("latency_rate") or 0.0


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
    one per person, the connections shared among them. ``settings``: connections, seconds,
    warmup_seconds, and for the open loop rate and unique_start. Returns the driver's JSON answer."""
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


def open_deals(api, signed_in, data, rng, per_person):
    """``per_person`` new opportunities for each person, on customers they may see, made through the
    API before the measuring starts; returns {person id: [opportunity id]}."""
    chosen = {person["id"]: rng.sample(visible_customers(data, person), per_person) for person, _ in signed_in}

    def make(person_headers):
        person, headers = person_headers
        session = requests.Session()
        session.headers.update(headers)
        mine = chosen[person["id"]]
        deals = []
        for customer_id in mine:
            answer = session.post(f"{api}/opportunities", timeout=60, json={
                "customer_id": customer_id, "title": f"Bench deal {uuid.uuid4().hex[:8]}",
                "amount": f"{rng.randint(1, 500) * 100}.00", "currency": "CNY",
                "expected_close_date": (datetime.now(timezone.utc) + timedelta(days=30)).date().isoformat()})
            if answer.status_code != 201:
                sys.exit(f"creating a bench opportunity answered {answer.status_code}: {answer.text[:500]}")
            deals.append(answer.json()["id"])
        return person["id"], deals

    with ThreadPoolExecutor(8) as pool:
        return dict(pool.map(make, signed_in))


def stage_moves(deals, stages):
    """Every deal to the second open stage, then every deal back to the first: the sequence a
    session repeats, each move valid whatever the turn it starts at."""
    first, second = stages[:2]
    return ([["POST", f"/opportunities/{deal}/stage", json.dumps({"stage": second})] for deal in deals]
            + [["POST", f"/opportunities/{deal}/stage", json.dumps({"stage": first})] for deal in deals])


def mixed_requests(rng, data, person, deals, team):
    """What one person sends through a working hour, in the load-test personas' proportions: a rep
    lists, searches, opens and creates customers, logs follow-ups and moves deals; a manager
    watches the board and opens reports. The deal moves keep their order, so every move is valid."""
    pipeline = data["pipeline"]["id"]
    mine = visible_customers(data, person)
    if person["role"] == "sales":
        kinds = {"list": 4, "search": 3, "open": 4, "create": 1, "followup": 2}
    else:
        kinds = {"board": 2, "opportunities": 2, "summary": 2, "by-period": 1, "funnel": 1, "by-owner": 1, "open": 2}
    requests_ = []
    for kind in rng.choices(list(kinds), list(kinds.values()), k=100):
        if kind == "list":
            requests_.append(["GET", "/customers?limit=20&sort=-updated_at", None])
        elif kind == "search":
            requests_.append(["GET", f"/customers?{urlencode({'q': search_queries(rng, 1)[0][1]})}", None])
        elif kind == "open":
            requests_.append(["GET", f"/customers/{rng.choice(mine)}", None])
        elif kind == "create":
            requests_.append(["POST", "/customers", new_customer_body(rng, person, team)])
        elif kind == "followup":
            requests_.append(["POST", f"/customers/{rng.choice(mine)}/followups", json.dumps(
                {"type": rng.choice(("call", "email", "meeting", "visit")), "summary": "Talked through the offer"})])
        elif kind == "board":
            requests_.append(["GET", f"/pipelines/{pipeline}/board?per_stage=20", None])
        elif kind == "opportunities":
            requests_.append(["GET", "/opportunities?limit=50", None])
        elif kind == "summary":
            requests_.append(["GET", f"/reports/customers/summary?{urlencode(report_filters(rng))}", None])
        elif kind == "by-period":
            requests_.append(["GET", f"/reports/sales/by-period?{urlencode(report_filters(rng))}", None])
        elif kind == "funnel":
            period = report_filters(rng)
            requests_.append(["GET", f"/reports/sales/funnel?{urlencode({'pipeline': pipeline, 'from': period['from'], 'to': period['to']})}", None])
        elif kind == "by-owner":
            filters = report_filters(rng)
            filters.pop("granularity")
            requests_.append(["GET", f"/reports/sales/by-owner?{urlencode(filters)}", None])
    if deals:
        # A rep moves deals twice an hour's worth: spread through the list, in their valid order.
        moves = stage_moves(deals, open_stage_keys(data))
        step = len(requests_) // len(moves)
        for index, move in enumerate(moves):
            requests_.insert(index * (step + 1), move)
    return requests_


def open_stage_keys(data):
    return [key for key, _, outcome in sorted(data["pipeline"]["stages"], key=lambda stage: stage[1])
            if outcome == "open"]


def scenarios(data, signed_in, rng, deals):
    """scenario -> (sessions, ok statuses): what each person sends in each scenario. ``deals``: the
    opportunities each person moves, {scenario: {person id: [id]}}."""
    pipeline = data["pipeline"]["id"]
    built = {name: [] for name in ("customer_read", "customer_search", "report_sales_by_period", "report_funnel",
                                   "customer_create", "opportunity_stage_move", "mixed")}
    for person, headers in signed_in:
        mine = visible_customers(data, person)
        team = [user for user in data["users"] if user["role"] == "sales" and user["team_id"] == person["team_id"]]
        periods = [report_filters(rng, granularities=("day", "week", "month", "quarter"))
                   for _ in range(QUERIES_PER_PERSON)]
        json_headers = {**headers, "Content-Type": "application/json"}
        built["customer_read"].append({"headers": headers, "paths": [
            f"/customers/{customer}" for customer in rng.sample(mine, min(READS_PER_PERSON, len(mine)))]})
        built["customer_search"].append({"headers": headers, "paths": [
            f"/customers?{urlencode({'q': term})}" for _, term in search_queries(rng, QUERIES_PER_PERSON)]})
        built["report_sales_by_period"].append({"headers": headers, "paths": [
            f"/reports/sales/by-period?{urlencode(filters)}" for filters in periods]})
        built["report_funnel"].append({"headers": headers, "paths": [
            f"/reports/sales/funnel?{urlencode({'pipeline': pipeline, 'from': f['from'], 'to': f['to']})}"
            for f in periods]})
        built["customer_create"].append({"headers": json_headers, "requests": [
            ["POST", "/customers", new_customer_body(rng, person, team)] for _ in range(QUERIES_PER_PERSON)]})
        built["opportunity_stage_move"].append({"headers": json_headers, "requests": stage_moves(
            deals["opportunity_stage_move"][person["id"]], open_stage_keys(data))})
        built["mixed"].append({"headers": json_headers, "requests": mixed_requests(
            rng, data, person, deals["mixed"].get(person["id"]) if person["role"] == "sales" else None, team)})
    ok = {"customer_create": (201,), "mixed": (200, 201)}
    return {name: (sessions, ok.get(name, (200,))) for name, sessions in built.items()}


# --- events: what the consumers report -------------------------------------------------------

CONSUMERS = ("sales", "notifications", "reporting")


def consumed(system, event_type):
    """{service: events of ``event_type`` each consumer has handled}, from its /metrics."""
    counts = {}
    for service in CONSUMERS:
        counts[service] = sum(
            float(line.rsplit(" ", 1)[1]) for line in system.metrics(service).splitlines()
            if line.startswith("crm_events_consumed_total{") and f'type="{event_type}"' in line
            and 'outcome="ok"' in line)
    return counts


def events_delivered(system, before, created):
    """Whether every consumer handled ``created`` more customer.created events than ``before``
    within the deadline; and the seconds waited."""
    started = time.monotonic()
    try:
        wait_until(lambda: all(count >= before[service] + created
                               for service, count in consumed(system, "customer.created").items()),
                   EVENT_DELIVERY_SECONDS, interval=0.5, message="customer.created consumed by every consumer")
    except AssertionError:
        now = consumed(system, "customer.created")
        print(f"  of {created} created customers, consumed within {EVENT_DELIVERY_SECONDS} s: "
              f"{ {service: int(now[service] - before[service]) for service in CONSUMERS} }", flush=True)
        return False, round(time.monotonic() - started, 1)
    return True, round(time.monotonic() - started, 1)


def measure(system, settings, api, name, sessions, ok_statuses):
    """One scenario through the driver; for customer_create, also whether every consumer then
    handled every customer.created. Returns (figures, facts)."""
    print(f"  measuring {name}{' (latency)' if settings.get('rate') else ''} ...", flush=True)
    before = consumed(system, "customer.created") if name == "customer_create" else None
    unique_start = settings.get("unique_start", 0) + (10**6 if name == "mixed" else 0)
    figures = drive({**settings, "unique_start": unique_start}, api, sessions, ok_statuses=ok_statuses)
    print_figures(name + (" (latency)" if settings.get("rate") else ""), figures)
    if before is None:
        return figures, {}
    created = figures["succeeded_total"]
    delivered, waited = events_delivered(system, before, created)
    return figures, {"events_delivered": delivered, "created": created, "delivery_wait_seconds": waited}


# --- main ---------------------------------------------------------------------------------

def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=20, help="measured seconds per scenario")
    parser.add_argument("--warmup", type=float, default=5, help="unmeasured seconds before each")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--customers", type=int, default=100_000, help="customers in the data set")
    parser.add_argument("--lines", type=int, default=1_000_000, help="order lines in the data set")
    parser.add_argument("--latency-seconds", type=float, default=LATENCY_SECONDS,
                        help="measured seconds per scenario of the open-loop latency phase")
    parser.add_argument("--out", type=Path, default=ROOT / "var" / "bench")
    parser.add_argument("--database", choices=("postgresql", "sqlite"), default=os.environ.get("BENCH_DB") or "postgresql",
                        help="where the services keep their data: PostgreSQL, or SQLite files as the default "
                             "stack does (default: $BENCH_DB, else postgresql)")
    parser.add_argument("--only", type=lambda names: set(names.split(",")), default=set(TARGETS),
                        help="comma-separated scenarios to measure (the floor always is: ratios need it)")
    args = parser.parse_args()
    unknown = args.only - set(TARGETS)
    if unknown:
        parser.error(f"unknown scenario(s) {', '.join(sorted(unknown))}; known: {', '.join(TARGETS)}")
    if not DRIVER_PYTHON.exists():
        sys.exit(f"{DRIVER_PYTHON} is missing: run `make loadtest-venv` first")
    settings = {"connections": args.connections, "seconds": args.seconds, "warmup_seconds": args.warmup,
                "database": args.database}
    if args.database == "postgresql":
        check_connection_headroom()
    data = dataset.prepare(dataset.parameters(customers=args.customers, lines=args.lines, database=args.database))

    measured, latency, facts = {}, {}, {}
    with running_system("bench", extra_env={"CRM_DATA_KEYS_FILE": data["keys_file"]},
                        templates=data["templates"], test_timers=False, database=args.database) as system:
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
        # Opportunities to move, one set per phase (a phase stops mid-sequence) and one for the mix.
        # The open loop keeps sending while answers are slow, so a person may have several moves in
        # flight: twice the deals there keep two moves of one deal from overlapping.
        deals = [open_deals(api, signed_in, data, rng, count)
                 for count in (DEALS_PER_PERSON, 2 * DEALS_PER_PERSON, DEALS_PER_PERSON)]
        throughput = scenarios(data, signed_in, rng, {"opportunity_stage_move": deals[0], "mixed": deals[2]})
        open_loop = scenarios(data, signed_in, rng, {"opportunity_stage_move": deals[1], "mixed": {}})

        for name, (sessions, ok_statuses) in throughput.items():
            if name in args.only:
                measured[name], facts[name] = measure(system, settings, api, name, sessions, ok_statuses)
        rate = LATENCY_RATE * measured["floor"]["rps"]
        settings.update(latency_rate=round(rate, 1), latency_seconds=args.latency_seconds)
        open_settings = {**settings, "connections": 2 * args.connections, "seconds": args.latency_seconds,
                         "rate": rate, "unique_start": 10**7}
        for name in LATENCY_TARGETS:
            if name in args.only:
                sessions, ok_statuses = open_loop[name]
                latency[name], facts[f"{name} (latency)"] = measure(system, open_settings, api, name, sessions,
                                                                    ok_statuses)

    report = build_report(measured, facts, machine_facts(), current_commit(), settings, latency)
    path = write_report(report, args.out)
    print()
    print(format_table(report))
    print(f"\nsaved {path.relative_to(ROOT) if path.is_relative_to(ROOT) else path} (and latest.json)")
    # docs/performance.md and its chart, drawn with matplotlib from the load-test venv.
    subprocess.run([str(DRIVER_PYTHON), str(HERE / "performance_page.py"), str(path)], check=True)
    failed = missed(report)
    if failed:
        print(f"missed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
