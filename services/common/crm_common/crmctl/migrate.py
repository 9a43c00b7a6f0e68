"""``crmctl migrate``: a legacy CRM's export into this CRM, through the public API.

    crmctl migrate <folder> --mapping mapping.yaml --base-url URL (--api-key KEY | --email E --password P)
                   [--dry-run] [--state FILE] [--report FILE] [--no-backup] [--backup-dir D] [--workers N]

The folder holds one file per entity, ``<entity>.csv`` or ``<entity>.xlsx``
(customers, contacts, followups, products, orders, order_lines, contracts;
each optional). The mapping file (YAML or JSON, example in
docs/migration-example/) names per entity the legacy id column, which column
fills which API field, value translations (old status codes) and defaults.

Every row is written with the same POST any client uses (validation,
permissions, events, audit), never into a database. Entities go in
dependency order: customers, products, then contacts, follow-ups, orders
(with their lines) and contracts, whose references (``customer``, ``order``,
``product``: legacy ids) are resolved to the new ids.

Orders carry their legacy ``status`` (after the mapping's value translation:
draft, confirmed, paid, fulfilled or cancelled) and what was paid. Each order
is created as a draft with its lines, then walked to its status through the
same routes a user takes: confirm, a payment (``paid_amount``, by default the
order's total as the CRM computes it for a paid or fulfilled order; with
``paid_at`` and ``payment_method``, reference ``migrated:<legacy id>``),
fulfil, or cancel (``cancel_reason``). Before each step the order is read
back and only the steps still missing are taken, so a rerun or a resumed run
never confirms or pays twice; each step's POST also carries its own
Idempotency-Key. A cancelled legacy order is cancelled as a draft: the
legacy export does not say whether it had been confirmed before.

Idempotent and resumable:

* customers keep the legacy id as ``external_id`` and products as their SKU:
  the CRM is read first, and a legacy id found there is "already present";
* every other record's new id is written to the state file right after its
  POST succeeds, and every POST carries ``Idempotency-Key:
  migrate:<source>:<entity>:<legacy id>``: a row whose answer was lost (the
  run was killed between the POST and the state file) is answered from the
  gateway's idempotency store on the next run (``Idempotent-Replayed``) and
  counted as already present, never created twice.

``--dry-run`` writes nothing: every row is checked locally with the rules the
API applies that can be checked offline (required fields, phone numbers,
emails, choices, amounts, dates, references, duplicates), and the report says
what a real run would do; the checks that need the CRM (e.g. a duplicate of a
customer already there, a contact of a person) only a real run makes.

Each source row ends in exactly one of: migrated, already present, rejected
(row, field, reason), orphan (a reference to a legacy id that is neither in
the source nor in the CRM) or duplicate (the same legacy id again, the same
phone as an earlier customer, or a 409 duplicate answer of the CRM). The run
**reconciles** when every row is accounted for that way, no row is rejected,
orphan or duplicate, and for every entity the checksum of key fields over the
accepted source rows equals the one over the records read back through the
API. Exit 0 when it reconciles, 1 when not (defects that are reported still
exit 1), 2 when it could not run.
"""
import csv
import hashlib
import io
import json
import os
import re
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import date, datetime, timezone
from decimal import Decimal, InvalidOperation
from pathlib import Path

import requests

from crm_common.crmctl.common import CommandFailed

ENTITIES = ("customers", "products", "contacts", "followups", "orders", "order_lines", "contracts")
# Fields that hold a legacy id of another entity.
REFERENCES = {"customer": "customers", "order": "orders", "product": "products"}
ENTITY_REFERENCES = {
    "contacts": ("customer",), "followups": ("customer",), "orders": ("customer",),
    "order_lines": ("order", "product"), "contracts": ("customer", "order"),
}
REQUIRED = {
    "customers": ("name", "kind"), "contacts": ("customer", "name"), "followups": ("customer", "type", "summary"),
    "products": ("sku", "name", "list_price", "currency"), "orders": ("customer",),
    "order_lines": ("order", "quantity"),
    "contracts": ("customer", "title", "value", "currency", "start_date", "end_date"),
}
ORDER_STATUSES = ("draft", "confirmed", "paid", "fulfilled", "cancelled")
PAYMENT_METHODS = ("bank_transfer", "card", "cash", "cheque", "other")  # the payments API's choices
# Fields of a legacy order that are not part of its POST: they say how far to walk it afterwards.
ORDER_PROGRESS = ("status", "paid_amount", "paid_at", "payment_method", "cancel_reason")
CHOICES = {
    ("customers", "kind"): ("person", "company"),
    ("customers", "lifecycle_stage"): ("lead", "prospect", "customer", "churned"),
    ("customers", "tier"): ("A", "B", "C", "D"),
    ("followups", "type"): ("call", "meeting", "email", "visit", "note"),
    ("orders", "status"): ORDER_STATUSES,
    ("orders", "payment_method"): PAYMENT_METHODS,
}
MONEY = {"products": ("list_price", "tax_rate"), "orders": ("total", "paid_amount"),
         "order_lines": ("quantity", "unit_price", "discount_percent", "tax_rate"), "contracts": ("value",)}
DATES = {"contracts": ("start_date", "end_date")}
DATETIMES = {"followups": ("occurred_at", "next_followup_at"), "orders": ("paid_at",)}
MULTI = ("phones", "emails", "tags")
SPLIT = re.compile(r"[,;/，；、]")
EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
REPORT_COLUMNS = ("source_rows", "migrated", "already_present", "rejected", "orphans", "duplicates")


class MigrationInterrupted(Exception):
    """Raised by the test hook ``stop_after``: the run stops as if killed."""


# --- command line -------------------------------------------------------------------

def add_parsers(subparsers):
    parser = subparsers.add_parser(
        "migrate", help="import a legacy CRM's export (CSV/XLSX + mapping) through the API, with a report")
    parser.add_argument("folder", help="folder with customers.csv|xlsx, contacts, followups, products, orders, "
                                       "order_lines, contracts")
    parser.add_argument("--mapping", required=True, help="mapping file (YAML or JSON)")
    parser.add_argument("--base-url", default=os.environ.get("CRM_BASE_URL", "http://127.0.0.1:8000"),
                        help="the gateway (default: $CRM_BASE_URL or http://127.0.0.1:8000)")
    parser.add_argument("--api-key", default=os.environ.get("CRM_API_KEY"), help="an API key (or $CRM_API_KEY)")
    parser.add_argument("--email", help="sign in as this user instead of an API key")
    parser.add_argument("--password", default=os.environ.get("CRM_PASSWORD"), help="(or $CRM_PASSWORD)")
    parser.add_argument("--dry-run", action="store_true", help="check everything, write nothing, report")
    parser.add_argument("--state", default=None, help="state file (default: <folder>/migration-state.json)")
    parser.add_argument("--report", default=None, help="report file (default: <folder>/migration-report.json)")
    parser.add_argument("--no-backup", action="store_true", help="do not take a backup first")
    parser.add_argument("--backup-dir", default=None, help="where the backup goes (default: as crmctl backup)")
    parser.add_argument("--workers", type=int, default=4, help="requests in flight at once (default 4)")
    parser.set_defaults(handler=cmd_migrate)


def cmd_migrate(args):
    if not args.api_key and not (args.email and args.password):
        raise CommandFailed("give --api-key (or $CRM_API_KEY), or --email and --password", exit_code=2)
    if not Path(args.folder).is_dir():
        raise CommandFailed(f"{args.folder}: not a folder", exit_code=2)
    try:
        report = migrate(args.folder, load_mapping(args.mapping), args.base_url, api_key=args.api_key,
                         email=args.email, password=args.password, dry_run=args.dry_run, state_path=args.state,
                         report_path=args.report, backup=not args.no_backup, backup_dir=args.backup_dir,
                         workers=args.workers)
    except (MappingError, ApiError, requests.RequestException, OSError) as error:
        raise CommandFailed(str(error), exit_code=2)
    except CommandFailed as failure:  # the backup could not be taken: nothing was migrated
        raise CommandFailed(f"backup failed, nothing migrated: {failure}", exit_code=2)
    print(format_report(report))
    print(f"report: {report['report_path']}")
    return 0 if report["reconciled"] else 1


# --- mapping and files -----------------------------------------------------------

class MappingError(Exception):
    pass


def load_mapping(path):
    try:
        text = Path(path).read_text(encoding="utf-8-sig")
        if str(path).endswith((".yaml", ".yml")):
            import yaml
            mapping = yaml.safe_load(text)
        else:
            mapping = json.loads(text)
    except Exception as error:  # a missing file, YAML or JSON that does not parse
        raise MappingError(f"{path}: {error}") from error
    return check_mapping(mapping)


def check_mapping(mapping):
    if not isinstance(mapping, dict) or not isinstance(mapping.get("entities"), dict):
        raise MappingError("the mapping needs an 'entities' object")
    for entity, spec in mapping["entities"].items():
        if entity not in ENTITIES:
            raise MappingError(f"unknown entity {entity!r} (known: {', '.join(ENTITIES)})")
        if not isinstance(spec.get("columns"), dict):
            raise MappingError(f"{entity}: 'columns' must map legacy columns to fields")
        if entity != "order_lines" and not spec.get("id"):
            raise MappingError(f"{entity}: 'id' must name the legacy id column")
    return mapping


def decode(data, encoding=None):
    """Text of a CSV file: the mapping's encoding, else UTF-8 (with or without BOM), else GB18030 (GBK)."""
    if encoding and encoding != "auto":
        return data.decode(encoding), encoding
    try:
        return data.decode("utf-8-sig"), "utf-8"
    except UnicodeDecodeError:
        return data.decode("gb18030"), "gbk"


def cell_text(value):
    if value is None:
        return ""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, date):
        return value.isoformat()
    return str(value).strip()


def read_rows(path, encoding=None):
    """([(spreadsheet row number, {column: text})], encoding used); the header is row 1."""
    path = Path(path)
    if path.suffix.lower() == ".xlsx":
        import openpyxl
        book = openpyxl.load_workbook(path, read_only=True, data_only=True)
        rows = [[cell_text(v) for v in row] for row in book.worksheets[0].iter_rows(values_only=True)]
        book.close()
        used = "xlsx"
    else:
        text, used = decode(path.read_bytes(), encoding)
        first = text.split("\n", 1)[0]
        delimiter = max((",", ";", "\t"), key=first.count)
        rows = [[cell.strip() for cell in row] for row in csv.reader(io.StringIO(text), delimiter=delimiter)]
    if not rows:
        return [], used
    header = [h.strip() for h in rows[0]]
    out = []
    for number, row in enumerate(rows[1:], start=2):
        if not any(row):
            continue
        out.append((number, {header[i]: row[i] for i in range(min(len(header), len(row))) if header[i]}))
    return out, used


def find_file(folder, entity, spec):
    if spec.get("file"):
        return Path(folder) / spec["file"]
    for suffix in (".csv", ".xlsx"):
        if (Path(folder) / (entity + suffix)).exists():
            return Path(folder) / (entity + suffix)
    return None


def apply_mapping(entity, spec, raw):
    """The row's fields: mapped columns, value translations, defaults; the legacy id under ``_id``."""
    fields = {}
    for column, field in spec["columns"].items():
        value = raw.get(column, "")
        if value != "":
            fields[field] = value
    for field, table in (spec.get("values") or {}).items():
        if field in fields and str(fields[field]) in {str(k) for k in table}:
            fields[field] = {str(k): v for k, v in table.items()}[str(fields[field])]
    for field, value in (spec.get("defaults") or {}).items():
        fields.setdefault(field, value)
    fields = {k: (str(v).strip() if not isinstance(v, (list, bool)) else v) for k, v in fields.items()}
    if entity != "order_lines":
        fields["_id"] = str(raw.get(spec["id"], "")).strip()
    return fields


# --- checks ---------------------------------------------------------------------------

def normalise_phone(value, region):
    import phonenumbers
    try:
        number = phonenumbers.parse(value, region)
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_valid_number(number):
        return None
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def split_values(value):
    return [v.strip() for v in SPLIT.split(value) if v.strip()] if isinstance(value, str) else list(value)


def parse_datetime(value):
    text = value.strip().replace("/", "-")
    for fmt in ("%Y-%m-%d %H:%M:%S", "%Y-%m-%d %H:%M", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d"):
        try:
            moment = datetime.strptime(text, fmt)
            return moment.replace(tzinfo=timezone.utc) if moment.tzinfo is None else moment
        except ValueError:
            pass
    moment = datetime.fromisoformat(text)
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


def check_row(entity, fields, region):
    """The problems of one mapped row, [(field, reason)]; normalises phones, amounts and dates in place."""
    problems = []
    if entity != "order_lines" and not fields.get("_id"):
        problems.append(("_id", "no legacy id"))
    for field in REQUIRED.get(entity, ()):
        if not fields.get(field):
            problems.append((field, "missing"))
    for (of, field), allowed in CHOICES.items():
        if of == entity and fields.get(field) and fields[field] not in allowed:
            problems.append((field, f"{fields[field]!r} is not one of {', '.join(allowed)} "
                                    "(add a value translation to the mapping)"))
    for field in MULTI:
        if field in fields:
            fields[field] = split_values(fields[field])
    if "phones" in fields:
        normalised = []
        for phone in fields["phones"]:
            e164 = normalise_phone(phone, region)
            if e164 is None:
                problems.append(("phones", f"{phone!r} is not a valid phone number (write +country code "
                                           f"or a {region} number)"))
            elif e164 not in normalised:
                normalised.append(e164)
        fields["phones"] = normalised
    for email in fields.get("emails", ()):
        if not EMAIL.match(email):
            problems.append(("emails", f"{email!r} is not an email address"))
    if entity == "customers" and fields.get("kind") == "person" and not (fields.get("phones") or fields.get("emails")):
        if not any(f == "phones" for f, _ in problems):
            problems.append(("phones", "a person needs a phone or an email"))
    for field in MONEY.get(entity, ()):
        if fields.get(field):
            try:
                amount = Decimal(fields[field].replace(",", "").replace("¥", "").replace("%", ""))
                if not amount.is_finite():
                    raise InvalidOperation
                fields[field] = str(amount)
            except InvalidOperation:
                problems.append((field, f"{fields[field]!r} is not a number"))
    for field in DATES.get(entity, ()):
        if fields.get(field):
            try:
                fields[field] = parse_datetime(fields[field]).date().isoformat()
            except ValueError:
                problems.append((field, f"{fields[field]!r} is not a date"))
    for field in DATETIMES.get(entity, ()):
        if fields.get(field):
            try:
                fields[field] = parse_datetime(fields[field]).isoformat()
            except ValueError:
                problems.append((field, f"{fields[field]!r} is not a date and time"))
    if entity == "contracts" and fields.get("start_date") and fields.get("end_date") and \
            not problems and fields["end_date"] <= fields["start_date"]:
        problems.append(("end_date", "must be after start_date"))
    if entity == "order_lines" and not fields.get("product") and not (fields.get("unit_price")
                                                                      and fields.get("description")):
        problems.append(("product", "a line without a product needs description and unit_price"))
    if entity == "orders" and not problems:
        problems += _payment_problems(fields)
    return problems


def _payment_problems(fields):
    """A paid amount the CRM's order states cannot hold: payments only on confirmed orders, paid means in full."""
    status, paid, total = fields.get("status") or "draft", fields.get("paid_amount"), fields.get("total")
    if not paid or Decimal(paid) == 0:
        return []
    if status in ("draft", "cancelled"):
        return [("paid_amount", f"a {status} order has no payments (the CRM takes payments on confirmed orders "
                                "and cancels only unpaid ones)")]
    if total and status == "confirmed" and Decimal(paid) >= Decimal(total):
        return [("paid_amount", f"{paid} pays the total {total}: the order would be paid, not confirmed")]
    if total and status in ("paid", "fulfilled") and Decimal(paid) != Decimal(total):
        return [("paid_amount", f"a {status} order is paid in full: {paid} is not its total {total}")]
    return []


# --- request bodies -------------------------------------------------------------------

def customer_body(fields):
    body = {"external_id": fields["_id"]}
    for field, value in fields.items():
        if field.startswith("_") or field == "external_id":
            continue
        if field in ("phones", "emails"):
            body.setdefault("contact", {})[field] = value
        elif field.startswith("address."):
            body.setdefault("contact", {}).setdefault("address", {})[field.split(".", 1)[1]] = value
        elif field == "id_number":
            body.setdefault("contact", {})["id_number"] = value
        elif field.startswith("company."):
            body.setdefault("company", {})[field.split(".", 1)[1]] = value
        elif field.startswith("custom."):
            body.setdefault("custom_fields", {})[field.split(".", 1)[1]] = value
        else:
            body[field] = value
    return body


def plain_body(fields, skip=()):
    return {k: v for k, v in fields.items() if not k.startswith("_") and k not in skip}


def money(value):
    return str(Decimal(value).quantize(Decimal("0.01"))) if value not in (None, "") else ""


def wanted_paid_amount(fields):
    """What the legacy order had paid: its paid_amount, else its total when paid or fulfilled, else 0.

    None when that is the total and the source does not give it: the CRM computes it from the lines.
    """
    if fields.get("paid_amount"):
        return fields["paid_amount"]
    if (fields.get("status") or "draft") in ("paid", "fulfilled"):
        return fields.get("total") or None
    return "0"


def checksum(keys):
    """sha256 over the sorted JSON lines of the key fields (one per legacy id)."""
    digest = hashlib.sha256()
    for line in sorted(json.dumps(v, ensure_ascii=False, sort_keys=True) for v in keys.values()):
        digest.update(line.encode() + b"\n")
    return digest.hexdigest()


def source_key(entity, row):
    f = row["fields"]
    if entity == "customers":
        return [f["_id"], f.get("name", "").strip(), sorted(f.get("phones", []))]
    if entity == "contacts":
        return [f["_id"], f["customer"], f.get("name", "").strip()]
    if entity == "followups":
        return [f["_id"], f["customer"], f.get("type"), f.get("summary", "").strip()]
    if entity == "products":
        return [f["_id"], f.get("sku"), f.get("name", "").strip(), money(f.get("list_price"))]
    if entity == "orders":
        return [f["_id"], f["customer"], money(f.get("total")) if f.get("total") else None, len(row["lines"]),
                f.get("status") or "draft", money(wanted_paid_amount(f))]
    if entity == "contracts":
        return [f["_id"], f["customer"], f.get("title", "").strip(), money(f.get("value"))]
    return None


# --- the API --------------------------------------------------------------------------

class ApiError(Exception):
    pass


class Client:
    """The gateway's /api/v1 with an API key or a signed-in user; retries what is safe to retry."""

    def __init__(self, base_url, api_key=None, email=None, password=None, timeout=30):
        self.base = base_url.rstrip("/") + "/api/v1"
        self.http = requests.Session()
        self.timeout = timeout
        self.email, self.password = email, password
        if api_key:
            self.http.headers["X-API-Key"] = api_key
        else:
            self.login()

    def login(self):
        answer = self.http.post(self.base + "/auth/login", json={"email": self.email, "password": self.password},
                                timeout=self.timeout)
        if answer.status_code != 200:
            raise ApiError(f"sign-in failed: {answer.status_code} {answer.text[:200]}")
        self.http.headers["Authorization"] = "Bearer " + answer.json()["access_token"]

    def request(self, method, path, **kwargs):
        for attempt in range(8):
            try:
                answer = self.http.request(method, self.base + path, timeout=self.timeout, **kwargs)
            except requests.ConnectionError:
                if attempt == 7:
                    raise
                time.sleep(min(2 ** attempt * 0.25, 5))
                continue
            if answer.status_code == 401 and self.email and attempt == 0:
                self.login()  # an access token lasts 15 minutes; a long migration outlasts it
                continue
            retry = answer.status_code in (429, 502, 503, 504) or (
                answer.status_code == 409 and "still being processed" in answer.text)
            if retry and attempt < 7:
                time.sleep(float(answer.headers.get("Retry-After") or min(2 ** attempt * 0.25, 5)))
                continue
            return answer
        return answer

    def get_all(self, path, params=None):
        items, cursor = [], None
        while True:
            query = dict(params or {}, limit=200, **({"cursor": cursor} if cursor else {}))
            answer = self.request("GET", path, params=query)
            if answer.status_code != 200:
                raise ApiError(f"GET {path}: {answer.status_code} {answer.text[:200]}")
            page = answer.json()
            items.extend(page["items"])
            cursor = page.get("next_cursor")
            if not cursor:
                return items


def problem_reasons(answer):
    """[(field, reason)] from a problem+json answer."""
    try:
        body = answer.json()
    except ValueError:
        return [("", f"HTTP {answer.status_code}: {answer.text[:200]}")]
    reasons = []
    for field, messages in (body.get("errors") or {}).items():
        for message in messages if isinstance(messages, list) else [messages]:
            reasons.append((field, str(message)))
    if not reasons:
        detail = body.get("detail") or body.get("title") or answer.text[:200]
        candidates = body.get("candidates") or []
        if candidates:
            detail += " (" + "; ".join(str(c.get("reasons") or c.get("reason") or c.get("id"))
                                       for c in candidates[:3]) + ")"
        reasons.append(("", f"HTTP {answer.status_code}: {detail}"))
    return reasons


def idempotency_key(*parts):
    """``migrate:<source>:<entity>:<legacy id>[:<order step>]``; hashed when not ASCII or too long for the gateway."""
    key = "migrate:" + ":".join(parts)
    if len(key) > 200 or not key.isascii():
        key = f"migrate:{hashlib.sha256(key.encode()).hexdigest()}"
    return key


# --- an order's way to its legacy status -----------------------------------------------

def order_steps(order, fields):
    """The steps still to take, in order, to bring ``order`` (as the API shows it) to the legacy row's status.

    Confirmed -> paid -> fulfilled is the one way forward; a draft or unpaid confirmed order may be
    cancelled. An order already at (or, changed by someone since, past) its status needs nothing.
    """
    status, want = order["status"], fields.get("status") or "draft"
    if want == "cancelled":
        return ["cancel"] if status in ("draft", "confirmed") else []
    forward = ("draft", "confirmed", "paid", "fulfilled")
    if status not in forward or forward.index(status) > forward.index(want):
        return []
    steps = ["confirm"] if status == "draft" and want != "draft" else []
    if want in ("paid", "fulfilled") and status in ("draft", "confirmed"):
        steps.append("pay")
    elif want == "confirmed" and Decimal(wanted_paid_amount(fields)) > Decimal(order["paid_amount"]):
        steps.append("pay")
    if want == "fulfilled" and status != "fulfilled":
        steps.append("fulfil")
    return steps


def order_step_request(step, order, fields, legacy):
    """(path, body) of one step; a payment is of what is still missing (paid/fulfilled: all outstanding)."""
    if step == "pay":
        if fields.get("status") == "confirmed":
            amount = Decimal(wanted_paid_amount(fields)) - Decimal(order["paid_amount"])
        else:
            amount = Decimal(order["outstanding"])
        body = {"amount": str(amount), "method": fields.get("payment_method") or "other",
                "reference": f"migrated:{legacy}"}
        if fields.get("paid_at"):
            body["paid_at"] = fields["paid_at"]
        return f"/orders/{order['id']}/payments", body
    if step == "cancel":
        return f"/orders/{order['id']}/cancel", {"reason": fields.get("cancel_reason") or
                                                  f"cancelled in the legacy CRM (migrated:{legacy})"}
    return f"/orders/{order['id']}/{step}", None


def walk_order(client, order, fields, legacy, source_name):
    """Take the steps ``order`` still needs; [(field, reason)]: empty when it reached its legacy status.

    ``order`` is the API's answer, or the order's id to read it first. After a 409 (the step was done
    by an earlier run whose answer was lost, or someone moved the order) it is read again, the plan remade.
    """
    order_id = order["id"] if isinstance(order, dict) else order
    if not isinstance(order, dict):
        answer = client.request("GET", f"/orders/{order_id}")
        if answer.status_code != 200:
            return [("status", f"reading order {order_id}: " + problem_reasons(answer)[0][1])]
        order = answer.json()
    # Each round takes one step or rereads after a 409: confirm, pay, fulfil and a reread at most.
    for _ in range(4):
        steps = order_steps(order, fields)
        if not steps:
            return []
        path, body = order_step_request(steps[0], order, fields, legacy)
        key = idempotency_key(source_name, "orders", legacy, steps[0])
        answer = client.request("POST", path, json=body, headers={"Idempotency-Key": key})
        if answer.status_code == 409:
            answer = client.request("GET", f"/orders/{order_id}")
        if answer.status_code not in (200, 201):
            reason = problem_reasons(answer)[0][1]
            return [("paid_amount" if steps[0] == "pay" else "status",
                     f"order {order_id} was created but not taken to {fields.get('status')}: {steps[0]}: {reason}")]
        order = answer.json().get("order") or answer.json()  # a payment answers with the order after it
    if not order_steps(order, fields):
        return []
    return [("status", f"order {order_id} did not reach {fields.get('status')} (it is {order['status']})")]


# --- the run --------------------------------------------------------------------------

class State:
    """legacy id -> new id per entity, saved (atomically) after every record created."""

    def __init__(self, path, dry_run=False):
        self.path = Path(path)
        self.dry_run = dry_run
        self.ids = json.loads(self.path.read_text()) if self.path.exists() else {}

    def get(self, entity, legacy_id):
        return self.ids.get(entity, {}).get(legacy_id)

    def put(self, entity, legacy_id, new_id):
        self.ids.setdefault(entity, {})[legacy_id] = new_id
        if not self.dry_run:
            temporary = self.path.with_suffix(".tmp")
            temporary.write_text(json.dumps(self.ids, indent=1, sort_keys=True))
            os.replace(temporary, self.path)


def new_entity_report():
    return {"file": None, "encoding": None, "source_rows": 0, "migrated": 0, "already_present": 0,
            "rejected": [], "orphans": [], "duplicates": [], "checksum": None}


def migrate(folder, mapping, base_url, api_key=None, email=None, password=None, dry_run=False, state_path=None,
            report_path=None, backup=True, backup_dir=None, environ=None, workers=4, stop_after=None):
    """Run (or dry-run) a migration; returns the report (also written to ``report_path``)."""
    mapping = check_mapping(mapping)
    folder = Path(folder)
    region = mapping.get("phone_region", "CN")
    source_name = mapping.get("source_system", "legacy")
    started = time.monotonic()
    report = {"dry_run": dry_run, "started_at": _now(), "folder": str(folder), "source_system": source_name,
              "backup": None, "entities": {}}
    client = Client(base_url, api_key=api_key, email=email, password=password)
    if not dry_run and backup:
        from crm_common.crmctl import backup as backups
        path, _ = backups.backup(backups.default_dir(backup_dir, environ), environ=environ)
        report["backup"] = str(path)
    state = State(state_path or folder / "migration-state.json", dry_run=dry_run)

    # Read and check every file first.
    rows = {}
    for entity in ENTITIES:
        spec = mapping["entities"].get(entity)
        path = find_file(folder, entity, spec) if spec else None
        if not path or not path.exists():
            continue
        entry = report["entities"][entity] = new_entity_report()
        raw_rows, entry["encoding"] = read_rows(path, spec.get("encoding") or mapping.get("encoding"))
        entry["file"] = path.name
        entry["source_rows"] = len(raw_rows)
        rows[entity] = []
        for number, raw in raw_rows:
            fields = apply_mapping(entity, spec, raw)
            rows[entity].append({"row": number, "fields": fields, "problems": check_row(entity, fields, region),
                                 "lines": [], "outcome": None})

    # What the CRM already holds: customers by external id, products by SKU.
    present = {"customers": {}, "products": {}}
    if "customers" in rows:
        present["customers"] = {c["external_id"]: c["id"] for c in client.get_all("/customers")
                                if c.get("external_id")}
    if "products" in rows:
        present["products"] = {p["sku"]: p["id"] for p in client.get_all("/products")}

    # Classify: duplicates, problems, orphans; in dependency order.
    accepted = {entity: {} for entity in ENTITIES}  # legacy id -> row
    not_migrated = {entity: {} for entity in ENTITIES}  # legacy id -> why

    def finish_orders():
        """An order with a line not taken (or with no line) is not migrated: its total would differ."""
        if "orders" not in report["entities"]:
            return
        for line in rows.get("order_lines", ()):
            order = accepted["orders"].get(line["fields"].get("order"))
            if line["outcome"] != "pending" and order is not None:
                accepted["orders"].pop(order["fields"]["_id"])
                _mark(report["entities"]["orders"], order, "rejected", "lines",
                      f"its line at order_lines row {line['row']} was not taken ({line['outcome']})")
                not_migrated["orders"][order["fields"]["_id"]] = "rejected"
                for other in order["lines"]:
                    if other["outcome"] == "pending":
                        _mark(report["entities"]["order_lines"], other, "rejected", "order",
                              f"its order {order['fields']['_id']} was rejected")
        for legacy, order in list(accepted["orders"].items()):
            if not order["lines"]:
                accepted["orders"].pop(legacy)
                _mark(report["entities"]["orders"], order, "rejected", "lines", "an order needs at least one line")
                not_migrated["orders"][legacy] = "rejected"

    for entity in ENTITIES:
        if entity == "contracts":
            finish_orders()
        entry = report["entities"].get(entity)
        seen_phones, seen_ids = {}, {}
        for row in rows.get(entity, ()):
            fields, legacy = row["fields"], row["fields"].get("_id")
            if entity != "order_lines" and legacy and legacy in seen_ids:
                _mark(entry, row, "duplicates", "_id", f"legacy id {legacy} appears again "
                                                       f"(first at row {seen_ids[legacy]})")
                continue
            seen_ids[legacy] = row["row"]
            if row["problems"]:
                _mark(entry, row, "rejected", *row["problems"][0], more=row["problems"][1:])
                not_migrated[entity][legacy] = "rejected"
                continue
            if entity == "customers":
                same = [seen_phones[p] for p in fields.get("phones", []) if p in seen_phones]
                if same:
                    _mark(entry, row, "duplicates", "phones",
                          f"same phone as legacy customer {same[0]}: a duplicate customer")
                    not_migrated[entity][legacy] = "a duplicate"
                    continue
                for phone in fields.get("phones", []):
                    seen_phones[phone] = legacy
            if not _check_references(entity, row, entry, accepted, not_migrated, present, state):
                not_migrated[entity][legacy] = row["outcome"]
                continue
            if entity == "order_lines" and fields["order"] not in accepted["orders"]:
                _mark(entry, row, "rejected", "order", f"its order {fields['order']} is not in the orders file "
                                                       "(lines are migrated with their order)")
                continue
            row["outcome"] = "pending"
            if entity == "order_lines":
                accepted["orders"][fields["order"]]["lines"].append(row)
            else:
                accepted[entity][legacy] = row
    if "contracts" not in rows:
        finish_orders()

    # Write, in dependency order.
    # Records the CRM holds already may be referenced without being in the source (products by SKU).
    ids = {"customers": dict(present["customers"]), "products": dict(present["products"]), "orders": {}}
    created = [0]
    lock = threading.RLock()

    def save(entity, legacy, answer_or_id):
        new_id = answer_or_id if isinstance(answer_or_id, str) else answer_or_id.json()["id"]
        if stop_after is not None and created[0] >= stop_after:
            raise MigrationInterrupted(f"stopped after {stop_after} records (test hook)")
        state.put(entity, legacy, new_id)
        return new_id

    def post(entity, legacy, path, body):
        key = idempotency_key(source_name, entity, legacy)
        answer = client.request("POST", path, json=body, headers={"Idempotency-Key": key})
        if answer.status_code == 201:
            replayed = answer.headers.get("Idempotent-Replayed") == "true"
            if not replayed:
                with lock:
                    created[0] += 1
            return answer, replayed
        return answer, None

    def walk(entity, legacy, row, order):
        """An order's remaining steps to its legacy status: [(field, reason)] when it did not get there."""
        if entity != "orders" or dry_run or (row["fields"].get("status") or "draft") == "draft":
            return []
        return walk_order(client, order, row["fields"], legacy, source_name)

    def count(entry, row, outcome, problems):
        if problems:
            _mark(entry, row, "rejected", *problems[0], more=problems[1:])
        else:
            entry[outcome] += 1
            row["outcome"] = outcome

    def write_row(entity, entry, legacy, row):
        fields = row["fields"]
        known = (present["customers"].get(legacy) if entity == "customers" else
                 present["products"].get(fields.get("sku")) if entity == "products" else None) \
            or state.get(entity, legacy)
        if known:
            problems = walk(entity, legacy, row, known)
            with lock:
                ids[entity][legacy] = known
                count(entry, row, "already_present", problems)
                if entity != "customers" and not state.get(entity, legacy) and not dry_run:
                    state.put(entity, legacy, known)
            return
        if dry_run:
            with lock:
                entry["migrated"] += 1
                row["outcome"] = "migrated"
            return
        missing = [f for f in ENTITY_REFERENCES.get(entity, ()) if fields.get(f)
                   and not (ids.get(REFERENCES[f], {}).get(fields[f]) or state.get(REFERENCES[f], fields[f]))]
        if missing:
            with lock:
                _mark(entry, row, "rejected", missing[0], f"its {missing[0]} {fields[missing[0]]} was not migrated")
            return
        path, body = _request_for(entity, fields, row, ids, state)
        answer, replayed = post(entity, legacy, path, body)
        with lock:
            if replayed is None:
                kind = "duplicates" if answer.status_code == 409 and "candidates" in answer.text else "rejected"
                reasons = problem_reasons(answer)
                _mark(entry, row, kind, *reasons[0], more=reasons[1:])
                return
            ids[entity][legacy] = save(entity, legacy, answer)
        # A replayed answer is the order as it was created: read it again before walking it.
        problems = walk(entity, legacy, row, answer.json()["id"] if replayed else answer.json())
        with lock:
            count(entry, row, "already_present" if replayed else "migrated", problems)

    def write_group(entity, entry, group):
        for legacy, row in group:
            write_row(entity, entry, legacy, row)

    for entity in ("customers", "products", "contacts", "followups", "orders", "contracts"):
        entry = report["entities"].get(entity)
        if entry is None:
            continue
        ids.setdefault(entity, {})
        # Rows are independent, except a customer's follow-ups: those go in file order (each closes the last).
        groups = {}
        for legacy, row in accepted[entity].items():
            group = row["fields"]["customer"] if entity == "followups" else legacy
            groups.setdefault(group, []).append((legacy, row))
        if workers <= 1 or dry_run:
            for group in groups.values():
                write_group(entity, entry, group)
        else:
            pool = ThreadPoolExecutor(max_workers=workers)
            try:
                for future in [pool.submit(write_group, entity, entry, g) for g in groups.values()]:
                    future.result()
            finally:
                # Interrupted (Ctrl-C, a failure): start nothing more; what is in flight finishes and is saved.
                pool.shutdown(wait=True, cancel_futures=True)
        if entity == "orders" and "order_lines" in report["entities"]:
            lines_entry = report["entities"]["order_lines"]
            for order in accepted["orders"].values():
                for line in order["lines"]:
                    if order["outcome"] in ("migrated", "already_present"):
                        lines_entry[order["outcome"]] += 1
                    else:
                        legacy = order["fields"]["_id"]
                        # An order that did not reach its legacy status exists, with its lines, in the CRM.
                        why = "did not reach its status" if legacy in ids["orders"] else "was not migrated"
                        _mark(lines_entry, line, "rejected", "order", f"its order {legacy} {why}")

    report["write_seconds"] = round(time.monotonic() - started, 1)
    # Checksums: accepted source rows against the records read back through the API.
    for entity, entry in report["entities"].items():
        if entity == "order_lines":
            continue
        source = {legacy: source_key(entity, row) for legacy, row in accepted[entity].items()
                  if row["outcome"] in ("migrated", "already_present")}
        entry["checksum"] = {"source": checksum(source), "source_records": len(source), "target": None,
                             "target_records": None, "equal": None, "differing_ids": []}
        if dry_run:
            continue
        target = _read_back(client, entity, source, ids, accepted, workers)
        entry["checksum"].update(target=checksum(target), target_records=len(target),
                                 equal=checksum(target) == checksum(source),
                                 differing_ids=sorted(k for k in set(source) | set(target)
                                                      if source.get(k) != target.get(k))[:20])
        entry["checksum"]["differences"] = [{"legacy_id": k, "source": source.get(k), "target": target.get(k)}
                                            for k in entry["checksum"]["differing_ids"]]

    for entity, entry in report["entities"].items():
        counted = entry["migrated"] + entry["already_present"] + sum(
            len({d["row"] for d in entry[kind]}) for kind in ("rejected", "orphans", "duplicates"))
        entry["unaccounted"] = entry["source_rows"] - counted
        entry["reconciled"] = (entry["unaccounted"] == 0 and not entry["rejected"] and not entry["orphans"]
                               and not entry["duplicates"]
                               and (entry["checksum"] is None or entry["checksum"]["equal"] is not False))
    report["reconciled"] = all(e["reconciled"] for e in report["entities"].values())
    report["finished_at"] = _now()
    report["seconds"] = round(time.monotonic() - started, 1)
    report["report_path"] = str(report_path or folder / "migration-report.json")
    Path(report["report_path"]).write_text(json.dumps(report, indent=1, ensure_ascii=False))
    return report


def _now():
    return datetime.now(timezone.utc).isoformat().replace("+00:00", "Z")


def _mark(entry, row, kind, field, reason, more=()):
    """Row ``row`` ends as ``kind`` (rejected, orphans, duplicates): one entry per row, further problems in "also"."""
    item = {"row": row["row"], "legacy_id": row["fields"].get("_id"), "field": field.lstrip("_"), "reason": reason}
    if more:
        item["also"] = [{"field": f.lstrip("_"), "reason": r} for f, r in more]
    entry[kind].append(item)
    row["outcome"] = kind


def _check_references(entity, row, entry, accepted, not_migrated, present, state):
    """True when every reference of the row resolves; otherwise marks it an orphan or rejected."""
    for field in ENTITY_REFERENCES.get(entity, ()):
        legacy = row["fields"].get(field)
        if not legacy:
            continue
        target = REFERENCES[field]
        if legacy in accepted[target]:
            continue
        if target == "customers" and legacy in present["customers"]:
            continue
        if target == "products" and legacy in present["products"]:
            continue
        if state.get(target, legacy):
            continue
        if legacy in not_migrated[target]:
            _mark(entry, row, "rejected", field, f"its {field} {legacy} was not migrated "
                                                 f"({not_migrated[target][legacy]})")
        else:
            _mark(entry, row, "orphans", field, f"{field} {legacy} does not exist (not in {target} "
                                                f"of the source nor in the CRM)")
        return False
    return True


def _request_for(entity, fields, row, ids, state):
    def ref(target, legacy):
        return ids.get(target, {}).get(legacy) or state.get(target, legacy)
    if entity == "customers":
        return "/customers", customer_body(fields)
    if entity == "products":
        return "/products", plain_body(fields)
    if entity == "contacts":
        return f"/customers/{ref('customers', fields['customer'])}/contacts", plain_body(fields, ("customer",))
    if entity == "followups":
        return f"/customers/{ref('customers', fields['customer'])}/followups", plain_body(fields, ("customer",))
    if entity == "orders":
        lines = []
        for line in row["lines"]:
            body = plain_body(line["fields"], ("order", "product"))
            if line["fields"].get("product"):
                body["product_id"] = ref("products", line["fields"]["product"])
            lines.append(body)
        body = plain_body(fields, ("customer", "total") + ORDER_PROGRESS)
        body.update(customer_id=ref("customers", fields["customer"]), lines=lines)
        return "/orders", body
    if entity == "contracts":
        body = plain_body(fields, ("customer", "order"))
        body["customer_id"] = ref("customers", fields["customer"])
        if fields.get("order"):
            body["order_id"] = ref("orders", fields["order"])
        return "/contracts", body
    raise ValueError(entity)


def _read_back(client, entity, source, ids, accepted, workers=4):
    """{legacy id: key fields} of the migrated records, read through the API."""
    customer_legacy = {new: legacy for legacy, new in ids.get("customers", {}).items()}
    mine = {new: legacy for legacy, new in ids.get(entity, {}).items() if legacy in source}
    target = {}
    if entity == "customers":
        for c in client.get_all("/customers"):
            if c.get("external_id") in source:
                target[c["external_id"]] = [c["external_id"], c["name"].strip(),
                                            sorted((c.get("contact") or {}).get("phones") or [])]
    elif entity == "products":
        for p in client.get_all("/products"):
            if p["id"] in mine:
                target[mine[p["id"]]] = [mine[p["id"]], p["sku"], p["name"].strip(), money(p["list_price"])]
    elif entity == "contacts":
        customers = {ids["customers"].get(row["fields"]["customer"]) for row in accepted[entity].values()}
        with ThreadPoolExecutor(max_workers=max(workers, 1)) as pool:
            answers = list(pool.map(lambda c: client.request("GET", f"/customers/{c}/contacts"), customers))
        for answer in answers:
            for c in answer.json().get("items", []) if answer.status_code == 200 else []:
                if c["id"] in mine:
                    target[mine[c["id"]]] = [mine[c["id"]], customer_legacy.get(c["customer_id"]), c["name"].strip()]
    elif entity == "followups":
        with ThreadPoolExecutor(max_workers=max(workers, 1)) as pool:
            answers = list(pool.map(lambda new: client.request("GET", f"/followups/{new}"), mine))
        for answer in answers:
            if answer.status_code == 200:
                legacy = mine[answer.json()["id"]]
                f = answer.json()
                target[legacy] = [legacy, customer_legacy.get(f["customer_id"]), f["type"], f["summary"].strip()]
    elif entity == "orders":
        for o in client.get_all("/orders"):
            if o["id"] in mine:
                legacy = mine[o["id"]]
                has_total, has_paid_amount = source[legacy][2] is not None, source[legacy][5] != ""
                target[legacy] = [legacy, customer_legacy.get(o["customer_id"]),
                                  money(o["total"]) if has_total else None, len(o.get("lines") or []),
                                  o["status"], money(o["paid_amount"]) if has_paid_amount else ""]
    elif entity == "contracts":
        for c in client.get_all("/contracts"):
            if c["id"] in mine:
                legacy = mine[c["id"]]
                target[legacy] = [legacy, customer_legacy.get(c["customer_id"]), c["title"].strip(),
                                  money(c["value"])]
    return target


# --- the readable report ---------------------------------------------------------------

def format_report(report):
    head = "would migrate" if report["dry_run"] else "migrated"
    lines = [f"{'entity':<12} {'source':>7} {head:>13} {'present':>8} {'rejected':>9} {'orphans':>8} "
             f"{'duplicates':>10} {'checksum':>9}"]
    for entity, e in report["entities"].items():
        check = e["checksum"]
        verdict = "-" if check is None or check["equal"] is None else ("equal" if check["equal"] else "DIFFERS")
        lines.append(f"{entity:<12} {e['source_rows']:>7} {e['migrated']:>13} {e['already_present']:>8} "
                     f"{len(e['rejected']):>9} {len(e['orphans']):>8} {len(e['duplicates']):>10} {verdict:>9}")
    for entity, e in report["entities"].items():
        for kind in ("rejected", "orphans", "duplicates"):
            for item in e[kind]:
                label = {"rejected": "rejected", "orphans": "orphan", "duplicates": "duplicate"}[kind]
                lines.append(f"  {entity} row {item['row']} ({item['legacy_id'] or '-'}) {label}: "
                             f"{item['field']}: {item['reason']}")
        if e["checksum"] and e["checksum"]["differing_ids"]:
            lines.append(f"  {entity} checksum differs for legacy ids {', '.join(e['checksum']['differing_ids'])}")
    if report.get("backup"):
        lines.append(f"backup: {report['backup']}")
    lines.append("RECONCILED" if report["reconciled"] else
                 "NOT RECONCILED: see the rows above" + (" (dry run: nothing written)" if report["dry_run"] else ""))
    return "\n".join(lines)


if __name__ == "__main__":  # pragma: no cover
    sys.exit("run it as: crmctl migrate ...")
