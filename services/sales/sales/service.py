"""The sales service's entrypoints: thin wrappers over sales.domain."""
from crm_common.entrypoints import rpc
from nameko.timer import timer

from crm_common.consumer import event_handler
from crm_common.context import Context
from crm_common.context import RequestContext
from crm_common.db import Database
from crm_common.config import env
from crm_common.types import utcnow
from crm_common.metrics import Metrics
from crm_common.ops import OpsEndpoints

from sales.models import Base
from sales import audited  # noqa: F401 (registers the audited models)
from sales.domain import CustomerReplicaFeed, customer_known
from sales.catalogue import PriceLists, Products
from sales.orders import Orders
from sales.quotes import Quotes
from sales.contracts import ContractExpiry, Contracts
from sales.storage import store_from_env
from sales.pipeline import Opportunities, Pipelines
from sales.reporting_feed import SalesFeed
from sales import personal_data

CUSTOMERS = "customers"


class SalesService(OpsEndpoints):
    name = "sales"

    db = Database(migrations="sales.migrations", metadata=Base.metadata)
    context = Context()
    metrics = Metrics()

    # --- customer replica ------------------------------------------------

    @event_handler(CUSTOMERS, "customer.created")
    def on_customer_created(self, envelope):
        CustomerReplicaFeed(self.db).apply_snapshot(envelope)

    @event_handler(CUSTOMERS, "customer.updated")
    def on_customer_updated(self, envelope):
        CustomerReplicaFeed(self.db).apply_snapshot(envelope)

    @event_handler(CUSTOMERS, "customer.deleted")
    def on_customer_deleted(self, envelope):
        CustomerReplicaFeed(self.db).apply_snapshot(envelope)

    @event_handler(CUSTOMERS, "customer.assigned")
    def on_customer_assigned(self, envelope):
        CustomerReplicaFeed(self.db).apply_assigned(envelope)

    @event_handler(CUSTOMERS, "customer.imported")
    def on_customers_imported(self, envelope):
        CustomerReplicaFeed(self.db).apply_imported(envelope)

    @rpc(read_only=True)
    def customer_known(self, customer_id):
        return customer_known(self.db, customer_id)

    # --- products, price lists, quotes, orders, payments (sales.catalogue, sales.quotes, sales.orders) ---

    @rpc
    def create_product(self, data):
        return Products(self.db, self.context).create(data)

    @rpc(read_only=True)
    def get_product(self, product_id):
        return Products(self.db, self.context).get(product_id)

    @rpc(read_only=True)
    def list_products(self, filters=None, limit=None, cursor=None):
        return Products(self.db, self.context).list(filters, limit, cursor)

    @rpc
    def update_product(self, product_id, changes, expected_version=None):
        return Products(self.db, self.context).update(product_id, changes, expected_version)

    @rpc
    def create_price_list(self, data):
        return PriceLists(self.db, self.context).create(data)

    @rpc(read_only=True)
    def get_price_list(self, price_list_id):
        return PriceLists(self.db, self.context).get(price_list_id)

    @rpc(read_only=True)
    def list_price_lists(self, limit=None, cursor=None):
        return PriceLists(self.db, self.context).list(limit, cursor)

    @rpc
    def update_price_list(self, price_list_id, changes, expected_version=None):
        return PriceLists(self.db, self.context).update(price_list_id, changes, expected_version)

    @rpc
    def create_quote(self, data, owner_team_id=None):
        return Quotes(self.db, self.context).create(data, owner_team_id)

    @rpc(read_only=True)
    def get_quote(self, quote_id):
        return Quotes(self.db, self.context).get(quote_id)

    @rpc(read_only=True)
    def list_quotes(self, filters=None, limit=None, cursor=None):
        return Quotes(self.db, self.context).list(filters, limit, cursor)

    @rpc
    def update_quote(self, quote_id, changes, expected_version=None):
        return Quotes(self.db, self.context).update(quote_id, changes, expected_version)

    @rpc
    def send_quote(self, quote_id):
        return Quotes(self.db, self.context).send(quote_id)

    @rpc
    def accept_quote(self, quote_id):
        return Quotes(self.db, self.context).accept(quote_id)

    @rpc
    def reject_quote(self, quote_id, data):
        return Quotes(self.db, self.context).reject(quote_id, data)

    @rpc
    def create_order(self, data, owner_team_id=None):
        return Orders(self.db, self.context).create(data, owner_team_id)

    @rpc(read_only=True)
    def get_order(self, order_id):
        return Orders(self.db, self.context).get(order_id)

    @rpc(read_only=True)
    def list_orders(self, filters=None, limit=None, cursor=None):
        return Orders(self.db, self.context).list(filters, limit, cursor)

    @rpc
    def confirm_order(self, order_id):
        return Orders(self.db, self.context).confirm(order_id)

    @rpc
    def pay_order(self, order_id, data):
        return Orders(self.db, self.context).pay(order_id, data)

    @rpc(read_only=True)
    def list_payments(self, order_id):
        return Orders(self.db, self.context).payments(order_id)

    @rpc
    def fulfil_order(self, order_id):
        return Orders(self.db, self.context).fulfil(order_id)

    @rpc
    def cancel_order(self, order_id, data):
        return Orders(self.db, self.context).cancel(order_id, data)

    # --- pipelines and opportunities (sales.pipeline) ---------------------

    @rpc(read_only=True)
    def list_pipelines(self):
        return Pipelines(self.db, self.context).list()

    @rpc(read_only=True)
    def get_pipeline(self, pipeline_id):
        return Pipelines(self.db, self.context).get(pipeline_id)

    @rpc
    def create_pipeline(self, data):
        return Pipelines(self.db, self.context).create(data)

    @rpc
    def add_pipeline_stage(self, pipeline_id, data):
        return Pipelines(self.db, self.context).add_stage(pipeline_id, data)

    @rpc(read_only=True)
    def pipeline_board(self, pipeline_id, query=None):
        return Pipelines(self.db, self.context).board(pipeline_id, query)

    @rpc
    def create_opportunity(self, data, owner_team_id=None):
        return Opportunities(self.db, self.context).create(data, owner_team_id)

    @rpc(read_only=True)
    def get_opportunity(self, opportunity_id):
        return Opportunities(self.db, self.context).get(opportunity_id)

    @rpc(read_only=True)
    def list_opportunities(self, filters=None, limit=None, cursor=None, sort=None):
        return Opportunities(self.db, self.context).list(filters, limit, cursor, sort)

    @rpc
    def update_opportunity(self, opportunity_id, changes, expected_version=None):
        return Opportunities(self.db, self.context).update(opportunity_id, changes, expected_version)

    @rpc
    def move_opportunity(self, opportunity_id, data, expected_version=None):
        return Opportunities(self.db, self.context).move(opportunity_id, data, expected_version)

    @rpc(read_only=True)
    def opportunity_history(self, opportunity_id, limit=None, cursor=None):
        return Opportunities(self.db, self.context).history(opportunity_id, limit, cursor)

    @event_handler(CUSTOMERS, "customer.merged")
    def on_customer_merged(self, envelope):
        CustomerReplicaFeed(self.db).apply_merged(envelope)

    # --- personal data rights (sales.personal_data) -------------------------

    @event_handler(CUSTOMERS, "customer.erased")
    def on_customer_erased(self, envelope):
        personal_data.scrub_customer(self.db, envelope)

    @rpc
    def export_personal_data(self, customer_id):
        return personal_data.personal_data(self.db, self.context, customer_id)

    # --- reporting's rebuild and consistency check (sales.reporting_feed) ---

    @rpc
    def reporting_page(self, kind, cursor=None, limit=None):
        return SalesFeed(self.db, self.context).page(kind, cursor, limit)

    @rpc
    def reporting_totals(self):
        return SalesFeed(self.db, self.context).totals()

    # --- contracts (sales.contracts) --------------------------------------

    def _contracts(self):
        return Contracts(self.db, self.context, store_from_env())

    @rpc
    def create_contract(self, data, owner_team_id=None):
        return self._contracts().create(data, owner_team_id)

    @rpc(read_only=True)
    def get_contract(self, contract_id):
        return self._contracts().get(contract_id)

    @rpc(read_only=True)
    def list_contracts(self, filters=None, limit=None, cursor=None):
        return self._contracts().list(filters, limit, cursor)

    @rpc
    def update_contract(self, contract_id, changes, expected_version=None):
        return self._contracts().update(contract_id, changes, expected_version)

    @rpc
    def submit_contract(self, contract_id):
        return self._contracts().submit(contract_id)

    @rpc
    def approve_contract(self, contract_id):
        return self._contracts().approve(contract_id)

    @rpc
    def reject_contract(self, contract_id, data):
        return self._contracts().reject(contract_id, data)

    @rpc
    def sign_contract(self, contract_id, data=None):
        return self._contracts().sign(contract_id, data)

    @rpc
    def terminate_contract(self, contract_id, data):
        return self._contracts().terminate(contract_id, data)

    @rpc(read_only=True)
    def contract_history(self, contract_id, limit=None, cursor=None):
        return self._contracts().history(contract_id, limit, cursor)

    @rpc
    def add_contract_attachment(self, contract_id, content_base64, file_name, content_type=None):
        return self._contracts().add_attachment(contract_id, content_base64, file_name, content_type)

    @rpc(read_only=True)
    def list_contract_attachments(self, contract_id):
        return self._contracts().list_attachments(contract_id)

    @rpc
    def contract_attachment_content(self, contract_id, attachment_id):
        return self._contracts().attachment_content(contract_id, attachment_id)

    @rpc
    def delete_contract_attachment(self, contract_id, attachment_id):
        self._contracts().delete_attachment(contract_id, attachment_id)

    @rpc
    def check_contract_expiry(self):
        """The daily check on demand (admins): the same work as the timer's."""
        return ContractExpiry(self.db, self.context).run(utcnow().date())

    # Hourly by default: every step claims its rows, so running more often than
    # daily repeats nothing, and a missed run (a restart at midnight) is caught up.
    @timer(interval=env("CRM_CONTRACT_CHECK_SECONDS", 3600.0, float))
    def check_contracts_daily(self):
        ContractExpiry(self.db, RequestContext.system()).run(utcnow().date())
