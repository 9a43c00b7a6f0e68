"""Small stand-ins for the services behind the gateway, run in their own nameko
containers in the test's vhost. They answer the RPC methods the gateway calls
and record every call with the context data nameko delivered with it."""
import base64
import itertools

from nameko.extensions import DependencyProvider
from nameko.rpc import rpc

from crm_common.errors import NotFound, QueryTimeout, ValidationFailed, VersionMismatch
from crm_common.types import utcnow


class Calls(list):
    def methods(self):
        return [call["method"] for call in self]


CALLS = Calls()
CUSTOMERS = {}
_ids = itertools.count(1)


def reset():
    CALLS.clear()
    CUSTOMERS.clear()


class ContextData(DependencyProvider):
    def get_dependency(self, worker_ctx):
        return dict(worker_ctx.data)


class FakeService:
    context_data = ContextData()

    def _record(self, method, *args):
        CALLS.append({"service": self.name, "method": method, "args": args, "context": self.context_data})

    @rpc
    def ping(self):
        self._record("ping")
        return {"service": self.name, "status": "ok"}


class FakeCustomers(FakeService):
    name = "customers"

    @rpc
    def create_customer(self, data, owner_team_id=None, allow_duplicate=False):
        self._record("create_customer", data, owner_team_id)
        if not isinstance(data, dict) or not data.get("name"):
            raise ValidationFailed("The input is not valid.", {"name": ["Missing data for required field."]})
        now = utcnow().isoformat()
        customer = {"id": f"c-{next(_ids)}", "kind": data.get("kind", "company"), "name": data["name"],
                    "owner_id": data.get("owner_id") or self.context_data.get("user_id"),
                    "tags": [], "created_at": now, "updated_at": now, "deleted_at": None, "version": 1}
        CUSTOMERS[customer["id"]] = customer
        return customer

    @rpc
    def get_customer(self, customer_id, include_deleted=False):
        self._record("get_customer", customer_id)
        if customer_id == "explode":
            raise RuntimeError("database password is hunter2")
        if customer_id == "too-slow":
            raise QueryTimeout("The database cancelled a query that ran longer than its time limit.")
        return self._find(customer_id)

    @rpc
    def list_customers(self, filters=None, limit=None, cursor=None, sort=None):
        self._record("list_customers", filters, limit, cursor, sort)
        return {"items": list(CUSTOMERS.values()), "next_cursor": None}

    @rpc
    def update_customer(self, customer_id, changes, expected_version=None):
        self._record("update_customer", customer_id, changes, expected_version)
        customer = self._find(customer_id)
        if expected_version is not None and expected_version != customer["version"]:
            raise VersionMismatch(f"Customer {customer_id} is at version {customer['version']}.")
        if "tier" in changes and changes["tier"] not in ("A", "B", "C", "D"):
            raise ValidationFailed("The input is not valid.", {"tier": ["Must be one of: A, B, C, D."]})
        customer.update(changes, version=customer["version"] + 1)
        return customer

    @rpc
    def delete_customer(self, customer_id, expected_version=None):
        self._record("delete_customer", customer_id, expected_version)
        self._find(customer_id)
        del CUSTOMERS[customer_id]

    @rpc
    def export_personal_data(self, customer_id):
        self._record("export_personal_data", customer_id)
        return {"customer": self._find(customer_id), "contacts": [], "followups": [], "history": []}

    @rpc
    def erase_customer(self, customer_id, reason):
        self._record("erase_customer", customer_id, reason)
        return {"customer_id": self._find(customer_id)["id"], "erased_at": utcnow().isoformat()}

    def _find(self, customer_id):
        if customer_id not in CUSTOMERS:
            raise NotFound(f"Customer {customer_id} was not found.")
        return CUSTOMERS[customer_id]


class FakeSales(FakeService):
    name = "sales"

    @rpc
    def export_personal_data(self, customer_id):
        self._record("export_personal_data", customer_id)
        return {"orders": [{"id": "o-1", "customer_id": customer_id}]}


class FakeNotifications(FakeService):
    name = "notifications"

    @rpc
    def export_personal_data(self, customer_id):
        self._record("export_personal_data", customer_id)
        return {"tasks": [], "notifications": [], "webhook_deliveries": []}

    @rpc
    def list_notifications(self, limit=None, cursor=None):
        self._record("list_notifications", limit, cursor)
        return {"items": [{"id": "n-1", "for": self.context_data.get("user_id")}], "next_cursor": None}


class FakeReporting(FakeService):
    """Answers like the reporting service: any report, an export, consistency and rebuild runs."""

    name = "reporting"

    @rpc
    def report(self, name, filters=None):
        self._record("report", name, filters)
        unknown = set(filters or {}) - {"from", "to", "owner_id", "team", "granularity", "pipeline", "region"}
        if unknown:
            raise ValidationFailed("The input is not valid.", {field: ["Unknown field."] for field in unknown})
        if name == "customers-summary":
            return {"total": len(CUSTOMERS)}
        return {"report": name, "filters": filters}

    @rpc
    def export_report(self, name, filters=None, file_format="csv"):
        self._record("export_report", name, filters, file_format)
        content_type = {"csv": "text/csv; charset=utf-8",
                        "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"}[file_format]
        return {"filename": f"{name}-2026-01-01-2026-11-29.{file_format}", "content_type": content_type,
                "content": base64.b64encode(b"\xef\xbb\xbfcurrency,revenue\r\nCNY,10.00\r\n").decode(),
                "rows": 1}

    @rpc
    def consistency(self):
        self._record("consistency")
        return {"checked_at": utcnow().isoformat(), "consistent": True, "checks": [], "differences": []}

    @rpc
    def start_rebuild(self):
        self._record("start_rebuild")
        return {"id": "run-1", "status": "running", "counts": {}}

    @rpc
    def get_rebuild(self, run_id):
        self._record("get_rebuild", run_id)
        if run_id != "run-1":
            raise NotFound(f"No rebuild {run_id}.")
        return {"id": run_id, "status": "done", "counts": {"customers": 3}}


ALL = (FakeCustomers, FakeSales, FakeNotifications, FakeReporting)
