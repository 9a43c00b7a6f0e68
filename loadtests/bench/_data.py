"""Customers for the benchmarks, written straight into a running system's customers database.

Seeding through the API would time the import, not what a benchmark measures, so the rows
go in with bulk INSERTs, but as the customers service itself stores them: the contact
details sealed by the system's own keyring (the EncryptedJson column type encrypts on
bind), phones and emails in customer_identifiers as their blind index, and the search
text and dedupe key the service computes. So a seeded customer reads, searches and
finds duplicates exactly like one created over HTTP.

Used by search_customers.py and run_bench.py.
"""
import os
import random
import time
import uuid
from contextlib import contextmanager
from datetime import timedelta

from sqlalchemy import create_engine, insert, text

from crm_common.types import utcnow
from customers import search
from customers.domain import identifier_value
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
    identifiers = [{"customer_id": customer_id, "kind": id_kind, "value": identifier_value(id_kind, value)}
                   for id_kind, value in (("phone", phone), ("email", email))]
    tags = [{"customer_id": customer_id, "tag": tag} for tag in rng.sample(TAGS, rng.randint(0, 2))]
    return row, identifiers, tags


@contextmanager
def system_keyring(system):
    """Inside the block, this process encrypts and blind-indexes with ``system``'s key file."""
    names = ("CRM_DATA_KEYS", "CRM_BLIND_INDEX_KEY", "CRM_DATA_KEYS_FILE")
    saved = {name: os.environ.get(name) for name in names}
    for name in names:
        os.environ.pop(name, None)
        if system.env.get(name):
            os.environ[name] = system.env[name]
    try:
        yield
    finally:
        for name, value in saved.items():
            os.environ.pop(name, None)
            if value is not None:
                os.environ[name] = value


def seed(system, count, owner_ids, batch=5000):
    """``count`` customers into ``system``'s customers database, owned by ``owner_ids``; returns the
    seconds it took."""
    rng = random.Random(42)
    now = utcnow()
    engine = create_engine(system.env["CRM_CUSTOMERS_DB_URL"])
    started = time.perf_counter()
    with system_keyring(system), engine.begin() as connection:
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
