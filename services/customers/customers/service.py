"""The customers service's entrypoints: thin wrappers over customers.domain."""
from functools import partial

from nameko.timer import timer

from crm_common.entrypoints import rpc

from crm_common.context import Context
from crm_common.db import Database, make_session_factory
from crm_common.metrics import Metrics
from crm_common.ops import OpsEndpoints

from customers.models import Base
from customers import audited  # noqa: F401 (registers the audited models)
from customers.activity import Contacts, Followups, SavedViews
from customers.custom_fields import CustomFieldCatalogue
from customers.domain import CustomerBook, to_dict
from customers import import_runner, imports
from customers.exports import CustomerExport
from customers import personal_data
from customers.reporting_feed import CustomerFeed

# How often an idle instance looks for queued import jobs.
IMPORT_POLL_SECONDS = 1.0


class CustomersService(OpsEndpoints):
    name = "customers"

    db = Database(migrations="customers.migrations", metadata=Base.metadata)
    context = Context()
    metrics = Metrics()

    def _book(self):
        return CustomerBook(self.db, self.context)

    @rpc
    def create_customer(self, data, owner_team_id=None, allow_duplicate=False):
        return self._book().create(data, owner_team_id, allow_duplicate)

    @rpc(read_only=True)
    def get_customer(self, customer_id, include_deleted=False):
        book = self._book()
        return to_dict(book.get(customer_id, include_deleted=include_deleted and book.context.is_admin))

    @rpc(read_only=True)
    def list_customers(self, filters=None, limit=None, cursor=None, sort=None):
        return self._book().list(filters, limit, cursor, sort)

    @rpc
    def update_customer(self, customer_id, changes, expected_version=None):
        return self._book().update(customer_id, changes, expected_version)

    @rpc
    def delete_customer(self, customer_id, expected_version=None):
        self._book().delete(customer_id, expected_version)

    @rpc
    def restore_customer(self, customer_id):
        return self._book().restore(customer_id)

    @rpc(read_only=True)
    def customer_history(self, customer_id, limit=None, cursor=None):
        return self._book().history(customer_id, limit, cursor)

    @rpc
    def assign_customer(self, customer_id, data, owner_team_id=None):
        return self._book().assign(customer_id, data, owner_team_id)

    @rpc
    def bulk_assign_customers(self, data, owner_team_id=None):
        return self._book().bulk_assign(data, owner_team_id)

    @rpc(read_only=True)
    def customer_duplicates(self, customer_id):
        return self._book().duplicates(customer_id)

    @rpc
    def merge_customers(self, target_id, data):
        return self._book().merge(target_id, data)

    @rpc(read_only=True)
    def list_custom_fields(self):
        return CustomFieldCatalogue(self.db, self.context).list()

    @rpc
    def define_custom_field(self, data):
        return CustomFieldCatalogue(self.db, self.context).define(data)

    # --- contacts, follow-ups and saved views (customers.activity) ----------

    @rpc
    def create_contact(self, customer_id, data):
        return Contacts(self.db, self.context).create(customer_id, data)

    @rpc(read_only=True)
    def list_contacts(self, customer_id):
        return Contacts(self.db, self.context).list(customer_id)

    @rpc(read_only=True)
    def get_contact(self, customer_id, contact_id):
        return Contacts(self.db, self.context).get(customer_id, contact_id)

    @rpc
    def update_contact(self, customer_id, contact_id, changes, expected_version=None):
        return Contacts(self.db, self.context).update(customer_id, contact_id, changes, expected_version)

    @rpc
    def delete_contact(self, customer_id, contact_id):
        Contacts(self.db, self.context).delete(customer_id, contact_id)

    @rpc
    def log_followup(self, customer_id, data):
        return Followups(self.db, self.context).log(customer_id, data)

    @rpc(read_only=True)
    def list_followups(self, customer_id, limit=None, cursor=None):
        return Followups(self.db, self.context).list(customer_id, limit, cursor)

    @rpc(read_only=True)
    def get_followup(self, followup_id):
        return Followups(self.db, self.context).get(followup_id)

    @rpc(read_only=True)
    def due_followups(self, owner_id=None, due_before=None, limit=None, cursor=None):
        return Followups(self.db, self.context).due(owner_id, due_before, limit, cursor)

    @rpc
    def create_view(self, data):
        return SavedViews(self.db, self.context).create(data)

    @rpc(read_only=True)
    def list_views(self):
        return SavedViews(self.db, self.context).list()

    @rpc(read_only=True)
    def get_view(self, view_id):
        return SavedViews(self.db, self.context).get(view_id)

    @rpc
    def delete_view(self, view_id):
        SavedViews(self.db, self.context).delete(view_id)

    # --- reporting's rebuild and consistency check (customers.reporting_feed) ---

    @rpc
    def reporting_page(self, kind, cursor=None, limit=None):
        return CustomerFeed(self.db, self.context).page(kind, cursor, limit)

    @rpc
    def reporting_totals(self):
        return CustomerFeed(self.db, self.context).totals()

    # --- imports and exports (customers.imports, customers.exports) ---------

    @rpc
    def import_customers(self, content_base64, filename, options, owner_teams=None):
        """Import a file (base64): small ones now (status done), large ones as a queued job."""
        content = imports.decode_content(content_base64)
        return imports.Imports(self.db, self.context).start(content, filename, options, owner_teams)

    @rpc
    def get_import(self, job_id):
        return imports.Imports(self.db, self.context).get(job_id)

    @timer(interval=IMPORT_POLL_SECONDS)
    def run_import_jobs(self):
        # The claim and its bookkeeping use sessions of their own (not the worker's
        # single transaction); the rows are imported by a separate process.
        sessions = make_session_factory(self.db.get_bind())
        imports.run_queued_jobs(sessions, run=partial(import_runner.run_in_child_process, sessions))

    @rpc
    def export_customers(self, filters=None, options=None):
        return CustomerExport(self.db, self.context).render(filters, options)

    # --- personal data rights (customers.personal_data): admins only ------------

    @rpc
    def export_personal_data(self, customer_id):
        return personal_data.personal_data(self.db, self.context, customer_id)

    @rpc
    def erase_customer(self, customer_id, reason):
        return personal_data.erase_customer(self.db, self.context, customer_id, reason)
