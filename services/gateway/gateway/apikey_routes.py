"""The gateway's routes for API keys: admins only, and never callable with a key.

A mixin of GatewayService: the routes use its dependencies (``self.db``,
``self.context``); the work is gateway.api_keys'. Creating a key takes no
Idempotency-Key: a replay would have to store the answer, and with it the
secret, in plain text.
"""
from functools import lru_cache

from crm_common.validation import load

from gateway import api_keys
from gateway.apikey_schemas import ApiKeyCreatedResponse, ApiKeyCreateRequest, ApiKeyPage
from gateway.permissions import rule
from gateway.http import API_PREFIX, Reply, api, page_arguments, route_registry
from gateway.schemas import PageQuery

TAGS = ("api keys",)


@lru_cache(maxsize=None)
def _scopes(service_cls):
    return api_keys.known_scopes(route_registry(service_cls))


class ApiKeyRoutes:

    @api("POST", "/api-keys", allow=rule("api keys", "create"), body=ApiKeyCreateRequest,
         response=ApiKeyCreatedResponse, status=201, tags=TAGS, summary="Create an API key for an integration",
         description="The answer holds the key; it is never shown again, only its hash is kept. The key acts "
                     "as you (what it creates is yours), limited to its scopes; a route outside them answers "
                     "403, a revoked or expired key 401.")
    def create_api_key(self, request, body):
        data = load(ApiKeyCreateRequest, body)
        key, secret = api_keys.ApiKeys(self.db, context=self.context).create(self.context.user_id, data, _scopes(type(self)))
        return Reply({**api_keys.to_dict(key), "key": secret}, headers={"Location": f"{API_PREFIX}/api-keys/{key.id}"})

    @api("GET", "/api-keys", allow=rule("api keys", "read"), query=PageQuery, response=ApiKeyPage, tags=TAGS,
         summary="The API keys, oldest first (revoked ones too), without their secrets")
    def list_api_keys(self, request):
        limit, cursor = page_arguments(request)
        page = api_keys.ApiKeys(self.db).list(limit, cursor)
        return {"items": [api_keys.to_dict(key) for key in page["items"]], "next_cursor": page["next_cursor"]}

    @api("DELETE", "/api-keys/<key_id>", allow=rule("api keys", "delete"), status=204, tags=TAGS,
         summary="Revoke an API key: from now on it answers 401")
    def revoke_api_key(self, request, key_id):
        api_keys.ApiKeys(self.db, context=self.context).revoke(key_id)
        return Reply(status=204)
