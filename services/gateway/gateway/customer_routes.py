"""The gateway's routes for customer records (the customers service).

A mixin of GatewayService: the routes here use its dependencies
(``self.customers``, ``self.context``, ``self._users()``, ``self._once``).
The customers service validates input and applies record-level rules; the
gateway adds what only it knows: the owner's team (it owns the users).
"""
from gateway import idempotency
from gateway.permissions import rule
from gateway.http import (
    API_PREFIX, Reply, api, etag, if_match_version, if_none_match_version, page_arguments, query_flag,
)
from gateway.schemas import (
    CUSTOMER_FILTERS, REPEATABLE_FILTERS, AssignRequest, BulkAssignRequest, BulkAssignResponse, CreateCustomerQuery,
    CustomerCreateRequest, CustomerListQuery, CustomerPage, CustomerResponse, CustomerUpdateRequest,
    CustomFieldList, CustomFieldRequest, CustomFieldResponse, DuplicateList, HistoryPage, IncludeDeletedQuery,
    MergeRequest, PageQuery,
)



def customer_filters(request):
    """The list filters of a query string, as the customers service takes them."""
    filters = {}
    for name in CUSTOMER_FILTERS:
        if name in request.args:
            filters[name] = request.args.getlist(name) if name in REPEATABLE_FILTERS else request.args[name]
    return filters


def _owner_id(body):
    return body.get("owner_id") if isinstance(body, dict) else None


class CustomerRoutes:

    def _owner_team(self, owner_id):
        return self._users().team_of_owner(owner_id, self.context.user_id, self.context.team_id)

    @api("POST", "/customers", allow=rule("customers", "create"), body=CustomerCreateRequest, query=CreateCustomerQuery,
         response=CustomerResponse, status=201, headers=(idempotency.HEADER,), tags=("customers",),
         summary="Create a customer",
         description="Answers 409 with `candidates` when a customer with the same normalised phone, email, "
                     "or name + company exists; send `?allow_duplicate=true` to create it anyway.")
    def create_customer(self, request, body):
        def create():
            customer = self.customers.create_customer(
                body, self._owner_team(_owner_id(body)), query_flag(request, "allow_duplicate"))
            return Reply(customer, headers={"Location": f"{API_PREFIX}/customers/{customer['id']}",
                                            "ETag": etag(customer["version"])})
        return self._once(request, body, create)

    @api("GET", "/customers", allow=rule("customers", "read"), query=CustomerListQuery, response=CustomerPage,
         tags=("customers",), summary="Find the customers the caller may see")
    def list_customers(self, request):
        limit, cursor = page_arguments(request)
        return self.customers.list_customers(customer_filters(request), limit, cursor,
                                             request.args.get("sort") or None)

    @api("GET", "/customers/<customer_id>", allow=rule("customers", "read"), query=IncludeDeletedQuery,
         response=CustomerResponse, headers=("If-None-Match",), tags=("customers",), summary="One customer")
    def get_customer(self, request, customer_id):
        customer = self.customers.get_customer(customer_id, query_flag(request, "include_deleted"))
        headers = {"ETag": etag(customer["version"])}
        if if_none_match_version(request) == customer["version"]:
            return Reply(status=304, headers=headers)
        return Reply(customer, headers=headers)

    @api("PATCH", "/customers/<customer_id>", allow=rule("customers", "update"), body=CustomerUpdateRequest,
         response=CustomerResponse,
         headers=("If-Match",), tags=("customers",), summary="Change some fields of a customer")
    def update_customer(self, request, customer_id, body):
        customer = self.customers.update_customer(customer_id, body, if_match_version(request))
        return Reply(customer, headers={"ETag": etag(customer["version"])})

    @api("DELETE", "/customers/<customer_id>", allow=rule("customers", "delete"), status=204, headers=("If-Match",),
         tags=("customers",), summary="Delete a customer (it can be restored)")
    def delete_customer(self, request, customer_id):
        self.customers.delete_customer(customer_id, if_match_version(request))

    @api("POST", "/customers/<customer_id>/restore", allow=rule("customers", "restore"), response=CustomerResponse,
         tags=("customers",), summary="Undo the deletion of a customer")
    def restore_customer(self, request, customer_id):
        customer = self.customers.restore_customer(customer_id)
        return Reply(customer, headers={"ETag": etag(customer["version"])})

    @api("GET", "/customers/<customer_id>/history", allow=rule("customers", "read"), query=PageQuery,
         response=HistoryPage, tags=("customers",), summary="Every change to a customer, field by field, newest first")
    def customer_history(self, request, customer_id):
        limit, cursor = page_arguments(request)
        return self.customers.customer_history(customer_id, limit, cursor)

    @api("POST", "/customers/<customer_id>/assign", allow=rule("customers", "assign"), body=AssignRequest,
         response=CustomerResponse, tags=("customers",), summary="Give a customer to another owner",
         description="Managers assign within their team; admins to anyone who can own customers.")
    def assign_customer(self, request, customer_id, body):
        return self.customers.assign_customer(customer_id, body, self._owner_team(_owner_id(body)))

    @api("POST", "/customers/bulk-assign", allow=rule("customers", "assign"), body=BulkAssignRequest,
         response=BulkAssignResponse, tags=("customers",), summary="Give many customers to one owner: all or none")
    def bulk_assign_customers(self, request, body):
        return self.customers.bulk_assign_customers(body, self._owner_team(_owner_id(body)))

    @api("GET", "/customers/<customer_id>/duplicates", allow=rule("customers", "read"), response=DuplicateList,
         tags=("customers",), summary="Customers that are likely the same as this one, with the reasons")
    def customer_duplicates(self, request, customer_id):
        return self.customers.customer_duplicates(customer_id)

    @api("POST", "/customers/<customer_id>/merge", allow=rule("customers", "merge"), body=MergeRequest,
         response=CustomerResponse, tags=("customers",), summary="Merge another customer into this one",
         description="Contacts, follow-ups, tags, phones and emails of the source move here; this customer keeps "
                     "its values except the fields listed in take_from_source; the source is deleted and points "
                     "here. Both histories record the merge and `customer.merged` is published.")
    def merge_customers(self, request, customer_id, body):
        customer = self.customers.merge_customers(customer_id, body)
        return Reply(customer, headers={"ETag": etag(customer["version"])})

    @api("GET", "/customer-fields", allow=rule("custom fields", "read"), response=CustomFieldList, tags=("customers",),
         summary="The custom fields customers can carry")
    def list_custom_fields(self, request):
        return self.customers.list_custom_fields()

    @api("POST", "/customer-fields", allow=rule("custom fields", "create"), body=CustomFieldRequest,
         response=CustomFieldResponse, status=201, tags=("customers",), summary="Define a custom field")
    def define_custom_field(self, request, body):
        return self.customers.define_custom_field(body)
