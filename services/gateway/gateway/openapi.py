"""The OpenAPI 3 document of the API, built from the route registry and the
marshmallow schemas (apispec), and the page that shows it."""
from collections import defaultdict

from apispec import APISpec
from apispec.ext.marshmallow import MarshmallowPlugin

from crm_common.errors import PROBLEM_CONTENT_TYPE

from gateway.http import JSON_CONTENT_TYPE, REQUEST_ID_HEADER
from gateway.schemas import Problem

API_DESCRIPTION = """\
The CRM's HTTP API.

Sign in with `POST /api/v1/auth/login`, then send the access token as
`Authorization: Bearer <token>`. Errors are `application/problem+json`
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
    "default": ("Error", "Any other error, e.g. 503 when a service does not answer"),
}

FORM_CONTENT_TYPE = "multipart/form-data"

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
    return spec.to_dict()


def _operation(route):
    operation = {
        "operationId": route.operation_id,
        "summary": route.summary,
        "tags": list(route.tags),
        "parameters": [],
        "responses": {},
        "security": [] if route.public else [{"bearerAuth": []}],
    }
    description = [route.description] if route.description else []
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
        operation["requestBody"] = {"required": True,
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
    for status in errors:
        operation["responses"][status] = ERROR_RESPONSES[status][0]
    return operation


# Swagger UI from the jsDelivr CDN: the page needs internet access in the
# browser, and the gateway ships no front-end assets.
DOCS_PAGE = """<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <title>CRM API</title>
  <link rel="stylesheet" href="https://cdn.jsdelivr.net/npm/swagger-ui-dist@5/swagger-ui.css">
</head>
<body>
  <div id="swagger-ui"></div>
  <script src="https://cdn.jsdelivr.net/npm/swagger-ui-dist@5/swagger-ui-bundle.js" crossorigin="anonymous"></script>
  <script>
    window.ui = SwaggerUIBundle({url: "/openapi.json", dom_id: "#swagger-ui", persistAuthorization: true});
  </script>
</body>
</html>
"""
