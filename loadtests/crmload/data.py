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
