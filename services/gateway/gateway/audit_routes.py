"""GET /audit: the audit trail, for admins only (and never with an API key).

A mixin of GatewayService: the route uses its dependencies (``self.db``); the
work is gateway.audit_trail's. There is deliberately no route that changes or
deletes an entry, and the database refuses both anyway.
"""
from gateway import audit_trail
from gateway.audit_schemas import AuditPage, AuditQuery
from gateway.http import api, page_arguments
from gateway.permissions import rule

TAGS = ("audit",)


class AuditRoutes:

    @api("GET", "/audit", allow=rule("audit", "read"), query=AuditQuery, response=AuditPage, tags=TAGS,
         summary="The audit trail, newest first",
         description="Every create, update, delete, merge, restore and export of a record, sign-ins (failed "
                     "ones too), sign-outs, user and role changes, API keys, key rotations and refused "
                     "requests: who (actor_id, actor_role, api_key_id), when, from where (client_ip), in "
                     "which request (request_id), and the changed fields with personal data masked. Filters "
                     "combine; from is inclusive, to exclusive. Entries cannot be changed or deleted.")
    def list_audit_entries(self, request):
        limit, cursor = page_arguments(request)
        args = request.args
        filters = {name: args.get(name) or None for name in audit_trail.FILTERS}
        filters["from"] = audit_trail.parse_time_filter("from", args.get("from"))
        filters["to"] = audit_trail.parse_time_filter("to", args.get("to"))
        page = audit_trail.list_entries(self.db, filters, limit, cursor)
        return {"items": [audit_trail.to_dict(entry) for entry in page["items"]],
                "next_cursor": page["next_cursor"]}
