"""The data `make bench` measures on, made through the system itself and kept for later runs.

Made once (about ten minutes here), then reused while its parameters stay the same:

1. A system starts on empty databases (crm_common.testing_system, as the end-to-end tests do).
2. Through the public API, as the admin: 5 managers and 50 sales reps in 5 teams of uneven
   size, then 100,000 customers through the customers import (people and companies, phones,
   emails, addresses, tags; owners skewed as real books are: a few reps own much). The
   customers service writes them as it writes any customer (sealed contact details, blind
   index, history, outbox), and every consumer (sales, notifications, reporting) takes their
   events.
3. A year or two of sales for those customers and owners (250,000 orders with 1,000,000
   lines, 50,000 opportunities and their stage changes, 200,000 follow-ups, 20,000 contracts)
   as the events sales and customers publish, applied by the reporting service's own
   documented replay command (python -m reporting.replay): the rows are those reporting's
   event handlers write, with its de-duplication records, and orders paid and fulfilled after
   they were placed are rows updated twice, as in a live database.
4. Once every service's outbox and every queue is empty, the system stops and each service's
   database is kept as a PostgreSQL template (crm_bench_data_<service>), its parameters in a
   comment; the keyring the data is sealed with, the users and the customers (id, owner) go
   to var/bench/data/. On SQLite (``parameters(database="sqlite")``, `make bench BENCH_DB=sqlite`)
   the system runs on SQLite files, as the default stack does, and var/bench/data-sqlite/ keeps
   the files (analysed, their write-ahead log folded in) with the rest.

Nothing is vacuumed: dead rows and bloat from the updates stay, as in a live database. The
tables are ANALYZEd once the data is made, which is what autovacuum's auto-analyze does on a
live server after writes like these; it matters here because test servers (this machine's
included) may run with autovacuum off, and a copy made from a template never counts as
changed, so without it the planner would guess at 1,000,000-row tables forever. A run starts
its system on copies of the templates, so what a run writes (its own creates) never reaches
the next one.

The sales events exist only in reporting: the sales database holds the customers' replica but
not those orders, so /reports/consistency disagrees on this data set by design.
"""
import hashlib
import itertools
import json
import random
import shutil
import sqlite3
import subprocess
import sys
import time
import uuid
from contextlib import closing
from datetime import datetime, timedelta, timezone
from pathlib import Path

import requests

import psycopg2
from sqlalchemy.engine import make_url

from crm_common.testing import _postgres_admin_connection, postgres_base_url, wait_until
from crm_common.testing_system import ADMIN_EMAIL, ADMIN_PASSWORD, RABBIT_API, running_system

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(ROOT / "loadtests"))

import seed  # noqa: E402  (loadtests/seed.py: customers through the import API)

SERVICES = ("customers", "sales", "notifications", "reporting", "gateway")
TEMPLATE = "crm_bench_data_{service}"
DATA_DIR = ROOT / "var" / "bench" / "data"
# Changing what is generated changes this: a stored data set of another generation is rebuilt.
GENERATION = 1
TEAMS = ("team-north", "team-south", "team-east", "team-west", "team-central")
TEAM_SHARES = (0.28, 0.24, 0.20, 0.16, 0.12)
FOLLOWUP_TYPES = ("call", "email", "meeting", "visit", "note")
CONTRACT_STATUSES = ("draft", "pending_approval", "approved", "signed", "active", "expired", "terminated")
CONTRACT_WEIGHTS = (4, 2, 2, 8, 50, 28, 6)
PASSWORD = "bench data password 1"
QUIET_SECONDS = 1800


def parameters(customers=100_000, lines=1_000_000, reps=50, seed_number=6, database="postgresql"):
    """What the data set holds; the rest is scaled from the customers (100,000: 50,000 opportunities,
    200,000 follow-ups, 20,000 contracts). ``database``: "postgresql" (templates on CRM_TEST_PG_URL's
    server) or "sqlite" (files, as the default stack keeps its data; BENCH_DB=sqlite)."""
    params = {"customers": customers, "lines": lines, "opportunities": customers // 2, "followups": customers * 2,
              "contracts": customers // 5, "reps": reps, "seed": seed_number, "generation": GENERATION}
    if database != "postgresql":  # the PostgreSQL data set's parameters stay what they were
        params["database"] = database
    return params


def database_of(params):
    return params.get("database", "postgresql")


def data_dir(params):
    """Where the data set's manifest and keyring are kept (and, on SQLite, its files)."""
    return DATA_DIR if database_of(params) == "postgresql" else DATA_DIR.with_name(f"data-{database_of(params)}")


def template_names(params):
    """service -> what its database starts as a copy of: a template database, or a SQLite file."""
    if database_of(params) == "sqlite":
        return {service: str(data_dir(params) / f"{service}.db") for service in SERVICES}
    return {service: TEMPLATE.format(service=service) for service in SERVICES}


# --- the stored data set -----------------------------------------------------------------

def stored(params):
    """The description of the stored data set when it was made with ``params``; else None."""
    manifest = data_dir(params) / "manifest.json"
    if not manifest.exists():
        return None
    described = json.loads(manifest.read_text())
    if described.get("params") != params:
        return None
    if database_of(params) == "sqlite":
        # The files are written before the manifest that names their parameters.
        return described if all(Path(path).exists() for path in template_names(params).values()) else None
    names = [TEMPLATE.format(service=service) for service in SERVICES]
    admin = _postgres_admin_connection()
    with admin.cursor() as cursor:
        cursor.execute("SELECT datname, shobj_description(oid, 'pg_database') FROM pg_database"
                       " WHERE datname = ANY(%s)", (names,))
        comments = dict(cursor.fetchall())
    admin.close()
    expected = json.dumps(params, sort_keys=True)
    if all(comments.get(name) == expected for name in names):
        return described
    return None


def prepare(params):
    """The data set for ``params``: the stored one, or a new one made now. Returns its description:
    {"templates": {service: database}, "keys_file", "users": [...], "customers": {...}, ...}."""
    described = stored(params)
    if described:
        print(f"reusing the bench data set ({params['customers']} customers, {params['lines']} order lines)",
              flush=True)
        return up_to_date(described, params)
    return build(params)


def migrations_version():
    """A digest of every service's migration scripts: it changes when any schema does."""
    digest = hashlib.sha256()
    for path in sorted(ROOT.glob("services/*/*/migrations/versions/*.py")):
        digest.update(str(path.relative_to(ROOT)).encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


def up_to_date(described, params):
    """The stored templates on the services' current schemas, analysed.

    A deployment migrates its databases and autovacuum then analyses the tables a migration made
    or filled; here autovacuum may be off, and each bench run would otherwise migrate its copies
    and measure tables without statistics. So once the migrations change, the system is started on
    the templates (each service migrates its own database as it starts), stopped, and its
    databases, analysed, become the templates again."""
    version = migrations_version()
    if described.get("migrations") == version:
        return described
    print("bringing the bench data set to the current schemas", flush=True)
    with running_system("benchdata", extra_env={"CRM_DATA_KEYS_FILE": described["keys_file"]},
                        templates=described["templates"], database=database_of(params)) as system:
        system.stop_all()
        keep_as_templates(system, params)
    described = {**described, "migrations": version}
    write_manifest(described)
    return described


def write_manifest(described):
    manifest = data_dir(described["params"]) / "manifest.json"
    manifest.write_text(json.dumps(described))
    manifest.chmod(0o600)


def build(params):
    started = time.monotonic()
    directory = data_dir(params)
    directory.mkdir(parents=True, exist_ok=True)
    directory.chmod(0o700)
    keys_file = directory / "data-keys.json"
    keys_file.unlink(missing_ok=True)  # a new data set, sealed with a new keyring
    print(f"making the bench data set: {json.dumps(params)}", flush=True)
    with running_system("benchdata", extra_env={"CRM_DATA_KEYS_FILE": str(keys_file)}, test_timers=False,
                        database=database_of(params)) as system:
        gateway = seed.Gateway(system.gateway_url, ADMIN_EMAIL, ADMIN_PASSWORD)
        users = make_users(gateway, params)
        reps = [user for user in users if user["role"] == "sales"]
        rng = random.Random(params["seed"])
        weights = [1 / rank ** 0.6 for rank in range(1, len(reps) + 1)]
        # seed.customer_row picks an owner uniformly from the list: repeats make the skew.
        owner_pool = [rep["id"] for rep, weight in zip(reps, weights) for _ in range(round(weight * 20))]
        rng.shuffle(owner_pool)
        seeder = seed.Seeder(gateway, params["seed"], threads=4,
                             today=datetime.now(timezone.utc).replace(hour=0, minute=0, second=0, microsecond=0))
        for first in range(0, params["customers"], seed.IMPORT_CHUNK_ROWS):
            size = min(seed.IMPORT_CHUNK_ROWS, params["customers"] - first)
            report = seeder.import_chunk(seed.customers_csv(params["seed"], first, size, owner_pool),
                                         f"bench-{first}")
            if report["created"] != size:
                sys.exit(f"the import of customers {first}-{first + size} created {report['created']}: "
                         f"{json.dumps(report)[:2000]}")
        print(f"imported {params['customers']} customers in {time.monotonic() - started:.0f} s", flush=True)
        customers = customer_owners(gateway, seed.seed_tag(params["seed"]))
        wait_until_quiet(system)

        pipeline = default_pipeline(system)
        events = directory / "sales-events.jsonl"
        count = write_events(events, params, customers, users, pipeline)
        system.stop("reporting")
        replay_started = time.monotonic()
        # Reporting's own command, on reporting's database (system.env names it), the service stopped.
        subprocess.run([sys.executable, "-m", "reporting.replay", str(events)], check=True, env=system.env)
        print(f"replayed {count} events into reporting in {time.monotonic() - replay_started:.0f} s", flush=True)
        events.unlink()
        system.start("reporting")
        wait_until(system.ready, 60, interval=0.25, message="gateway /ready")
        wait_until_quiet(system)

        system.stop_all()
        keep_as_templates(system, params)
    described = {"params": params, "keys_file": str(keys_file), "password": PASSWORD, "users": users,
                 "customers": customers, "pipeline": pipeline,
                 "templates": template_names(params),
                 "migrations": migrations_version()}
    write_manifest(described)
    print(f"made the bench data set in {time.monotonic() - started:.0f} s", flush=True)
    return described


def keep_as_templates(system, params):
    """Each service's database (the system stopped), analysed, as what later runs start from."""
    if database_of(params) == "sqlite":
        for service, kept in template_names(params).items():
            path = system.env[f"CRM_{service.upper()}_DB_URL"].removeprefix("sqlite:///")
            with closing(sqlite3.connect(path)) as connection:
                connection.execute("ANALYZE")
                connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # everything in the one file
            shutil.copyfile(path, kept)
            Path(kept).chmod(0o600)
        return
    admin = _postgres_admin_connection()
    comment = json.dumps(params, sort_keys=True)
    with admin.cursor() as cursor:
        for service in SERVICES:
            name = TEMPLATE.format(service=service)
            source = system.env[f"CRM_{service.upper()}_DB_URL"].rsplit("/", 1)[1]
            analyze(source)
            cursor.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            cursor.execute(f'CREATE DATABASE "{name}" TEMPLATE "{source}"')
            cursor.execute(f'COMMENT ON DATABASE "{name}" IS %s', (comment,))
    admin.close()


def analyze(database):
    """Statistics on every table of ``database``, as autovacuum's auto-analyze would keep them."""
    url = make_url(postgres_base_url())
    connection = psycopg2.connect(host=url.host or "127.0.0.1", port=url.port or 5432,
                                  user=url.username or "postgres", password=url.password, dbname=database)
    connection.autocommit = True
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE")
    connection.close()


# --- through the API ------------------------------------------------------------------------

def make_users(gateway, params):
    """A manager per team and the reps, spread over the teams unevenly; returns them as created."""
    bounds = [round(share * params["reps"]) for share in itertools.accumulate(TEAM_SHARES)]
    people = [("manager", team, f"manager.{team}") for team in TEAMS]
    people += [("sales", TEAMS[next(t for t, bound in enumerate(bounds) if n < bound)], f"rep{n + 1:02d}")
               for n in range(params["reps"])]
    users = []
    for n, (role, team, handle) in enumerate(people):
        body = {"email": f"bench.{handle}@bench.example", "name": f"Bench {handle}", "role": role,
                "team_id": team, "password": PASSWORD}
        user, _ = gateway.create("/users", body, f"bench-user-{n}")
        users.append({"id": user["id"], "email": body["email"], "role": role, "team_id": team})
    return users


def customer_owners(gateway, tag):
    """{customer id: owner id} of every customer with ``tag``, page by page as a frontend lists them."""
    owners, cursor = {}, None
    while True:
        page = gateway.get("/customers", tag=tag, limit=200, **({"cursor": cursor} if cursor else {})).json()
        owners.update((customer["id"], customer["owner_id"]) for customer in page["items"])
        cursor = page["next_cursor"]
        if not cursor:
            return owners


def default_pipeline(system):
    """The default pipeline's id and its stages (key, position, outcome), as the API shows them."""
    token = requests.post(system.gateway_url + "/api/v1/auth/login", timeout=30,
                          json={"email": ADMIN_EMAIL, "password": ADMIN_PASSWORD}).json()["access_token"]
    pipelines = requests.get(system.gateway_url + "/api/v1/pipelines", timeout=30,
                             headers={"Authorization": f"Bearer {token}"}).json()["items"]
    pipeline = next((p for p in pipelines if p.get("is_default")), pipelines[0])
    return {"id": pipeline["id"],
            "stages": [[stage["key"], stage["position"], stage["outcome"]] for stage in pipeline["stages"]]}


def wait_until_quiet(system):
    """Until every service has published all it wrote and every queue of the system is empty
    (twice in a row: a consumer's effect may publish more)."""
    vhost = system.env["AMQP_URI"].rsplit("/", 1)[1]

    def pending():
        queues = requests.get(f"{RABBIT_API}/api/queues/{vhost}", timeout=10).json()
        waiting = sum(queue.get("messages", 0) for queue in queues if not queue["name"].startswith("rpc.reply"))
        outboxes = 0
        pages = [system.metrics(service) for service in SERVICES if service != "gateway"]
        pages.append(requests.get(system.gateway_url + "/metrics", timeout=5).text)
        for page in pages:
            for line in page.splitlines():
                if line.startswith("crm_outbox_pending"):
                    outboxes += float(line.rsplit(" ", 1)[1])
        return waiting + outboxes

    quiet_polls = []

    def quiet():
        quiet_polls.append(pending() == 0)
        return quiet_polls[-2:] == [True, True]
    wait_until(quiet, QUIET_SECONDS, interval=2, message="every outbox and queue of the bench system to drain")


# --- the sales history, as events ----------------------------------------------------------------

def envelope(event_type, producer, actor, occurred_at, data):
    return {"event_id": str(uuid.uuid4()), "type": event_type, "version": 1, "occurred_at": occurred_at.isoformat(),
            "producer": producer, "actor": {"user_id": actor["id"], "role": actor["role"],
                                            "team_id": actor["team_id"]},
            "request_id": "bench-data", "data": data}


def money(value):
    return f"{value:.2f}"


def write_events(path, params, customers, users, pipeline):
    """The sales history of ``customers`` as JSON lines of envelopes; returns how many."""
    rng = random.Random(params["seed"] + 1)
    now = datetime.now(timezone.utc).replace(microsecond=0)
    by_id = {user["id"]: user for user in users}
    reps = [user for user in users if user["role"] == "sales"]
    customer_ids = list(customers)
    products = [(str(uuid.UUID(int=rng.getrandbits(128), version=4)), f"SKU-{n:05d}", f"Product {n}")
                for n in range(500)]
    product_weights = [1 / rank ** 1.1 for rank in range(1, len(products) + 1)]
    count = 0
    with open(path, "w", encoding="utf-8") as out:
        def emit(event_type, producer, actor, occurred_at, data):
            nonlocal count
            out.write(json.dumps(envelope(event_type, producer, actor, occurred_at, data)))
            out.write("\n")
            count += 1

        # Orders: placed over the last 24 months, more lately; 1-12 lines (mean 4); a heavy tail of
        # big buyers. All are placed first, then paid, then fulfilled: later events for the same orders.
        order_count = params["lines"] // 4
        sizes = [min(12, max(1, int(rng.expovariate(1 / 3.2)) + 1)) for _ in range(order_count)]
        difference = params["lines"] - sum(sizes)
        while difference:
            index = rng.randrange(order_count)
            step = 1 if difference > 0 else -1
            if 1 <= sizes[index] + step <= 12:
                sizes[index] += step
                difference -= step
        buyers = rng.choices(customer_ids, [min(100.0, rng.paretovariate(1.2)) for _ in customer_ids], k=order_count)
        line_products = iter(rng.choices(products, product_weights, k=params["lines"]))
        later = {"paid": [], "fulfilled": [], "cancelled": []}
        for n in range(order_count):
            customer_id = buyers[n]
            owner = by_id[customers[customer_id]] if rng.random() >= 0.05 else rng.choice(reps)
            placed = now - timedelta(seconds=int(730 * 86400 * rng.random() ** 1.3))
            currency = "CNY" if rng.random() < 0.88 else "USD"
            lines, total = [], 0
            for position in range(1, sizes[n] + 1):
                product_id, sku, description = next(line_products)
                quantity = rng.choice((1, 1, 1, 2, 2, 3, 5, 10, 20, 50))
                line_total = round(quantity * (10 + 990 * rng.random() ** 2) * (1 if currency == "CNY" else 0.14), 2)
                total += line_total
                lines.append({"position": position, "product_id": product_id, "sku": sku, "description": description,
                              "quantity": f"{quantity}.000", "total": money(line_total)})
            order = {"id": str(uuid.uuid4()), "customer_id": customer_id, "owner_id": owner["id"],
                     "owner_team_id": owner["team_id"], "status": "confirmed", "currency": currency,
                     "total": money(total), "paid_amount": "0.00", "confirmed_at": placed.isoformat(),
                     "version": 1, "lines": lines}
            emit("order.placed", "sales", owner, placed, order)
            outcome = rng.choices(("confirmed", "paid", "fulfilled", "cancelled"), (12, 15, 68, 5))[0]
            if outcome != "confirmed":
                later["cancelled" if outcome == "cancelled" else "paid"].append((order, owner, placed))
            if outcome == "fulfilled":
                later["fulfilled"].append((order, owner, placed))
        for order, owner, placed in later["paid"]:
            emit("order.paid", "sales", owner, placed + timedelta(days=rng.randint(1, 30)),
                 {**order, "status": "paid", "paid_amount": order["total"], "version": 2, "lines": []})
        for order, owner, placed in later["fulfilled"]:
            emit("order.fulfilled", "sales", owner, placed + timedelta(days=rng.randint(30, 60)),
                 {**order, "status": "fulfilled", "paid_amount": order["total"], "version": 3, "lines": []})
        for order, owner, placed in later["cancelled"]:
            emit("order.cancelled", "sales", owner, placed + timedelta(days=rng.randint(1, 10)),
                 {**order, "status": "cancelled", "version": 2, "lines": []})

        # Opportunities through the default pipeline's stages; older ones mostly closed.
        stages = [tuple(stage) for stage in sorted(pipeline["stages"], key=lambda stage: stage[1])]
        open_stages = [stage for stage in stages if stage[2] == "open"]
        won = next(stage for stage in stages if stage[2] == "won")
        lost = next(stage for stage in stages if stage[2] == "lost")
        moves = []  # (opportunity, owner, path, times), emitted after every creation
        for _ in range(params["opportunities"]):
            customer_id = rng.choice(customer_ids)
            owner = by_id[customers[customer_id]]
            created = now - timedelta(seconds=int(730 * 86400 * rng.random() ** 1.2))
            path = list(open_stages[:rng.randint(1, len(open_stages))])
            if rng.random() < min(0.9, (now - created).days / 120):
                path.append(won if rng.random() < 0.35 else lost)
            times = [created]
            for _ in path[1:]:
                step = timedelta(seconds=int(86400 * rng.expovariate(1 / 12)))
                times.append(min(now, times[-1] + step))
            currency = "CNY" if rng.random() < 0.88 else "USD"
            opportunity = {"id": str(uuid.uuid4()), "customer_id": customer_id, "owner_id": owner["id"],
                           "owner_team_id": owner["team_id"], "pipeline_id": pipeline["id"],
                           "amount": money(rng.lognormvariate(10, 1.2) * (1 if currency == "CNY" else 0.14)),
                           "currency": currency, "created_at": created.isoformat(),
                           "expected_close_date": (now.date() + timedelta(days=rng.randint(-30, 400))).isoformat()}
            emit("opportunity.created", "sales", owner, created, opportunity_version(opportunity, path, times, 0))
            if len(path) > 1:
                moves.append((opportunity, owner, path, times))
        for step in itertools.count(1):
            going = [move for move in moves if len(move[2]) > step]
            if not going:
                break
            for opportunity, owner, path, times in going:
                outcome = path[step][2]
                event_type = {"won": "opportunity.won", "lost": "opportunity.lost"}.get(outcome,
                                                                                        "opportunity.stage_changed")
                emit(event_type, "sales", owner, times[step], opportunity_version(opportunity, path, times, step))

        # Follow-ups: two thirds of the customers were contacted, some far more often.
        contacted = rng.sample(customer_ids, int(len(customer_ids) * 0.65))
        for customer_id in rng.choices(contacted, [rng.paretovariate(1.5) for _ in contacted],
                                       k=params["followups"]):
            owner = by_id[customers[customer_id]]
            logged_by = owner if rng.random() < 0.9 else rng.choice(reps)
            occurred = now - timedelta(seconds=int(730 * 86400 * rng.random() ** 1.4))
            emit("followup.logged", "customers", logged_by, occurred, {
                "id": str(uuid.uuid4()), "customer_id": customer_id, "owner_id": owner["id"],
                "owner_team_id": owner["team_id"], "logged_by": logged_by["id"],
                "type": rng.choices(FOLLOWUP_TYPES, (40, 30, 12, 8, 10))[0], "occurred_at": occurred.isoformat()})

        for n in range(params["contracts"]):
            customer_id = rng.choice(customer_ids)
            owner = by_id[customers[customer_id]]
            status = rng.choices(CONTRACT_STATUSES, CONTRACT_WEIGHTS)[0]
            start = now.date() - timedelta(days=rng.randint(0, 3 * 365))
            end = start + timedelta(days=rng.choice((180, 365, 365, 730)))
            if status == "expired":
                end = min(end, now.date() - timedelta(days=1))
            currency = "CNY" if rng.random() < 0.9 else "USD"
            emit(f"contract.{'signed' if status in ('signed', 'active') else 'updated'}", "sales", owner, now, {
                "id": str(uuid.uuid4()), "customer_id": customer_id, "owner_id": owner["id"],
                "owner_team_id": owner["team_id"], "title": f"Contract {n}", "status": status,
                "value": money(rng.lognormvariate(11, 1) * (1 if currency == "CNY" else 0.14)), "currency": currency,
                "start_date": start.isoformat(), "end_date": end.isoformat(), "version": 1})
    return count


def opportunity_version(opportunity, path, times, step):
    """The opportunity as its event at ``step`` of ``path`` describes it, with that stage change."""
    key, position, outcome = path[step]
    previous = path[step - 1][0] if step else None
    # 10% in the first stage, 20 points more in each later open one.
    probability = {"open": min(90, 10 + 20 * min(step, 4)), "won": 100, "lost": 0}[outcome]
    return {**opportunity, "stage": key, "stage_position": position, "status": outcome, "probability": probability,
            "closed_at": times[step].isoformat() if outcome != "open" else None, "version": step + 1,
            "stage_change": {
                "stage_change_id": str(uuid.uuid4()), "opportunity_id": opportunity["id"],
                "pipeline_id": opportunity["pipeline_id"], "owner_id": opportunity["owner_id"],
                "owner_team_id": opportunity["owner_team_id"], "from_stage": previous, "to_stage": key,
                "to_stage_position": position, "to_outcome": outcome, "changed_at": times[step].isoformat(),
                "seconds_in_previous_stage": int((times[step] - times[step - 1]).total_seconds()) if step else None}}
