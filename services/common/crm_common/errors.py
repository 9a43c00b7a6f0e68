"""Error types shared by every service, and their problem+json form.

Each type is registered with nameko so that an error raised inside a service
arrives at the gateway as the same type (not a generic RemoteError), and the
gateway can answer with the right HTTP status. Constructor arguments are kept
in ``args`` because that is what nameko serialises.
"""
import json

from nameko.exceptions import deserialize_to_instance

PROBLEM_CONTENT_TYPE = "application/problem+json"
PROBLEM_TYPE_BASE = "https://crm.example.org/problems/"


class CrmError(Exception):
    status = 500
    code = "internal_error"
    title = "Internal server error"

    def __init__(self, detail="", errors=None, extra=None):
        # ``extra``: RFC 9457 extension members, e.g. the candidates of a duplicate.
        # Kept as JSON text: nameko turns every non-string value in exception
        # args into a string on the way back (None would arrive as "None").
        if isinstance(extra, dict):
            extra = json.dumps(extra) if extra else ""
        super().__init__(detail, errors or {}, extra or "")

    @property
    def detail(self):
        return self.args[0]

    @property
    def errors(self):
        """Field-level messages: {"field": ["message", ...]} (nested for nested fields)."""
        return self.args[1]

    @property
    def extra(self):
        return json.loads(self.args[2]) if len(self.args) > 2 and self.args[2] else {}

    def __str__(self):
        return self.detail or self.title


@deserialize_to_instance
class BadRequest(CrmError):
    status, code, title = 400, "bad_request", "Bad request"


@deserialize_to_instance
class Unauthorized(CrmError):
    status, code, title = 401, "unauthorized", "Authentication required"


@deserialize_to_instance
class Forbidden(CrmError):
    status, code, title = 403, "forbidden", "Not allowed"


@deserialize_to_instance
class NotFound(CrmError):
    status, code, title = 404, "not_found", "Not found"


@deserialize_to_instance
class Conflict(CrmError):
    status, code, title = 409, "conflict", "Conflict"


@deserialize_to_instance
class VersionMismatch(CrmError):
    status, code, title = 412, "version_mismatch", "The record was changed by someone else"


@deserialize_to_instance
class ValidationFailed(CrmError):
    status, code, title = 422, "validation_failed", "The input is not valid"


@deserialize_to_instance
class RateLimited(CrmError):
    status, code, title = 429, "rate_limited", "Too many requests"


@deserialize_to_instance
class ServiceUnavailable(CrmError):
    status, code, title = 503, "service_unavailable", "A service is not available"


@deserialize_to_instance
class QueryTimeout(ServiceUnavailable):
    """The database cancelled a query for running past CRM_STATEMENT_TIMEOUT_MS."""
    code, title = "query_timeout", "The query took too long"


@deserialize_to_instance
class GatewayTimeout(CrmError):
    status, code, title = 504, "service_timeout", "A service did not answer in time"


def problem(status, code, title, detail="", request_id=None, errors=None, extra=None):
    """An RFC 9457 problem document."""
    body = {
        **(extra or {}),
        "type": PROBLEM_TYPE_BASE + code,
        "title": title,
        "status": status,
        "code": code,
        "detail": detail or title,
        "request_id": request_id,
    }
    if errors:
        body["errors"] = errors
    return body


def problem_from_error(exc, request_id=None, title=None):
    return problem(exc.status, exc.code, title or exc.title, exc.detail, request_id, exc.errors, exc.extra)
