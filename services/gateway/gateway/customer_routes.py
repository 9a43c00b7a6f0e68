"""The gateway's routes for customer records (the customers service).

A mixin of GatewayService: the routes here use its dependencies
(``self.customers``, ``self.context``, ``self._users()``, ``self._once``).
"""
from gateway import idempotency
from gateway.http import API_PREFIX, Reply, api, etag, if_match_version, if_none_match_version, page_arguments
from gateway.schemas import (
    CUSTOMER_FILTERS, CustomerCreateRequest, CustomerListQuery, CustomerPage, CustomerResponse,
    CustomerUpdateRequest,
)

WRITERS = ("admin", "manager", "sales")


class CustomerRoutes:
    @api("POST", "/customers", roles=WRITERS, body=CustomerCreateRequest, response=CustomerResponse, status=201,
         headers=(idempotency.HEADER,), tags=("customers",), summary="Create a customer")
    def create_customer(self, request, body):
        def create():
            owner_id = body.get("owner_id") if isinstance(body, dict) else None
            owner_team_id = self._users().team_of_owner(owner_id, self.context.user_id, self.context.team_id)
            customer = self.customers.create_customer(body, owner_team_id)
            return Reply(customer, headers={"Location": f"{API_PREFIX}/customers/{customer['id']}",
                                            "ETag": etag(customer["version"])})
        return self._once(request, body, create)

    @api("GET", "/customers", query=CustomerListQuery, response=CustomerPage, tags=("customers",),
         summary="List the customers the caller may see")
    def list_customers(self, request):
        filters = {name: request.args[name] for name in CUSTOMER_FILTERS if name in request.args}
        limit, cursor = page_arguments(request)
        return self.customers.list_customers(filters, limit, cursor, request.args.get("sort") or None)

    @api("GET", "/customers/<customer_id>", response=CustomerResponse, headers=("If-None-Match",),
         tags=("customers",), summary="One customer")
    def get_customer(self, request, customer_id):
        customer = self.customers.get_customer(customer_id)
        headers = {"ETag": etag(customer["version"])}
        if if_none_match_version(request) == customer["version"]:
            return Reply(status=304, headers=headers)
        return Reply(customer, headers=headers)

    @api("PATCH", "/customers/<customer_id>", roles=WRITERS, body=CustomerUpdateRequest, response=CustomerResponse,
         headers=("If-Match",), tags=("customers",), summary="Change some fields of a customer")
    def update_customer(self, request, customer_id, body):
        customer = self.customers.update_customer(customer_id, body, if_match_version(request))
        return Reply(customer, headers={"ETag": etag(customer["version"])})

    @api("DELETE", "/customers/<customer_id>", roles=WRITERS, status=204, headers=("If-Match",),
         tags=("customers",), summary="Delete a customer")
    def delete_customer(self, request, customer_id):
        self.customers.delete_customer(customer_id, if_match_version(request))

