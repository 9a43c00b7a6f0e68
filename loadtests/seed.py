"""Fill a running CRM with realistic test data through its public API.

    .venv/bin/python loadtests/seed.py --customers 100000 [--seed 42] [--host http://127.0.0.1:8000]
    make seed N=100000 SEED=42            (against `make up`)

Signs in as the admin (SEED_ADMIN_EMAIL, default admin@example.com; password
SEED_ADMIN_PASSWORD or var/admin-password, as `make up` writes it) and creates,
every count scaled from N customers:

    users          a manager and a few sales reps (east and west teams), owners of the rest
    customers      N people and companies, Chinese and English names, CN mobile and
                   +1/+44 numbers, emails; through the customers import (CSV in chunks,
                   the import's own validation), tagged seed-<SEED>
    contacts       about one per two companies
    follow-ups     about one per customer, at most --max-followups
    products       N/10, at most 200 (CNY and some USD)
    opportunities  N/10, moved through the pipeline's stages to spread over all of them
    orders         N/10 with 1-5 lines, most confirmed, some paid in part or in full
    contracts      N/50, some submitted for approval
    tasks          N/20, assigned to the reps

Everything else goes through the same endpoints a frontend uses, from a
thread pool (--threads, a requests.Session per thread).

Deterministic: each record is drawn from random.Random("<seed>/<entity>/<n>"),
so the same seed gives the same data whatever order the threads run in. Dates
are relative to today (UTC).

Rerunning with the same seed adds nothing: customers carry external ids
seed<SEED>-<n>, which the import skips when it has them already, and every
other record is created with an Idempotency-Key seed<SEED>/<entity>/<n>, so the
gateway answers a repeat with the first outcome. Such a record is counted as
"existing" and its later steps (stage moves, confirmation, payments,
submission) are left as they are. A rerun on another day draws other dates:
the gateway refuses the reused keys (422 on Idempotency-Key), and the record
is counted as "differs" (made earlier with other data, kept as it is). A run
that was interrupted is completed by a rerun, except the later steps of the
records it had already made.

The import creates every row (on_duplicate=create): two customers may share a
name, as real people do, where the duplicate rules would merge them.

The gateway of `make up` limits each account to CRM_RATE_LIMIT_PER_MINUTE
requests (default 1200): seeding waits out each 429, so for large N start the
system with CRM_RATE_LIMIT_PER_MINUTE=0 (no limit).
"""
import argparse
import csv
import io
import json
import os
import random
import sys
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, time as day_time, timedelta, timezone
from decimal import Decimal
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parents[1]

SURNAMES_ZH = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹彭曾肖田董袁潘于蒋蔡余杜叶程苏魏吕丁任沈姚卢"
GIVEN_ZH = "伟芳娜敏静丽强磊军洋勇艳杰娟涛明超秀霞平刚桂英华玉兰萍红鹏辉建国志文斌波宁海燕晨星雪梅琳晶欣宇浩然"
FIRST_EN = ["James", "Mary", "John", "Patricia", "Robert", "Jennifer", "Michael", "Linda", "William", "Emma",
            "David", "Olivia", "Richard", "Susan", "Joseph", "Jessica", "Thomas", "Sarah", "Zoë", "José",
            "François", "Björn", "Chloé", "Oliver", "Amelia", "Harry", "Isla", "George", "Grace", "Noah"]
LAST_EN = ["Smith", "Johnson", "Williams", "Brown", "Jones", "Garcia", "Miller", "Davis", "Wilson", "Taylor",
           "Anderson", "Thomas", "Moore", "Jackson", "Martin", "Müller", "Dubois", "Evans", "Walker", "Wright",
           "Hughes", "Clarke", "O'Brien", "Núñez", "Kim", "Nguyen", "Chen", "Wang", "Schmidt", "Rossi"]
CITIES_ZH = ["北京", "上海", "广州", "深圳", "杭州", "南京", "成都", "武汉", "苏州", "西安"]
COMPANY_WORDS_ZH = ["星辰", "华夏", "东方", "长城", "天宇", "恒通", "鼎盛", "蓝海", "金桥", "新锐", "远航", "宏图"]
TRADES_ZH = ["科技", "贸易", "物流", "食品", "机械", "纺织", "医药", "能源", "电子", "建材"]
COMPANY_WORDS_EN = ["Acme", "Globex", "Initech", "Umbrella", "Stark", "Wayne", "Tyrell", "Hooli", "Vandelay",
                    "Wonka", "Monarch", "Aperture", "Nakatomi", "Sirius", "Prestige", "Dunder", "Oceanic", "Zenith"]
TRADES_EN = ["Trading", "Logistics", "Software", "Foods", "Machinery", "Textiles", "Pharma", "Energy", "Electronics"]
COMPANY_SUFFIX_EN = ["Ltd", "Inc.", "GmbH", "LLC", "plc", "Co."]
INDUSTRIES = ["manufacturing", "retail", "software", "logistics", "healthcare", "education", "energy", "finance"]
REGIONS = ["east", "south", "north", "west", "overseas"]
SOURCES = ["展会", "website", "referral", "cold call", "广告", "partner", "inbound email"]
TAGS = ["vip", "华东", "华南", "展会", "referral", "wholesale", "重点客户", "newsletter", "partner"]
EMAIL_DOMAINS = ["example.com", "example.cn", "example.org", "example.net"]
# Mobile prefixes of China's three carriers (all valid for phonenumbers).
CN_MOBILE_PREFIXES = ["134", "135", "136", "137", "138", "139", "150", "151", "152", "158", "159", "186", "188", "189"]
US_AREA_CODES = ["201", "212", "305", "415", "617", "646", "718", "917"]
PRODUCT_LINES = [("软件许可", "license", "1000", "50000"), ("实施服务", "day", "800", "3000"),
                 ("Cloud subscription", "month", "99", "2000"), ("Support plan", "year", "500", "20000"),
                 ("工业传感器", "piece", "50", "900"), ("Training course", "seat", "200", "1500"),
                 ("服务器", "piece", "8000", "60000"), ("Consulting", "hour", "150", "400")]
FOLLOWUP_SUMMARIES = ["电话沟通了需求，客户对报价感兴趣", "Intro call: discussed their current tools",
                      "上门拜访，演示了产品", "Sent the proposal by email", "客户要求下周再联系",
                      "Meeting with procurement about the contract terms", "微信跟进，确认了预算",
                      "Demo for the operations team went well"]
FOLLOWUP_TYPES = ["call", "meeting", "email", "visit", "note"]
TASK_TITLES = ["准备报价单", "Call back about the renewal", "发送合同草稿", "Prepare the demo environment",
               "确认付款安排", "Check in after the onboarding", "整理拜访记录", "Send the case study"]
LOST_REASONS = ["价格太高", "Chose a competitor", "预算被砍", "No decision", "Timing"]
# Where opportunities end up: a share of them stops at each stage (the rest move on).
STAGE_SHARES = {"qualification": 0.30, "needs_analysis": 0.20, "proposal": 0.15, "negotiation": 0.10,
                "won": 0.15, "lost": 0.10}
PAYMENT_METHODS = ["bank_transfer", "card", "cash", "cheque", "other"]
# How long to keep retrying a refused request while the refusal may pass: a
# customer just imported reaches the sales service's replica through an event.
RETRY_SECONDS = 300
IMPORT_CHUNK_ROWS = 20_000
IMPORT_TIMEOUT_SECONDS = 1800
REQUEST_TIMEOUT_SECONDS = 60


def plan(customers, max_followups):
    """How many of each entity to create for ``customers`` customers."""
    return {
        "reps": max(2, min(8, customers // 2000)),
        "products": max(5, min(200, customers // 10)),
        "followups": min(customers, max_followups),
        "opportunities": max(1, customers // 10),
        "orders": max(1, customers // 10),
        "contracts": max(1, customers // 50),
        "tasks": max(1, customers // 20),
    }


def rng_for(seed, entity, n):
    """The random source of one record: the same whatever thread or order draws it."""
    return random.Random(f"{seed}/{entity}/{n}")


def money(value):
    return str(Decimal(value).quantize(Decimal("0.01")))


# --- what the data looks like --------------------------------------------------

def person_name(rng):
    if rng.random() < 0.6:
        return rng.choice(SURNAMES_ZH) + "".join(rng.choices(GIVEN_ZH, k=rng.choice((1, 2))))
    return f"{rng.choice(FIRST_EN)} {rng.choice(LAST_EN)}"


def company_name(rng):
    if rng.random() < 0.6:
        return (f"{rng.choice(CITIES_ZH)}{rng.choice(COMPANY_WORDS_ZH)}{rng.choice(TRADES_ZH)}"
                f"{rng.randint(1, 999)}有限公司")
    return (f"{rng.choice(COMPANY_WORDS_EN)} {rng.choice(TRADES_EN)} {rng.randint(1, 999)} "
            f"{rng.choice(COMPANY_SUFFIX_EN)}")


def phone_number(rng, unique):
    """A valid E.164 number, a different one for every ``unique`` below 8 * 10**6: mostly CN mobile, some US, UK."""
    kind = rng.random()
    if kind < 0.85:
        return f"+86{rng.choice(CN_MOBILE_PREFIXES)}{unique % 10**8:08d}"
    if kind < 0.93:
        return f"+1{rng.choice(US_AREA_CODES)}{200 + unique // 10**4 % 800:03d}{unique % 10**4:04d}"
    return f"+447{400 + unique // 10**6 % 100:03d}{unique % 10**6:06d}"


def email_address(rng, name, unique):
    local = "".join(ch for ch in name.lower() if ch.isascii() and ch.isalnum()) or "kehu"
    return f"{local}.{unique}@{rng.choice(EMAIL_DOMAINS)}"


def customer_row(seed, n, owner_ids):
    """One CSV row of the customers import (columns named like the fields they fill)."""
    rng = rng_for(seed, "customer", n)
    is_company = rng.random() < 0.4
    name = company_name(rng) if is_company else person_name(rng)
    # Unique per seed and customer, so rows of one run never match each other as duplicates.
    unique = seed % 1000 * 10**5 + n
    phones = [phone_number(rng, unique)] if rng.random() < 0.9 else []
    emails = [email_address(rng, name if not is_company else "info", unique)] if not phones or rng.random() < 0.7 \
        else []
    return {
        "external_id": f"seed{seed}-{n:07d}",
        "kind": "company" if is_company else "person",
        "name": name,
        "company.name": "" if is_company or rng.random() < 0.5 else company_name(rng),
        "company.industry": rng.choice(INDUSTRIES) if is_company else "",
        "phones": ", ".join(phones),
        "emails": ", ".join(emails),
        "address.city": rng.choice(CITIES_ZH + ["Singapore", "London", "New York"]),
        "region": rng.choice(REGIONS),
        "industry": rng.choice(INDUSTRIES),
        "source": rng.choice(SOURCES),
        "tier": rng.choice("ABCCDD"),
        "lifecycle_stage": rng.choice(["lead", "lead", "prospect", "customer", "customer", "churned"]),
        "tags": ", ".join([seed_tag(seed), *rng.sample(TAGS, rng.randint(0, 2))]),
        "owner_id": rng.choice(owner_ids),
    }


def seed_tag(seed):
    return f"seed-{seed}"


def customers_csv(seed, first, count, owner_ids):
    buffer = io.StringIO()
    rows = [customer_row(seed, n, owner_ids) for n in range(first, first + count)]
    writer = csv.DictWriter(buffer, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue().encode("utf-8")


# --- talking to the gateway -------------------------------------------------------

class MadeWithOtherData(Exception):
    """A record an earlier run created from other data (its Idempotency-Key came with other dates)."""


class Gateway:
    """The public API as one signed-in admin, one requests.Session per thread."""

    def __init__(self, host, email, password):
        self.api = host.rstrip("/") + "/api/v1"
        self.credentials = {"email": email, "password": password}
        self.sign_in_lock = threading.Lock()
        self.local = threading.local()
        self.retries = Counter()  # by status: what slowed the run down
        self.token = None
        self.sign_in(None)

    def sign_in(self, expired_token):
        """A fresh access token (they live 15 minutes; a large run takes longer), once for all threads."""
        with self.sign_in_lock:
            if self.token != expired_token:
                return  # another thread has signed in again already
            response = requests.post(self.api + "/auth/login", json=self.credentials,
                                     timeout=REQUEST_TIMEOUT_SECONDS)
            if response.status_code != 200:
                sys.exit(f"sign-in as {self.credentials['email']} failed: {response.status_code} "
                         f"{response.text[:300]}")
            self.token = response.json()["access_token"]

    def session(self):
        if not hasattr(self.local, "session"):
            self.local.session = requests.Session()
        return self.local.session

    def request(self, method, path, headers=None, **kwargs):
        """The response of a request, retried while the refusal is a passing one (see retry_delay)."""
        deadline = time.monotonic() + RETRY_SECONDS
        signed_in_again = False
        while True:
            token = self.token
            response = self.session().request(
                method, self.api + path, headers={**(headers or {}), "Authorization": f"Bearer {token}"},
                timeout=REQUEST_TIMEOUT_SECONDS, **kwargs)
            if response.status_code == 401 and not signed_in_again:
                self.sign_in(token)
                signed_in_again = True
                continue
            delay = retry_delay(response)
            if delay is None or time.monotonic() + delay > deadline:
                return response
            self.retries[response.status_code] += 1
            time.sleep(delay)

    def create(self, path, body, key):
        """POST with an Idempotency-Key: (record, made_now); MadeWithOtherData when the key was used otherwise."""
        response = self.request("POST", path, json=body, headers={"Idempotency-Key": key})
        if response.status_code == 422 and "Idempotency-Key" in problem_fields(response):
            raise MadeWithOtherData(key)
        expect(response, 201, 202)
        return response.json(), response.headers.get("Idempotent-Replayed") != "true"

    def post(self, path, body=None):
        response = self.request("POST", path, json=body or {})
        expect(response, 200, 201)
        return response.json()

    def get(self, path, **params):
        response = self.request("GET", path, params=params)
        expect(response, 200)
        return response


def retry_delay(response):
    """Seconds to wait before sending a request again, or None when its answer is final."""
    if response.status_code == 429:
        return float(response.headers.get("Retry-After", 1))
    if response.status_code == 503:
        return 1.0  # a service or its database is busy or restarting
    if response.status_code == 412:
        return 0.05  # another thread changed the same customer (two of its contacts at once)
    if response.status_code == 422 and "customer_id" in problem_fields(response):
        return 1.0  # the customer.created event is still on its way to the sales service
    return None


def problem_fields(response):
    try:
        return (response.json() or {}).get("errors") or {}
    except ValueError:
        return {}


def expect(response, *statuses):
    if response.status_code not in statuses:
        raise RuntimeError(f"{response.request.method} {response.url}: {response.status_code} {response.text[:300]}")


class Tally:
    """Per entity: made now, existing (made by an earlier run), differs (made earlier from other data),
    failed. Shared by the threads."""

    def __init__(self):
        self.lock = threading.Lock()
        self.counts = {}
        self.first_errors = {}  # entity -> the first few errors

    def add(self, entity, outcome, error=None):
        with self.lock:
            self.counts.setdefault(entity, Counter())[outcome] += 1
            if error is not None:
                self.note_error(entity, error)

    def note_error(self, entity, error):
        errors = self.first_errors.setdefault(entity, [])
        if len(errors) < 3:
            errors.append(str(error)[:400])

    def made(self):
        return sum(counter["made"] for counter in self.counts.values())

    def table(self):
        outcomes = ("made", "existing", "differs", "failed")
        lines = [f"{'entity':<16}" + "".join(f"{outcome:>10}" for outcome in outcomes)]
        for entity, counter in self.counts.items():
            lines.append(f"{entity:<16}" + "".join(f"{counter[outcome]:>10}" for outcome in outcomes))
        return "\n".join(lines)


class Seeder:
    def __init__(self, gateway, seed, threads, today):
        self.gateway = gateway
        self.seed = seed
        self.threads = threads
        self.today = today
        self.tally = Tally()

    def key(self, entity, n):
        return f"seed{self.seed}/{entity}/{n}"

    def when(self, rng, days_from, days_to):
        """An ISO timestamp during working hours, between today + days_from and today + days_to."""
        day = self.today + timedelta(days=rng.randint(days_from, days_to))
        return (day + timedelta(hours=rng.randint(1, 10), minutes=rng.randrange(0, 60, 5))).isoformat()

    def each(self, entity, count, make_one):
        """Run make_one(n) for n in range(count) on the thread pool, tallying each outcome."""
        def run(n):
            try:
                made = make_one(n)
                self.tally.add(entity, "made" if made else "existing")
            except MadeWithOtherData:
                self.tally.add(entity, "differs")
            except Exception as error:  # one bad record must not stop the other 99,999
                self.tally.add(entity, "failed", error)
        started = time.monotonic()
        with ThreadPoolExecutor(self.threads) as pool:
            for done, _ in enumerate(pool.map(run, range(count)), 1):
                if done % 1000 == 0:
                    progress(f"  {entity}: {done}/{count}")
        seconds = time.monotonic() - started
        progress(f"{entity}: {count} in {seconds:.1f}s ({count / max(seconds, 1e-9):.0f}/s)")

    # --- users --------------------------------------------------------------------

    def users(self, reps):
        """The manager and the reps: (user ids that own records, the reps' ids)."""
        people = [("manager", "east", "manager")] + [
            ("sales", "east" if i % 2 == 0 else "west", f"rep{i + 1}") for i in range(reps)]
        ids = []
        for n, (role, team, handle) in enumerate(people):
            rng = rng_for(self.seed, "user", n)
            body = {"email": f"seed{self.seed}.{handle}@example.com", "name": person_name(rng), "role": role,
                    "team_id": team, "password": user_password(self.seed)}
            try:
                user, made = self.gateway.create("/users", body, self.key("user", n))
                self.tally.add("users", "made" if made else "existing")
            except MadeWithOtherData:
                user = self.find_user(body["email"])
                self.tally.add("users", "differs")
            ids.append(user["id"])
        return ids, ids[1:]

    def find_user(self, email):
        cursor = None
        while True:
            page = self.gateway.get("/users", limit=200, **({"cursor": cursor} if cursor else {})).json()
            for user in page["items"]:
                if user["email"] == email:
                    return user
            cursor = page["next_cursor"]
            if not cursor:
                raise RuntimeError(f"user {email} not found")

    # --- customers ----------------------------------------------------------------

    def customers(self, count, owner_ids):
        """Import the customers in chunks; returns their ids by number."""
        started = time.monotonic()
        for first in range(0, count, IMPORT_CHUNK_ROWS):
            size = min(IMPORT_CHUNK_ROWS, count - first)
            report = self.import_chunk(customers_csv(self.seed, first, size, owner_ids), f"seed{self.seed}-{first}")
            counter = self.tally.counts.setdefault("customers", Counter())
            counter["made"] += report["created"]
            counter["existing"] += report["updated"] + report["skipped"]
            counter["failed"] += report["rejected_count"]
            for rejected in report["rejected"][:3]:
                self.tally.note_error("customers", rejected)
            progress(f"  customers {first + size}/{count}: {json.dumps(report_numbers(report))}")
        seconds = time.monotonic() - started
        progress(f"customers: {count} imported in {seconds:.1f}s ({count / seconds:.0f}/s)")
        return self.customer_ids(count)

    def import_chunk(self, content, name):
        started = time.monotonic()
        response = self.gateway.request(
            "POST", "/imports/customers", files={"file": (f"{name}.csv", content, "text/csv")},
            # create: people may share a name; rows whose external id exists are still skipped.
            data={"dry_run": "false", "on_duplicate": "create"})
        expect(response, 201, 202)
        job = response.json()
        while job["status"] in ("queued", "running"):
            if time.monotonic() - started > IMPORT_TIMEOUT_SECONDS:
                raise RuntimeError(f"import {job['id']} still {job['status']} after {IMPORT_TIMEOUT_SECONDS}s")
            time.sleep(0.5)  # the job runs in the customers service; its progress is only seen by polling
            job = self.gateway.get(f"/imports/{job['id']}").json()
        if job["status"] != "done":
            raise RuntimeError(f"import {job['id']} {job['status']}: {job.get('error')}")
        return job["report"]

    def customer_ids(self, count):
        """{number: id} of this seed's customers, from one export of the seed's tag."""
        response = self.gateway.get("/exports/customers", tag=seed_tag(self.seed), format="csv")
        ids = {}
        prefix = f"seed{self.seed}-"
        for row in csv.DictReader(io.StringIO(response.content.decode("utf-8-sig"))):
            if row["external_id"].startswith(prefix):
                ids[int(row["external_id"][len(prefix):])] = row["id"]
        missing = count - sum(1 for n in ids if n < count)
        if missing:
            progress(f"warning: {missing} customers of this seed are missing (rejected rows)")
        return {n: ids[n] for n in range(count) if n in ids}

    # --- the rest, through the API ---------------------------------------------------

    def contacts(self, customer_ids, companies):
        def make(n):
            rng = rng_for(self.seed, "contact", n)
            customer = rng.choice(companies)
            name = person_name(rng)
            body = {"name": name, "title": rng.choice(["采购经理", "CTO", "总经理", "Buyer", "Office manager"]),
                    "phones": [phone_number(rng, 5 * 10**6 + n)],
                    "emails": [email_address(rng, name, 5 * 10**6 + n)]}
            return self.gateway.create(f"/customers/{customer_ids[customer]}/contacts", body,
                                       self.key("contact", n))[1]
        self.each("contacts", len(companies) // 2, make)

    def followups(self, customer_ids, count):
        numbers = sorted(customer_ids)

        def make(n):
            rng = rng_for(self.seed, "followup", n)
            body = {"type": rng.choice(FOLLOWUP_TYPES), "occurred_at": self.when(rng, -365, -1),
                    "summary": rng.choice(FOLLOWUP_SUMMARIES), "outcome": rng.choice([None, "positive", "待定"])}
            if rng.random() < 0.3:
                body["next_followup_at"] = self.when(rng, 1, 30)
            customer = customer_ids[numbers[n % len(numbers)]]
            return self.gateway.create(f"/customers/{customer}/followups", body, self.key("followup", n))[1]
        self.each("followups", count, make)

    def products(self, count):
        """{currency: [product ids]}."""
        by_currency = {}
        lock = threading.Lock()

        def make(n):
            rng = rng_for(self.seed, "product", n)
            name, unit, low, high = rng.choice(PRODUCT_LINES)
            currency = "USD" if rng.random() < 0.2 else "CNY"
            body = {"sku": f"SEED{self.seed}-{n:04d}", "name": f"{name} {rng.choice('ABCDEFGH')}{n}",
                    "unit": unit, "list_price": money(rng.uniform(float(low), float(high))),
                    "currency": currency, "tax_rate": rng.choice(["13", "6", "0"])}
            product, made = self.gateway.create("/products", body, self.key("product", n))
            with lock:
                by_currency.setdefault(currency, []).append((n, product["id"]))
            return made
        self.each("products", count, make)
        # Sorted by number: the threads finish in any order, the choices below must not depend on it.
        return {currency: [pid for _, pid in sorted(items)] for currency, items in by_currency.items()}

    def opportunities(self, customer_ids, count, owner_ids):
        numbers = sorted(customer_ids)
        stages = list(STAGE_SHARES)

        def make(n):
            rng = rng_for(self.seed, "opportunity", n)
            body = {"customer_id": customer_ids[rng.choice(numbers)], "owner_id": rng.choice(owner_ids),
                    "title": rng.choice(["年度采购", "Platform rollout", "扩容项目", "Renewal", "试点项目", "Pilot"])
                    + f" {self.today.year}-{n}",
                    "amount": money(rng.uniform(5_000, 2_000_000)), "currency": rng.choice(["CNY", "CNY", "USD"]),
                    "expected_close_date": (self.today + timedelta(days=rng.randint(-30, 180))).date().isoformat(),
                    "source": rng.choice(SOURCES)}
            opportunity, made = self.gateway.create("/opportunities", body, self.key("opportunity", n))
            if made:
                self.move_through_stages(rng, opportunity["id"], stages)
            return made
        self.each("opportunities", count, make)

    def move_through_stages(self, rng, opportunity_id, stages):
        """Walk the open stages in order up to a drawn final stage (won and lost from the last one reached)."""
        final = rng.choices(stages, weights=list(STAGE_SHARES.values()))[0]
        open_stages = stages[:4]
        path = open_stages[1:open_stages.index(final) + 1] if final in open_stages \
            else open_stages[1:rng.randint(1, 4)] + [final]
        for stage in path:
            body = {"stage": stage, "note": rng.choice([None, "客户确认了需求", "Budget approved"])}
            if stage == "lost":
                body = {"stage": stage, "lost_reason": rng.choice(LOST_REASONS)}
            self.gateway.post(f"/opportunities/{opportunity_id}/stage", body)

    def orders(self, customer_ids, count, owner_ids, products):
        numbers = sorted(customer_ids)

        def make(n):
            rng = rng_for(self.seed, "order", n)
            currency = "USD" if "USD" in products and rng.random() < 0.2 else "CNY"
            lines = [{"product_id": product, "quantity": str(rng.randint(1, 20)),
                      "discount_percent": rng.choice(["0", "0", "5", "10"])}
                     for product in rng.sample(products[currency], min(rng.randint(1, 5), len(products[currency])))]
            body = {"customer_id": customer_ids[rng.choice(numbers)], "owner_id": rng.choice(owner_ids),
                    "currency": currency, "lines": lines}
            order, made = self.gateway.create("/orders", body, self.key("order", n))
            if made and rng.random() < 0.75:
                order = self.gateway.post(f"/orders/{order['id']}/confirm")
                self.pay(rng, n, order)
            return made
        self.each("orders", count, make)

    def pay(self, rng, n, order):
        """Most confirmed orders get a payment: in full, or a first part."""
        share = rng.choice([None, Decimal("0.3"), Decimal("0.5"), Decimal(1), Decimal(1)])
        if share is None:
            return
        outstanding = Decimal(order["outstanding"])
        amount = outstanding if share == 1 else (outstanding * share).quantize(Decimal("0.01"))
        body = {"amount": str(amount), "method": rng.choice(PAYMENT_METHODS),
                "paid_at": self.when(rng, -30, -1), "reference": f"PAY-{self.seed}-{n:06d}"}
        self.gateway.create(f"/orders/{order['id']}/payments", body, self.key("payment", n))
        self.tally.add("payments", "made")

    def contracts(self, customer_ids, count, owner_ids):
        numbers = sorted(customer_ids)

        def make(n):
            rng = rng_for(self.seed, "contract", n)
            start = (self.today + timedelta(days=rng.randint(-300, 60))).date()
            body = {"customer_id": customer_ids[rng.choice(numbers)], "owner_id": rng.choice(owner_ids),
                    "title": rng.choice(["年度服务合同", "Master services agreement", "采购框架协议", "Support renewal"]),
                    "value": money(rng.uniform(10_000, 1_000_000)), "currency": rng.choice(["CNY", "CNY", "USD"]),
                    "start_date": start.isoformat(),
                    "end_date": (start + timedelta(days=rng.choice([180, 365, 730]))).isoformat()}
            contract, made = self.gateway.create("/contracts", body, self.key("contract", n))
            if made and rng.random() < 0.4:
                self.gateway.post(f"/contracts/{contract['id']}/submit")
            return made
        self.each("contracts", count, make)

    def tasks(self, customer_ids, count, rep_ids):
        numbers = sorted(customer_ids)

        def make(n):
            rng = rng_for(self.seed, "task", n)
            body = {"title": rng.choice(TASK_TITLES), "assignee_id": rng.choice(rep_ids),
                    "customer_id": customer_ids[rng.choice(numbers)], "due_at": self.when(rng, -7, 30),
                    "priority": rng.choice(["low", "normal", "normal", "high"])}
            return self.gateway.create("/tasks", body, self.key("task", n))[1]
        self.each("tasks", count, make)


def user_password(seed):
    """The seeded users' password: test accounts, so known (and printed) rather than secret."""
    return f"seed-{seed}-password"


def report_numbers(report):
    return {key: report[key] for key in ("rows_read", "created", "updated", "skipped", "rejected_count")}


def progress(message):
    print(message, flush=True)


def admin_password():
    if os.environ.get("SEED_ADMIN_PASSWORD"):
        return os.environ["SEED_ADMIN_PASSWORD"]
    path = ROOT / "var" / "admin-password"
    if not path.exists():
        sys.exit(f"no admin password: set SEED_ADMIN_PASSWORD or start the CRM with `make up` ({path})")
    return path.read_text().strip()


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="http://127.0.0.1:8000", help="the gateway")
    parser.add_argument("--customers", type=int, default=1000, help="N: every other count is scaled from it")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--threads", type=int, default=8, help="concurrent API requests")
    parser.add_argument("--max-followups", type=int, default=20_000)
    parser.add_argument("--summary", type=Path, help="also write the counts as JSON to this file")
    args = parser.parse_args(argv)
    if args.customers < 1:
        parser.error("--customers must be at least 1")

    started = time.monotonic()
    gateway = Gateway(args.host, os.environ.get("SEED_ADMIN_EMAIL", "admin@example.com"), admin_password())
    today = datetime.combine(datetime.now(timezone.utc).date(), day_time(), tzinfo=timezone.utc)
    seeder = Seeder(gateway, args.seed, args.threads, today)
    counts = plan(args.customers, args.max_followups)
    progress(f"seeding {args.customers} customers with seed {args.seed}: {json.dumps(counts)}")

    owner_ids, rep_ids = seeder.users(counts["reps"])
    customer_ids = seeder.customers(args.customers, owner_ids)
    if not customer_ids:
        sys.exit("no customers were imported: nothing to attach the rest to")
    companies = [n for n in sorted(customer_ids) if customer_row(args.seed, n, owner_ids)["kind"] == "company"]
    seeder.contacts(customer_ids, companies)
    seeder.followups(customer_ids, counts["followups"])
    products = seeder.products(counts["products"])
    seeder.opportunities(customer_ids, counts["opportunities"], owner_ids)
    seeder.orders(customer_ids, counts["orders"], owner_ids, products)
    seeder.contracts(customer_ids, counts["contracts"], owner_ids)
    seeder.tasks(customer_ids, counts["tasks"], rep_ids)
    seconds = time.monotonic() - started

    tally = seeder.tally
    print(tally.table())
    for entity, errors in tally.first_errors.items():
        for error in errors:
            print(f"  {entity} failed: {error}")
    if gateway.retries:
        print("retried (by status):", dict(gateway.retries))
    made = tally.made()
    print(f"seconds={seconds:.1f} records_made={made} records_per_second={made / seconds:.0f}")
    print(f"seeded users sign in as seed{args.seed}.manager@example.com, seed{args.seed}.rep1@example.com ... "
          f"with password {user_password(args.seed)!r}")
    if args.summary:
        args.summary.write_text(json.dumps({"seconds": round(seconds, 1), "counts": tally.counts,
                                            "retries": gateway.retries,
                                            "companies": len(companies)}, indent=2))
    failed = sum(counter["failed"] for counter in tally.counts.values())
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
