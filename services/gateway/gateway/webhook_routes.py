"""The gateway's routes for outbound webhooks (the notifications service): admins only.

A mixin of GatewayService: the routes here use its dependencies
(``self.notifications``, ``self._once``). The notifications service
validates, checks URLs against SSRF and sends the deliveries; it refuses
anyone but an admin too, so the rule does not rest on the gateway alone.
"""
from gateway import idempotency
from gateway.activity_routes import versioned
from gateway.permissions import rule
from gateway.http import API_PREFIX, Reply, api, etag, if_match_version, page_arguments
from gateway.schemas import PageQuery
from gateway.webhook_schemas import (
    WebhookCreatedResponse, WebhookCreateRequest, WebhookDeliveryPage, WebhookDeliveryResponse, WebhookPage,
    WebhookResponse, WebhookUpdateRequest,
)

TAGS = ("webhooks",)
SIGNING = (
    "Each event is POSTed as its JSON envelope with the headers Content-Type: application/json, "
    "X-CRM-Event (its type), X-CRM-Delivery (the delivery id: the same on every retry), X-CRM-Timestamp "
    "(unix seconds) and X-CRM-Signature: sha256=<hex HMAC-SHA256(secret, X-CRM-Timestamp + \".\" + body)>. "
    "Verify the signature over the raw body and refuse old timestamps. A 2xx answer within 10 s is "
    "success; anything else is retried with exponential backoff for 24 hours. Redirects are not followed. "
    "A URL whose host resolves to a loopback, private, link-local or other non-public address is refused "
    "with a 422 naming url (and is not called if its DNS changes later), unless allow_private_network.")


class WebhookRoutes:

    @api("POST", "/webhooks", allow=rule("webhooks", "create"), body=WebhookCreateRequest,
         response=WebhookCreatedResponse, status=201,
         headers=(idempotency.HEADER,), tags=TAGS, summary="Subscribe a URL to events",
         description="The answer holds the secret; it is never shown again (GET shows its last characters). "
                     + SIGNING)
    def create_webhook(self, request, body):
        def create():
            webhook = self.notifications.create_webhook(body)
            return Reply(webhook, headers={"Location": f"{API_PREFIX}/webhooks/{webhook['id']}",
                                           "ETag": etag(webhook["version"])})
        return self._once(request, body, create)

    @api("GET", "/webhooks", allow=rule("webhooks", "read"), query=PageQuery, response=WebhookPage, tags=TAGS,
         summary="The webhooks, newest first")
    def list_webhooks(self, request):
        limit, cursor = page_arguments(request)
        return self.notifications.list_webhooks(limit, cursor)

    @api("GET", "/webhooks/<webhook_id>", allow=rule("webhooks", "read"), response=WebhookResponse,
         headers=("If-None-Match",), tags=TAGS, summary="One webhook")
    def get_webhook(self, request, webhook_id):
        return versioned(request, self.notifications.get_webhook(webhook_id))

    @api("PATCH", "/webhooks/<webhook_id>", allow=rule("webhooks", "update"), body=WebhookUpdateRequest,
         response=WebhookResponse, headers=("If-Match",), tags=TAGS, summary="Change a webhook",
         description="A new url (or turning allow_private_network off) is checked against SSRF again.")
    def update_webhook(self, request, webhook_id, body):
        webhook = self.notifications.update_webhook(webhook_id, body, if_match_version(request))
        return Reply(webhook, headers={"ETag": etag(webhook["version"])})

    @api("DELETE", "/webhooks/<webhook_id>", allow=rule("webhooks", "delete"), status=204, tags=TAGS,
         summary="Delete a webhook and its deliveries")
    def delete_webhook(self, request, webhook_id):
        self.notifications.delete_webhook(webhook_id)

    @api("GET", "/webhooks/<webhook_id>/deliveries", allow=rule("webhooks", "read"), query=PageQuery,
         response=WebhookDeliveryPage,
         tags=TAGS, summary="The webhook's deliveries, newest first, each with its attempts")
    def list_webhook_deliveries(self, request, webhook_id):
        limit, cursor = page_arguments(request)
        return self.notifications.list_webhook_deliveries(webhook_id, limit, cursor)

    @api("POST", "/webhooks/<webhook_id>/deliveries/<delivery_id>/redeliver", allow=rule("webhooks", "redeliver"),
         response=WebhookDeliveryResponse, tags=TAGS, summary="Send a delivery again now",
         description="Whatever became of it. 409 while it is being sent. Retries after a failure go on only "
                     "within 24 hours of the event.")
    def redeliver_webhook_delivery(self, request, webhook_id, delivery_id):
        return self.notifications.redeliver_webhook_delivery(webhook_id, delivery_id)
