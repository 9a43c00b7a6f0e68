"""Keyword search over many customers, timed through the gateway on PostgreSQL.

    .venv/bin/python loadtests/bench/search_customers.py [--customers 100000] [--queries 400]

Starts the whole system on throwaway PostgreSQL databases and a fresh
RabbitMQ vhost (as the end-to-end tests do), seeds the customers straight
into the customers database (seeding through the API would time the import,
not the search), then runs keyword searches one after another as an admin
(who sees everyone: the widest search) and as a sales rep (own customers
only), and prints latency percentiles per kind of query.

Goal (issue 3): p95 under 150 ms with 100,000 customers on a 2-core machine.
"""
import argparse
import random
import statistics
import sys
import time
import uuid
from datetime import timedelta

from sqlalchemy import create_engine, insert, text

from crm_common.testing_system import ADMIN_EMAIL, ADMIN_PASSWORD, login, running_system
from crm_common.types import utcnow
from customers import search
from customers.models import Customer, CustomerIdentifier, CustomerTag

SURNAMES_ZH = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹彭曾肖田董袁潘于蒋蔡余杜叶程苏魏吕丁任沈姚卢姜崔钟谭陆汪范金石廖贾夏韦付方白邹孟熊秦邱江尹薛闫段雷侯龙史陶黎贺顾毛郝龚邵万钱严覃武戴莫孔向汤"
GIVEN_ZH = "伟芳娜敏静丽强磊军洋勇艳杰娟涛明超秀霞平刚桂英华玉兰萍红鹏辉建国志文斌波宁海燕晨星雪梅琳晶欣宇浩然"
FIRST_EN = ["James", "Mary", "John", "Patricia", "Robert", "Jennifer", "Michael", "Linda", "William", "Elizabeth",
            "David", "Barbara", "Richard", "Susan", "Joseph", "Jessica", "Thomas", "Sarah", "Charles", "Karen",
            "Zoë", "José", "François", "Björn", "Søren", "Anaïs", "Renée", "Jürgen", "Chloé", "Noël"]
LAST_EN = ["Smith", "Johnson", "Williams", "Brown", "Jones", "Garcia", "Miller", "Davis", "Rodriguez", "Martinez",
           "Hernandez", "Lopez", "Gonzalez", "Wilson", "Anderson", "Thomas", "Taylor", "Moore", "Jackson", "Martin",
           "Müller", "Schröder", "Núñez", "Åberg", "Dubois", "Lefèvre", "Østergaard", "Hoffmann", "Wagner", "Becker"]
COMPANY_WORDS = ["Acme", "Globex", "Initech", "Umbrella", "Stark", "Wayne", "Tyrell", "Cyberdyne", "Soylent", "Hooli",
                 "Vandelay", "Wonka", "Gringotts", "Monarch", "Oscorp", "Pied Piper", "Aperture", "Black Mesa",
                 "Massive Dynamic", "Nakatomi", "Sirius", "Zorg", "Rekall", "Virtucon", "Prestige", "Dunder"]
COMPANY_KINDS = ["Trading", "Logistics", "Software", "Foods", "Machinery", "Textiles", "Pharma", "Energy"]
COMPANY_ZH = ["星辰", "华夏", "东方", "长城", "天宇", "恒通", "鼎盛", "蓝海", "金桥", "新锐", "远航", "宏图"]
CITIES_ZH = ["北京", "上海", "广州", "深圳", "杭州", "南京", "成都", "武汉"]
TRADES_ZH = ["科技", "贸易", "物流", "食品", "机械", "纺织", "医药", "能源"]
TAGS = ["vip", "east", "west", "fair-2026", "partner", "key-account"]


def fake_customer(rng, owner_ids, now):
    kind = rng.random()
    if kind < 0.35:
        name, company = rng.choice(SURNAMES_ZH) + "".join(rng.choices(GIVEN_ZH, k=rng.choice((1, 2)))), None
        kind = "person"
    elif kind < 0.65:
        name, company = f"{rng.choice(FIRST_EN)} {rng.choice(LAST_EN)}", None
        kind = "person"
    elif kind < 0.85:
        name = f"{rng.choice(COMPANY_WORDS)} {rng.choice(COMPANY_KINDS)} {rng.randint(1, 999)} Ltd"
        company, kind = None, "company"
    else:
        name = f"{rng.choice(CITIES_ZH)}{rng.choice(COMPANY_ZH)}{rng.choice(TRADES_ZH)}{rng.randint(1, 99)}有限公司"
        company, kind = None, "company"
    if kind == "person" and rng.random() < 0.5:
        company = f"{rng.choice(COMPANY_WORDS)} {rng.choice(COMPANY_KINDS)}"
    customer_id = str(uuid.uuid4())
    phone = f"+86139{rng.randint(0, 99999999):08d}"
    email = f"c{customer_id[:12]}@example.com"
    owner_id = rng.choice(owner_ids)
    created = now - timedelta(minutes=rng.randint(0, 60 * 24 * 365))
    row = {
        "id": customer_id, "kind": kind, "name": name,
        "company": {"name": company} if company else {},
        "contact": {"phones": [phone], "emails": [email], "address": {}},
        "owner_id": owner_id, "owner_team_id": "east", "lifecycle_stage": rng.choice(("lead", "prospect", "customer")),
        "lifecycle_changed_at": created, "lifecycle_dates": {}, "tier": rng.choice(("A", "B", "C", "D", None)),
        "region": rng.choice(("east", "west", "north", "south")), "industry": rng.choice(COMPANY_KINDS),
        "source": rng.choice(("web", "fair", "referral")), "notes": None, "custom_fields": {}, "external_id": None,
        "search_text": search.search_text(name, company),
        "dedupe_key": search.dedupe_key(name, company if kind == "person" else None),
        "next_followup_at": None, "merged_into_id": None, "created_by": owner_id,
        "created_at": created, "updated_at": created, "deleted_at": None, "version": 1,
    }
    identifiers = [{"customer_id": customer_id, "kind": "phone", "value": phone},
                   {"customer_id": customer_id, "kind": "email", "value": email}]
    tags = [{"customer_id": customer_id, "tag": tag} for tag in rng.sample(TAGS, rng.randint(0, 2))]
    return row, identifiers, tags


def seed(db_url, count, owner_ids, batch=5000):
    rng = random.Random(42)
    now = utcnow()
    engine = create_engine(db_url)
    started = time.perf_counter()
    with engine.begin() as connection:
        for offset in range(0, count, batch):
            rows, identifiers, tags = [], [], []
            for _ in range(min(batch, count - offset)):
                row, row_identifiers, row_tags = fake_customer(rng, owner_ids, now)
                rows.append(row)
                identifiers += row_identifiers
                tags += row_tags
            connection.execute(insert(Customer.__table__), rows)
            connection.execute(insert(CustomerIdentifier.__table__), identifiers)
            if tags:
                connection.execute(insert(CustomerTag.__table__), tags)
        connection.execute(text("ANALYZE customers; ANALYZE customer_identifiers; ANALYZE customer_tags"))
    engine.dispose()
    return time.perf_counter() - started


def query_mix(rng):
    """(kind, term) pairs: common and rare, whole and partial, Chinese and accented English."""
    queries = []
    for _ in range(40):
        queries += [
            ("chinese surname", rng.choice(SURNAMES_ZH)),
            ("chinese 2-char", rng.choice(COMPANY_ZH)),
            ("english name", rng.choice(LAST_EN)),
            ("partial word", rng.choice(LAST_EN + COMPANY_WORDS)[:4].lower()),
            ("accent-free", search.fold(rng.choice(["Müller", "Núñez", "Zoë", "Chloé", "Søren"]))),
            ("two words", f"{rng.choice(COMPANY_WORDS)} {rng.choice(COMPANY_KINDS)}".lower()),
            ("company + number", f"{rng.choice(COMPANY_WORDS)} {rng.choice(COMPANY_KINDS)} {rng.randint(1, 999)}"),
            ("no match", "zqxj" + str(rng.randint(0, 99))),
        ]
    rng.shuffle(queries)
    return queries


def percentile(values, fraction):
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(fraction * (len(ordered) - 1))))]


def run_queries(api, queries, label):
    timings, by_kind, results = [], {}, 0
    for kind, term in queries:
        started = time.perf_counter()
        response = api.get("/customers", params={"q": term})
        elapsed = (time.perf_counter() - started) * 1000
        if response.status_code != 200:
            sys.exit(f"search for {term!r} failed: {response.status_code} {response.text}")
        results += len(response.json()["items"])
        timings.append(elapsed)
        by_kind.setdefault(kind, []).append(elapsed)
    print(f"\n{label}: {len(timings)} searches, {results} results in total")
    print(f"  {'query kind':<18} {'n':>4} {'p50 ms':>8} {'p95 ms':>8} {'max ms':>8}")
    for kind, values in sorted(by_kind.items()):
        print(f"  {kind:<18} {len(values):>4} {statistics.median(values):>8.1f} "
              f"{percentile(values, 0.95):>8.1f} {max(values):>8.1f}")
    p50, p95, p99 = (percentile(timings, f) for f in (0.5, 0.95, 0.99))
    print(f"  {'all':<18} {len(timings):>4} {p50:>8.1f} {p95:>8.1f} {max(timings):>8.1f}   (p99 {p99:.1f} ms)")
    return p95


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--customers", type=int, default=100_000)
    parser.add_argument("--queries", type=int, default=320, help="searches per caller")
    parser.add_argument("--goal-ms", type=float, default=150.0)
    args = parser.parse_args()

    with running_system("bench") as system:
        admin = login(system, ADMIN_EMAIL, ADMIN_PASSWORD)
        rep_password = "bench rep password 1"
        rep = admin.post("/users", json={"email": "rep@bench.example", "name": "Bench Rep", "role": "sales",
                                         "team_id": "east", "password": rep_password}).json()
        owners = [rep["id"]] + [str(uuid.uuid4()) for _ in range(9)]
        seconds = seed(system.env["CRM_CUSTOMERS_DB_URL"], args.customers, owners)
        print(f"seeded {args.customers} customers in {seconds:.1f} s")
        rep_api = login(system, "rep@bench.example", rep_password)
        rng = random.Random(7)
        for api in (admin, rep_api):  # warm caches and connections
            for _, term in query_mix(rng)[:20]:
                api.get("/customers", params={"q": term})
        queries = query_mix(rng)[: args.queries]
        worst = max(run_queries(admin, queries, "admin (all customers)"),
                    run_queries(rep_api, queries, "sales rep (own customers, ~10%)"))
    verdict = "meets" if worst < args.goal_ms else "MISSES"
    print(f"\nkeyword search p95: {worst:.1f} ms with {args.customers} customers: {verdict} the {args.goal_ms:.0f} ms goal")
    return 0 if worst < args.goal_ms else 1


if __name__ == "__main__":
    sys.exit(main())
