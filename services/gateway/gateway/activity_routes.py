"""The gateway's routes for contacts, follow-ups and saved customer views.

A mixin of GatewayService: the routes here use its dependencies
(``self.customers``, ``self.context``, ``self._users()``, ``self._once``).
The customers service applies who may see which customer; the roles here
only keep read-only roles away from changes.
"""
from gateway import idempotency
from gateway.activity_schemas import (
    ContactCreateRequest, ContactList, ContactResponse, ContactUpdateRequest, DueFollowupPage, DueFollowupsQuery,
    FollowupCreateRequest, FollowupPage, FollowupResponse, ViewCreateRequest, ViewList, ViewResponse,
)
from gateway.permissions import rule
from gateway.http import API_PREFIX, Reply, api, etag, if_match_version, if_none_match_version, page_arguments
from gateway.schemas import PageQuery

APPEND_ONLY = ("Follow-ups are the customer's relationship history and are append-only: there is no "
               "PATCH or DELETE. To correct one, log another.")


def versioned(request, record):
    """``record`` with its ETag; 304 without a body when the client holds this version."""
    headers = {"ETag": etag(record["version"])}
    if if_none_match_version(request) == record["version"]:
        return Reply(status=304, headers=headers)
    return Reply(record, headers=headers)


class ActivityRoutes:
    # --- contacts ------------------------------------------------------------

    @api("POST", "/customers/<customer_id>/contacts", allow=rule("contacts", "create"), body=ContactCreateRequest,
         response=ContactResponse, status=201, headers=(idempotency.HEADER,), tags=("contacts",),
         summary="Add a contact to a company customer",
         description="Only company customers have contacts (409 for a person). Changes the customer's "
                     "version: contact names are part of its keyword search.")
    def create_contact(self, request, customer_id, body):
        def create():
            contact = self.customers.create_contact(customer_id, body)
            return Reply(contact, headers={
                "Location": f"{API_PREFIX}/customers/{customer_id}/contacts/{contact['id']}",
                "ETag": etag(contact["version"])})
        return self._once(request, body, create)

    @api("GET", "/customers/<customer_id>/contacts", allow=rule("contacts", "read"), response=ContactList,
         tags=("contacts",), summary="The contacts of a customer, primary first")
    def list_contacts(self, request, customer_id):
        return self.customers.list_contacts(customer_id)

    @api("GET", "/customers/<customer_id>/contacts/<contact_id>", allow=rule("contacts", "read"),
         response=ContactResponse, headers=("If-None-Match",), tags=("contacts",), summary="One contact")
    def get_contact(self, request, customer_id, contact_id):
        return versioned(request, self.customers.get_contact(customer_id, contact_id))

    @api("PATCH", "/customers/<customer_id>/contacts/<contact_id>", allow=rule("contacts", "update"),
         body=ContactUpdateRequest, response=ContactResponse, headers=("If-Match",), tags=("contacts",),
         summary="Change some fields of a contact")
    def update_contact(self, request, customer_id, contact_id, body):
        contact = self.customers.update_contact(customer_id, contact_id, body, if_match_version(request))
        return Reply(contact, headers={"ETag": etag(contact["version"])})

    @api("DELETE", "/customers/<customer_id>/contacts/<contact_id>", allow=rule("contacts", "delete"), status=204,
         tags=("contacts",), summary="Remove a contact for good")
    def delete_contact(self, request, customer_id, contact_id):
        self.customers.delete_contact(customer_id, contact_id)

    # --- follow-ups ----------------------------------------------------------

    @api("POST", "/customers/<customer_id>/followups", allow=rule("followups", "create"), body=FollowupCreateRequest,
         response=FollowupResponse, status=201, headers=(idempotency.HEADER,), tags=("followups",),
         summary="Log a follow-up (a call, meeting, email, visit or note)",
         description="Closes the customer's earlier open follow-ups and makes next_followup_at the "
                     "customer's next step (a reminder for its owner). " + APPEND_ONLY)
    def log_followup(self, request, customer_id, body):
        def create():
            followup = self.customers.log_followup(customer_id, body)
            return Reply(followup, headers={"Location": f"{API_PREFIX}/followups/{followup['id']}"})
        return self._once(request, body, create)

    @api("GET", "/customers/<customer_id>/followups", allow=rule("followups", "read"), query=PageQuery,
         response=FollowupPage, tags=("followups",),
         summary="A customer's relationship history, newest first", description=APPEND_ONLY)
    def list_followups(self, request, customer_id):
        limit, cursor = page_arguments(request)
        return self.customers.list_followups(customer_id, limit, cursor)

    @api("GET", "/followups", allow=rule("followups", "read"), query=DueFollowupsQuery, response=DueFollowupPage,
         tags=("followups",), summary="A day plan: the open follow-ups due, soonest first",
         description="Open next steps (next_followup_at up to due_before) of the customers owner_id owns now. "
                     "Only customers the caller may see count: a sales user asking for someone else's "
                     "plan gets an empty list.")
    def due_followups(self, request):
        limit, cursor = page_arguments(request)
        return self.customers.due_followups(request.args.get("owner_id") or None,
                                            request.args.get("due_before") or None, limit, cursor)

    @api("GET", "/followups/<followup_id>", allow=rule("followups", "read"), response=FollowupResponse,
         tags=("followups",), summary="One follow-up", description=APPEND_ONLY)
    def get_followup(self, request, followup_id):
        return self.customers.get_followup(followup_id)

    # --- saved views ---------------------------------------------------------
    # Any signed-in user keeps their own views: a view is a preference, not a
    # change to customer records, so read-only roles may save them too.

    @api("POST", "/customer-views", allow=rule("saved views", "create"), body=ViewCreateRequest,
         response=ViewResponse, status=201,
         headers=(idempotency.HEADER,), tags=("customer views",), summary="Save a named customer list filter",
         description="filters and sort are checked as GET /customers would check them; errors name "
                     "the filter, e.g. filters.tier. A second view with the same name answers 409.")
    def create_view(self, request, body):
        def create():
            view = self.customers.create_view(body)
            return Reply(view, headers={"Location": f"{API_PREFIX}/customer-views/{view['id']}"})
        return self._once(request, body, create)

    @api("GET", "/customer-views", allow=rule("saved views", "read"), response=ViewList, tags=("customer views",),
         summary="The caller's saved views")
    def list_views(self, request):
        return self.customers.list_views()

    @api("GET", "/customer-views/<view_id>", allow=rule("saved views", "read"), response=ViewResponse,
         tags=("customer views",), summary="One of the caller's saved views")
    def get_view(self, request, view_id):
        return self.customers.get_view(view_id)

    @api("DELETE", "/customer-views/<view_id>", allow=rule("saved views", "delete"), status=204,
         tags=("customer views",), summary="Delete one of the caller's saved views")
    def delete_view(self, request, view_id):
        self.customers.delete_view(view_id)
