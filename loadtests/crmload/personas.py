"""The people who use the CRM, as locust users with weighted tasks.

Each persona signs in once (as one of its role's load-test accounts, taking
turns: crmload.accounts) and reuses its token, refreshing it before it
expires, as the web app does. The integration client sends an API key instead.

A user starts with one pass over every task of its persona, in the order
written (so even a short run calls every endpoint, and later tasks find what
earlier ones made), then picks tasks by weight. The personas need no data to
exist: what they work on they find through the API or make.

LOADTEST_THINK_TIME="MIN,MAX" is the pause between two tasks of one user, in
seconds (default 1,5).
"""
import os
import random
import time
from urllib.parse import urlencode

from locust import FastHttpUser, between, task

from crmload import data
from crmload import accounts

API = "/api/v1"
# Sales learns of a new customer through an event: a deal or quote for a
# customer created a moment ago may be refused (422 on customer_id) until then.
# The person sees an error, so each such answer counts as one; the user tries
# again, as a person would, for up to this long.
SALES_LAG_SECONDS = float(os.environ.get("LOADTEST_SALES_LAG_SECONDS", "15"))
# The open stages of the default pipeline, in order; an opportunity moved past
# the last one is won.
OPEN_STAGES = ("qualification", "needs_analysis", "proposal", "negotiation")


def think_time():
    low, high = (float(value) for value in os.environ.get("LOADTEST_THINK_TIME", "1,5").split(","))
    return between(low, high)


def path(route, **query):
    """An API path with its query string (None values left out)."""
    query = {key: value for key, value in query.items() if value is not None}
    return API + route + ("?" + urlencode(query) if query else "")



def failure_text(response):
    """What a failed answer says, for locust's error report: a problem's code, detail and the fields
    it names (never cut off, so a refusal can be told by its field), else the start of the body."""
    try:
        problem = response.json()
    except (ValueError, TypeError):  # not JSON, or no body
        problem = None
    if isinstance(problem, dict) and "detail" in problem:
        fields = ", ".join(sorted(problem.get("errors") or {}))
        return (f"{response.status_code}: {problem.get('code', '')}: {problem['detail']}"
                + (f" (fields: {fields})" if fields else ""))
    return f"{response.status_code}: {response.text[:200]}"

class Persona(FastHttpUser):
    abstract = True
    wait_time = think_time()
    role = None  # the role of the accounts it signs in as

    def on_start(self):
        self.sign_in()
        for first_visit in dict.fromkeys(self.tasks):
            first_visit(self)

    def sign_in(self):
        login = accounts.current().next_login(self.role)
        tokens = self._post_json(API + "/auth/login", {"email": login.email, "password": login.password})
        self._keep(tokens)

    def _keep(self, tokens):
        self._access_token = tokens["access_token"]
        self._refresh_token = tokens["refresh_token"]
        # Renewed a minute early: a token that expires in flight answers 401.
        self._renew_at = time.monotonic() + tokens["expires_in"] - 60

    def _post_json(self, url, body):
        with self.client.post(url, json=body, catch_response=True) as response:
            if response.status_code != 200:
                response.failure(failure_text(response))
                raise RuntimeError(f"POST {url} answered {response.status_code}; this user stops")
            return response.json()

    def auth_headers(self):
        if time.monotonic() >= self._renew_at:
            self._keep(self._post_json(API + "/auth/refresh", {"refresh_token": self._refresh_token}))
        return {"Authorization": "Bearer " + self._access_token}

    def call(self, method, url, name, **kwargs):
        """One request as this user; the answer's JSON body, or None when it failed (already counted)."""
        headers = {**self.auth_headers(), **kwargs.pop("headers", {})}
        with self.client.request(method, url, name=name, headers=headers, catch_response=True,
                                 **kwargs) as response:
            if not 200 <= response.status_code < 300:
                response.failure(failure_text(response))
                return None
            if "json" not in response.headers.get("Content-Type", ""):
                return {}
            return response.json()

    def post_once_sales_knows(self, url, name, body):
        """POST a deal or quote, tried again while sales does not know its customer yet (see
        SALES_LAG_SECONDS); every refusal is counted as the error the person saw."""
        deadline = time.monotonic() + SALES_LAG_SECONDS
        while True:
            with self.client.post(url, name=name, json=body, headers=self.auth_headers(),
                                  catch_response=True) as response:
                if 200 <= response.status_code < 300:
                    return response.json()
                response.failure(failure_text(response))
                if not (response.status_code == 422 and "customer_id" in response.json().get("errors", {})
                        and time.monotonic() < deadline):
                    return None
            time.sleep(0.5)  # gevent's: this user waits, the others run


class SalesRep(Persona):
    """Works their own customers: finds and opens them, logs follow-ups, moves deals, sends quotes."""

    role = "sales"
    weight = 6

    def on_start(self):
        self.customer_ids = []
        self.open_deals = []  # [(opportunity id, customer id, stage)]
        super().on_start()

    @task(4)
    def list_customers(self):
        page = self.call("GET", path("/customers", limit=20, sort="-updated_at"), "/api/v1/customers")
        if page and page["items"]:
            self.customer_ids = [customer["id"] for customer in page["items"]]

    @task(3)
    def search_customers(self):
        self.call("GET", path("/customers", q=data.search_term(), limit=20), "/api/v1/customers?q={term}")

    @task(1)
    def create_customer(self):
        created = self.call("POST", path("/customers"), "/api/v1/customers", json=data.customer())
        if created:
            self.customer_ids.insert(0, created["id"])

    def a_customer(self):
        if not self.customer_ids:
            self.create_customer()
        return random.choice(self.customer_ids) if self.customer_ids else None

    @task(3)
    def open_customer(self):
        customer_id = self.a_customer()
        if customer_id:
            self.call("GET", path(f"/customers/{customer_id}"), "/api/v1/customers/{id}")

    @task(2)
    def log_followup(self):
        customer_id = self.a_customer()
        if customer_id:
            self.call("POST", path(f"/customers/{customer_id}/followups"), "/api/v1/customers/{id}/followups",
                      json={"type": random.choice(("call", "email", "meeting", "visit")),
                            "summary": "Talked through the offer", "next_followup_at": data.iso(data.in_days(7))})

    @task(2)
    def create_opportunity(self):
        customer_id = self.a_customer()
        if not customer_id:
            return
        deal = self.post_once_sales_knows(path("/opportunities"), "/api/v1/opportunities", {
            "customer_id": customer_id, "title": f"Deal {data.company_name()}",
            "amount": f"{random.randint(1, 500) * 100}.00", "currency": "CNY",
            "expected_close_date": data.in_days(30).date().isoformat()})
        if deal:
            self.open_deals.append((deal["id"], customer_id, deal["stage"]))

    @task(2)
    def move_opportunity(self):
        if not self.open_deals:
            self.create_opportunity()
            return
        position = random.randrange(len(self.open_deals))
        deal_id, customer_id, stage = self.open_deals[position]
        later = OPEN_STAGES[OPEN_STAGES.index(stage) + 1:] if stage in OPEN_STAGES else ()
        target = later[0] if later else "won"
        moved = self.call("POST", path(f"/opportunities/{deal_id}/stage"), "/api/v1/opportunities/{id}/stage",
                          json={"stage": target, "note": "Moved by the load test"})
        if moved and target in OPEN_STAGES:
            self.open_deals[position] = (deal_id, customer_id, target)
        else:
            del self.open_deals[position]

    @task(1)
    def create_quote(self):
        if not self.open_deals:
            self.create_opportunity()
            return
        deal_id, customer_id, _ = random.choice(self.open_deals)
        self.post_once_sales_knows(path("/quotes"), "/api/v1/quotes", {
            "customer_id": customer_id, "opportunity_id": deal_id, "currency": "CNY",
            "valid_until": data.in_days(30).date().isoformat(),
            "lines": [{"description": "Annual licence", "quantity": str(random.randint(1, 20)),
                       "unit_price": "1200.00", "tax_rate": "13"}]})


class Manager(Persona):
    """Watches the team's pipeline board and reads the reports."""

    role = "manager"
    weight = 2

    def on_start(self):
        self.pipeline_id = None
        super().on_start()

    @task(4)
    def pipeline_board(self):
        if self.pipeline_id is None:
            pipelines = self.call("GET", path("/pipelines"), "/api/v1/pipelines")
            if not pipelines:
                return
            listed = pipelines["items"] if isinstance(pipelines, dict) else pipelines
            self.pipeline_id = next((p["id"] for p in listed if p.get("is_default")), listed[0]["id"])
        self.call("GET", path(f"/pipelines/{self.pipeline_id}/board", per_stage=20),
                  "/api/v1/pipelines/{id}/board")

    @task(2)
    def list_opportunities(self):
        self.call("GET", path("/opportunities", limit=50), "/api/v1/opportunities")

    @task(2)
    def customers_summary(self):
        self.call("GET", path("/reports/customers/summary", **data.report_filters()),
                  "/api/v1/reports/customers/summary")

    @task(1)
    def sales_funnel(self):
        period = data.report_filters()
        self.call("GET", path("/reports/sales/funnel", **{"from": period["from"], "to": period["to"]}),
                  "/api/v1/reports/sales/funnel")

    @task(1)
    def sales_by_period(self):
        filters = data.report_filters(granularities=("day", "week", "month", "quarter"))
        self.call("GET", path("/reports/sales/by-period", **filters), "/api/v1/reports/sales/by-period")

    @task(1)
    def sales_forecast(self):
        self.call("GET", path("/reports/sales/forecast"), "/api/v1/reports/sales/forecast")

    @task(1)
    def sales_by_owner(self):
        filters = data.report_filters()
        filters.pop("granularity")  # one row per owner: no periods
        self.call("GET", path("/reports/sales/by-owner", **filters), "/api/v1/reports/sales/by-owner")

    @task(1)
    def activities(self):
        self.call("GET", path("/reports/activities"), "/api/v1/reports/activities")


class Support(Persona):
    """Works a task list and the in-app inbox."""

    role = "support"
    weight = 2

    def on_start(self):
        self.open_task_ids = []
        super().on_start()

    @task(4)
    def my_tasks(self):
        page = self.call("GET", path("/tasks", assignee="me", status="open", limit=50), "/api/v1/tasks")
        if page:
            self.open_task_ids = [item["id"] for item in page["items"]]

    @task(2)
    def create_task(self):
        created = self.call("POST", path("/tasks"), "/api/v1/tasks", json={
            "title": f"Call back {data.company_name()}", "priority": random.choice(("low", "normal", "high")),
            "due_at": data.iso(data.in_days(2))})
        if created:
            self.open_task_ids.append(created["id"])

    @task(1)
    def complete_task(self):
        if not self.open_task_ids:
            self.create_task()
            return
        task_id = self.open_task_ids.pop(random.randrange(len(self.open_task_ids)))
        self.call("POST", path(f"/tasks/{task_id}/complete"), "/api/v1/tasks/{id}/complete")

    @task(3)
    def inbox(self):
        self.call("GET", path("/notifications", limit=20), "/api/v1/notifications")

    @task(3)
    def unread_count(self):
        self.call("GET", path("/notifications/unread-count"), "/api/v1/notifications/unread-count")

    @task(1)
    def read_all(self):
        self.call("POST", path("/notifications/read-all"), "/api/v1/notifications/read-all")


class IntegrationClient(Persona):
    """Another system syncing over the API with an API key: reads, exports, imports a small file."""

    weight = 1

    def sign_in(self):
        self.api_key = accounts.current().next_api_key()

    def auth_headers(self):
        return {"X-API-Key": self.api_key}

    @task(4)
    def list_customers(self):
        self.call("GET", path("/customers", limit=100, sort="-updated_at"), "/api/v1/customers (API key)")

    @task(1)
    def export_recent_customers(self):
        # What changed lately, not the whole book: a seeded database holds 100 000 customers.
        since = data.iso(data.hours_ago(1))
        self.call("GET", path("/exports/customers", format="csv", created_from=since),
                  "/api/v1/exports/customers")

    @task(1)
    def import_customers(self):
        body, content_type = data.multipart({"dry_run": "false"}, "file", "customers.csv", data.import_csv(),
                                            "text/csv")
        self.call("POST", path("/imports/customers"), "/api/v1/imports/customers", data=body,
                  headers={"Content-Type": content_type})
