"""The test data the personas send: names that never collide, a small import file."""
import csv
import io
import random
import secrets
from datetime import datetime, timedelta, timezone

WORDS = ("Acme", "Blue River", "Golden Gate", "Harbour", "Jade", "Lotus", "Northwind", "Pearl", "Summit",
         "Evergreen", "长城", "华夏", "东方", "锦程")
KINDS = ("Trading", "Logistics", "Foods", "Textiles", "Electronics", "Consulting", "Machinery")
REGIONS = ("east", "north", "south", "west")
INDUSTRIES = ("retail", "manufacturing", "services", "technology")


def company_name():
    """Unique per call: the customers service flags same-named customers as duplicates."""
    return f"{random.choice(WORDS)} {random.choice(KINDS)} LT-{secrets.token_hex(4)}"


def search_term():
    """A word the customer search gets from people: part of a company name."""
    return random.choice(WORDS + KINDS)


def customer():
    return {"kind": "company", "name": company_name(), "region": random.choice(REGIONS),
            "industry": random.choice(INDUSTRIES), "source": "load test"}


def iso(moment):
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def now():
    return datetime.now(timezone.utc)


def in_days(days):
    return now() + timedelta(days=days)


def hours_ago(hours):
    return now() - timedelta(hours=hours)


def import_csv(rows=5):
    """A small customer file as an integration sends it: columns named like the API's fields."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["external_id", "kind", "name", "region", "industry"])
    for _ in range(rows):
        writer.writerow([f"lt-{secrets.token_hex(6)}", "company", company_name(), random.choice(REGIONS),
                         random.choice(INDUSTRIES)])
    return buffer.getvalue().encode("utf-8")


def multipart(fields, file_field, filename, content, content_type):
    """A multipart/form-data body and its Content-Type (locust's FastHttpUser has no ``files=``)."""
    boundary = f"crmload{secrets.token_hex(12)}"
    parts = []
    for name, value in fields.items():
        parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode())
    parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="{file_field}"; filename="{filename}"\r\n'
                 f"Content-Type: {content_type}\r\n\r\n".encode() + content + b"\r\n")
    parts.append(f"--{boundary}--\r\n".encode())
    return b"".join(parts), f"multipart/form-data; boundary={boundary}"


def report_filters(rng=random, today=None, granularities=("day", "week", "month")):
    """The filters a manager puts on a report: a period (this month, the last 30 or 90 days, this
    year, the last 12 or 24 months) at some granularity, now and then one region. Each answer is
    different enough that no cache serves the next one from the last."""
    today = today or now().date()
    period = rng.choice(("month", "30 days", "90 days", "year", "12 months", "24 months"))
    start = {"month": today.replace(day=1), "30 days": today - timedelta(days=30),
             "90 days": today - timedelta(days=90), "year": today.replace(month=1, day=1),
             "12 months": today - timedelta(days=365), "24 months": today - timedelta(days=730)}[period]
    filters = {"from": start.isoformat(), "to": today.isoformat(), "granularity": rng.choice(granularities)}
    if rng.random() < 0.3:
        filters["region"] = rng.choice(REGIONS)
    return filters
