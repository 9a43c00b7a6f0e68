"""The customers service's entrypoints: thin wrappers over customers.domain."""
from crm_common.entrypoints import rpc

from crm_common.context import Context
from crm_common.db import Database
from crm_common.metrics import Metrics
from crm_common.ops import OpsEndpoints

from customers.domain import CustomerBook, to_dict


class CustomersService(OpsEndpoints):
    name = "customers"

    db = Database(migrations="customers.migrations")
    context = Context()
    metrics = Metrics()

    def _book(self):
        return CustomerBook(self.db, self.context)

    @rpc
    def create_customer(self, data, owner_team_id=None):
        return self._book().create(data, owner_team_id)

    @rpc
    def get_customer(self, customer_id):
        return to_dict(self._book().get(customer_id))

    @rpc
    def list_customers(self, filters=None, limit=None, cursor=None, sort=None):
        return self._book().list(filters, limit, cursor, sort)

    @rpc
    def update_customer(self, customer_id, changes, expected_version=None):
        return self._book().update(customer_id, changes, expected_version)

    @rpc
    def delete_customer(self, customer_id, expected_version=None):
        self._book().delete(customer_id, expected_version)

    # --- contacts, follow-ups and saved views (customers.activity) ----------

    # --- imports and exports (customers.imports, customers.exports) ---------
