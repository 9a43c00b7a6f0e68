"""The OpenAPI 3 document of the API, built from the route registry and the
marshmallow schemas (apispec), and the page that shows it."""
import base64
import hashlib
from collections import defaultdict

from apispec import APISpec
from apispec.ext.marshmallow import MarshmallowPlugin

from crm_common.errors import PROBLEM_CONTENT_TYPE

from gateway import api_keys
from gateway.http import JSON_CONTENT_TYPE, REQUEST_ID_HEADER
from gateway.schemas import Problem

API_DESCRIPTION = """\
The CRM's HTTP API.

Sign in with `POST /api/v1/auth/login`, then send the access token as
`Authorization: Bearer <token>`. Integrations send an API key instead
(`X-API-Key: crm_<id>_<secret>`, created by an admin with `POST /api/v1/api-keys`):
it acts as the admin who created it, only on operations its scopes list
(`x-scope` on each operation). Each caller (user or key) may make
`RateLimit-Limit` requests a minute; every authenticated answer reports
`RateLimit-Limit`, `RateLimit-Remaining` and `RateLimit-Reset` (seconds), and
a 429 adds `Retry-After`. Errors are `application/problem+json`
(RFC 9457); titles and validation messages follow `Accept-Language`
(`en` or `zh-CN`), codes and field names do not. Lists take `limit` and an
opaque `cursor` and answer `{"items": [...], "next_cursor": ...}`. Every
response carries an `X-Request-ID` (yours, when you send a sane one).
"""

# Error responses, described once and referenced by the operations they apply to.
ERROR_RESPONSES = {
    "400": ("BadRequest", "The body is not valid JSON, or a header is malformed"),
    "413": ("PayloadTooLarge", "The body or upload is larger than the route accepts"),
    "401": ("Unauthorized", "No access token, or an invalid or expired one"),
    "403": ("Forbidden", "The caller's role may not use this operation"),
    "404": ("NotFound", "No such record, or one the caller may not see"),
    "409": ("Conflict", "The change conflicts with the current state: a duplicate (with `candidates`), "
                        "a taken key, or a record in the wrong state"),
    "412": ("VersionMismatch", "If-Match names an older version than the current one"),
    "422": ("ValidationFailed", "The input is not valid; `errors` names each field"),
    "429": ("RateLimited", "Too many requests from this user or API key; wait `Retry-After` seconds"),
    "default": ("Error", "Any other error, e.g. 503 when a service does not answer"),
}

FORM_CONTENT_TYPE = "multipart/form-data"

RATE_LIMIT_HEADERS = {
    "RateLimit-Limit": {"schema": {"type": "integer"}, "description": "Requests a minute this caller may make"},
    "RateLimit-Remaining": {"schema": {"type": "integer"}, "description": "Requests left now"},
    "RateLimit-Reset": {"schema": {"type": "integer"}, "description": "Seconds until the full allowance is back"},
}

HEADER_DESCRIPTIONS = {
    "If-Match": 'ETag of the version being changed, e.g. W/"3"; a stale one answers 412',
    "If-None-Match": "ETag held by the client; the same version answers 304 without a body",
}


def build_openapi(routes, title="CRM API", version="1.0.0"):
    spec = APISpec(
        title=title,
        version=version,
        openapi_version="3.0.3",
        info={"description": API_DESCRIPTION},
        plugins=[MarshmallowPlugin()],
    )
    spec.components.security_scheme("bearerAuth", {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"})
    spec.components.security_scheme("apiKey", {"type": "apiKey", "in": "header", "name": api_keys.HEADER,
                                               "description": "An integration's key: crm_<id>_<secret>"})
    spec.components.schema("Problem", schema=Problem)
    for name, description in ERROR_RESPONSES.values():
        spec.components.response(name, {
            "description": description,
            "content": {PROBLEM_CONTENT_TYPE: {"schema": "Problem"}},
        })
    operations_by_path = defaultdict(dict)
    for route in routes:
        if not route.documented:
            continue
        for method in route.method.split(","):
            operations_by_path[route.template][method.lower()] = _operation(route)
    for path, operations in operations_by_path.items():
        spec.path(path=path, operations=operations)
    document = spec.to_dict()
    # The scopes a key may hold are the routes' own: listed where a key is created.
    create_key = document["components"]["schemas"].get("ApiKeyCreateRequest")
    if create_key is not None:
        create_key["properties"]["scopes"]["items"]["enum"] = api_keys.known_scopes(routes)
    return document


def _operation(route):
    operation = {
        "operationId": route.operation_id,
        "summary": route.summary,
        "tags": list(route.tags),
        "parameters": [],
        "responses": {},
        "security": [] if route.public else [{"bearerAuth": []}],
    }
    scope = None if route.public else api_keys.scope_of(route.method, route.tags)
    if scope is not None:
        operation["security"].append({"apiKey": []})
        operation["x-scope"] = scope
    description = [route.description] if route.description else []
    if route.permission is not None:
        # The entry of the permission matrix (gateway.permissions) that decides who may call it.
        operation["x-permission"] = {"resource": route.permission.resource, "action": route.permission.action}
    if route.roles is not None:
        description.append("Roles: " + ", ".join(route.roles) + ".")
        operation["x-roles"] = list(route.roles)
    if description:
        operation["description"] = "\n\n".join(description)
    for name in route.path_parameters:
        operation["parameters"].append({"in": "path", "name": name, "required": True, "schema": {"type": "string"}})
    if route.query is not None:
        operation["parameters"].append({"in": "query", "schema": route.query})
    for header in route.headers:
        operation["parameters"].append({"in": "header", "name": header, "required": False,
                                        "schema": {"type": "string"},
                                        "description": HEADER_DESCRIPTIONS.get(header, "")})
    operation["parameters"].append({"in": "header", "name": REQUEST_ID_HEADER, "required": False,
                                    "schema": {"type": "string", "maxLength": 128},
                                    "description": "Correlates logs across services; made up when absent"})
    if route.body is not None:
        # A body schema may say the body can be left out altogether (e.g. the logout's).
        operation["requestBody"] = {"required": not getattr(route.body, "BODY_OPTIONAL", False),
                                    "content": {JSON_CONTENT_TYPE: {"schema": route.body}}}
    if route.form is not None:
        operation["requestBody"] = {"required": True,
                                    "description": f"At most {route.max_body // (1024 * 1024)} MB.",
                                    "content": {FORM_CONTENT_TYPE: {"schema": route.form}}}

    success = {"description": route.summary or "Success"}
    if route.response is not None and route.status != 204:
        success["content"] = {JSON_CONTENT_TYPE: {"schema": route.response}}
    if route.downloads:
        # A route may answer JSON or, on request, a file (the reports): both are listed.
        success["content"] = {**success.get("content", {}),
                              **{media_type: {"schema": {"type": "string", "format": "binary"}}
                                 for media_type in route.downloads}}
        success["headers"] = {"Content-Disposition": {
            "schema": {"type": "string"}, "description": "attachment; filename=..."}}
    if "If-None-Match" in route.headers:
        success["headers"] = {"ETag": {"schema": {"type": "string"}, "description": 'Weak ETag of the version, W/"<version>"'}}
    if not route.public:
        success["headers"] = {**success.get("headers", {}), **RATE_LIMIT_HEADERS}
    operation["responses"][str(route.status)] = success
    for status, description in route.also_answers:
        operation["responses"][str(status)] = {**success, "description": description}

    errors = ["default"]
    if route.body is not None or route.form is not None or route.headers:
        errors.append("400")
    if route.form is not None:
        errors.append("413")
    if not route.public:
        errors.append("401")
    if route.roles is not None:
        errors.append("403")
    if route.path_parameters:
        errors.append("404")
    if route.method != "GET" and not route.public:
        errors.append("409")
    if "If-Match" in route.headers:
        errors.append("412")
    if route.body is not None or route.form is not None or route.query is not None:
        errors.append("422")
    if not route.public:
        errors.append("429")
    for status in errors:
        operation["responses"][status] = ERROR_RESPONSES[status][0]
    return operation


# Swagger UI from the jsDelivr CDN: the page needs internet access in the
# browser, and the gateway ships no front-end assets.
SWAGGER_UI = "https://cdn.jsdelivr.net/npm/swagger-ui-dist@5/"
DOCS_SCRIPT = 'window.ui = SwaggerUIBundle({url: "/openapi.json", dom_id: "#swagger-ui", persistAuthorization: true});'
DOCS_PAGE = f"""<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <title>CRM API</title>
  <link rel="stylesheet" href="{SWAGGER_UI}swagger-ui.css">
</head>
<body>
  <div id="swagger-ui"></div>
  <script src="{SWAGGER_UI}swagger-ui-bundle.js" crossorigin="anonymous"></script>
  <script>{DOCS_SCRIPT}</script>
</body>
</html>
"""
# The page may run Swagger UI's bundle from its CDN folder and the one inline
# script above (by its hash), fetch only from this origin (the document and
# "try it out"), and cannot be framed. Styles may be inline: Swagger UI sets
# style attributes, and a style cannot run code.
DOCS_CSP = "; ".join([
    "default-src 'none'",
    f"script-src {SWAGGER_UI} 'sha256-{base64.b64encode(hashlib.sha256(DOCS_SCRIPT.encode()).digest()).decode()}'",
    f"style-src {SWAGGER_UI} 'unsafe-inline'",
    "img-src 'self' data:",
    "connect-src 'self'",
    "base-uri 'none'",
    "form-action 'none'",
    "frame-ancestors 'none'",
])
