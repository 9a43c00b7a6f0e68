"""The reporting service's entrypoints: thin wrappers over the read models and reports.

- reporting.ingest keeps the read models in step with the other services' events;
- reporting.rebuild refills them from those services' data (RPC paging);
- reporting.consistency compares their totals with the sources';
- reporting.reports answers the reports, as JSON or as a CSV/XLSX file.
"""
from nameko.timer import timer

from crm_common.entrypoints import rpc

from crm_common.consumer import event_handler
from crm_common.context import Context, RequestContext, RunAs
from crm_common.db import Database, make_session_factory
from crm_common.metrics import Metrics
from crm_common.rpc import BoundedRpcProxy
from crm_common.ops import OpsEndpoints

from reporting import personal_data
from reporting.models import Base
from reporting.reports import Reports

from reporting import consistency, ingest, rebuild

CUSTOMERS = "customers"
SALES = "sales"

# How often an idle instance looks for a rebuild run to do.
REBUILD_POLL_SECONDS = 2.0
# Each page of a rebuild and each totals call may take this long (a page is
# hundreds of records, not one user's request).
SOURCE_CALL_TIMEOUT = 60
REBUILD_PAGE_SIZE = 500


class ReportingService(OpsEndpoints):
    name = "reporting"

    # Reports group many rows: the default 4 MB work_mem spills their sorts to disk (measured: top
    # customers 175 -> 135 ms at 250,000 orders), and JIT compiling costs tens of ms that queries
    # this short never win back. Set once per connection, not per report.
    db = Database(migrations="reporting.migrations", metadata=Base.metadata,
                  settings={"work_mem": "32MB", "jit": "off"})
    context = Context()
    metrics = Metrics()
    customers = BoundedRpcProxy(CUSTOMERS, timeout=SOURCE_CALL_TIMEOUT)
    sales = BoundedRpcProxy(SALES, timeout=SOURCE_CALL_TIMEOUT)
    run_as = RunAs()

    # --- read models: event handlers (reporting.ingest) ----------------------

    @event_handler(CUSTOMERS, "customer.created")
    def on_customer_created(self, envelope):
        ingest.apply_event(self.db, envelope)

    @event_handler(CUSTOMERS, "customer.updated")
    def on_customer_updated(self, envelope):
        ingest.apply_event(self.db, envelope)

    @event_handler(CUSTOMERS, "customer.deleted")
    def on_customer_deleted(self, envelope):
        ingest.apply_event(self.db, envelope)

    @event_handler(CUSTOMERS, "customer.imported")
    def on_customers_imported(self, envelope):
        ingest.apply_event(self.db, envelope)

    @event_handler(CUSTOMERS, "customer.merged")
    def on_customers_merged(self, envelope):
        ingest.apply_event(self.db, envelope)

    @event_handler(CUSTOMERS, "followup.logged")
    def on_followup_logged(self, envelope):
        ingest.apply_event(self.db, envelope)

    @event_handler(CUSTOMERS, "customer.erased")
    def on_customer_erased(self, envelope):
        personal_data.apply_erased(self.db, envelope)

    @event_handler(SALES, "order.placed")
    def on_order_placed(self, envelope):
        ingest.apply_event(self.db, envelope)

    @event_handler(SALES, "order.paid")
    def on_order_paid(self, envelope):
        ingest.apply_event(self.db, envelope)

    @event_handler(SALES, "order.fulfilled")
    def on_order_fulfilled(self, envelope):
        ingest.apply_event(self.db, envelope)

    @event_handler(SALES, "order.cancelled")
    def on_order_cancelled(self, envelope):
        ingest.apply_event(self.db, envelope)

    @event_handler(SALES, "opportunity.created")
    def on_opportunity_created(self, envelope):
        ingest.apply_event(self.db, envelope)

    @event_handler(SALES, "opportunity.updated")
    def on_opportunity_updated(self, envelope):
        ingest.apply_event(self.db, envelope)

    @event_handler(SALES, "opportunity.stage_changed")
    def on_opportunity_stage_changed(self, envelope):
        ingest.apply_event(self.db, envelope)

    @event_handler(SALES, "opportunity.won")
    def on_opportunity_won(self, envelope):
        ingest.apply_event(self.db, envelope)

    @event_handler(SALES, "opportunity.lost")
    def on_opportunity_lost(self, envelope):
        ingest.apply_event(self.db, envelope)

    @event_handler(SALES, "contract.#")
    def on_contract_event(self, envelope):
        ingest.apply_event(self.db, envelope)

    # --- rebuild and consistency (reporting.rebuild, reporting.consistency) --

    @rpc
    def start_rebuild(self):
        return rebuild.Rebuilds(self.db, self.context).start()

    @rpc
    def get_rebuild(self, run_id):
        return rebuild.Rebuilds(self.db, self.context).get(run_id)

    @timer(interval=REBUILD_POLL_SECONDS)
    def run_rebuilds(self):
        # Nobody called this worker: it reads the sources as the system (their
        # reporting RPCs refuse anyone but admin and system), and each page is
        # written in a session of its own (not the worker's single transaction).
        self.run_as(RequestContext.system())
        rebuild.run_pending(make_session_factory(self.db.get_bind()), self._fetch_page)

    def _fetch_page(self, service, kind, cursor):
        proxy = self.customers if service == CUSTOMERS else self.sales
        return proxy.reporting_page(kind, cursor=cursor, limit=REBUILD_PAGE_SIZE)

    @rpc
    def consistency(self):
        consistency.require_admin(self.context)
        return consistency.consistency(self.db, self.customers.reporting_totals(), self.sales.reporting_totals())

    # --- reports (reporting.reports) -----------------------------------------

    @rpc(read_only=True)
    def report(self, name, filters=None):
        return Reports(self.db, self.context).run(name, filters)

    @rpc(read_only=True)
    def export_report(self, name, filters=None, file_format="csv"):
        return Reports(self.db, self.context).export(name, filters, file_format)
