"""The gateway's routes for a person's data rights: export everything held about a customer
across the services, and erase it (customers.personal_data and the services' customer.erased
handlers do the work).

A mixin of GatewayService: the routes here use its dependencies (``self.customers``,
``self.sales``, ``self.notifications``, ``self.db``, ``self.context``). Each RPC is bounded
by the proxies' timeout; a service that does not answer makes the whole export a 503, never a
partial export presented as complete.
"""
from crm_common.types import utcnow
from crm_common.validation import load

from gateway import audit_trail
from gateway.http import Reply, api
from gateway.permissions import rule
from gateway.personal_data_schemas import EraseRequest, EraseResponse, PersonalDataExport

TAGS = ("customers",)


class PersonalDataRoutes:

    @api("GET", "/customers/<customer_id>/export-personal-data", allow=rule("customers", "export personal data"),
         response=PersonalDataExport, tags=TAGS, summary="Everything the CRM holds about a customer",
         description="Assembled from every service that holds data about the customer (deleted and erased "
                     "customers too); 503 when one of them does not answer. Recorded in the audit trail.")
    def export_personal_data(self, request, customer_id):
        # Customers first: an unknown id is a 404 before anyone else is asked.
        customers = self.customers.export_personal_data(customer_id)
        customer_id = customers["customer"]["id"]
        export = {
            "customer_id": customer_id,
            "generated_at": utcnow().isoformat(),
            "customers": customers,
            "sales": self.sales.export_personal_data(customer_id),
            "notifications": self.notifications.export_personal_data(customer_id),
        }
        audit_trail.write_entry(self.db, self.context, "customer.personal_data_exported", "customer", customer_id,
                                detail={"services": ["customers", "sales", "notifications"]})
        return Reply(export, headers={"Cache-Control": "no-store"})

    @api("POST", "/customers/<customer_id>/erase", allow=rule("customers", "erase"), body=EraseRequest,
         response=EraseResponse, tags=TAGS, summary="Erase a customer's personal data (cannot be undone)",
         description="Anonymises the customer everywhere it lives: name, contact details, company details, "
                     "notes, custom fields, contacts, follow-up text, history values; the free text of its sales "
                     "records, tasks and notifications. Orders, lines, payments and amounts stay for accounting. "
                     "The other services catch up within seconds (event customer.erased). 409 when already "
                     "erased, or when the customer was merged into another (erase that one).")
    def erase_customer(self, request, customer_id, body):
        # Checked here: nothing is asked of any service before the request is complete.
        body = load(EraseRequest, body)
        return self.customers.erase_customer(customer_id, body["reason"])
