"""crm_common.errors: typed errors across RPC, and their problem+json form."""
import json

import pytest
from nameko.exceptions import RemoteError, deserialize, serialize

from crm_common import errors
from crm_common.errors import (
    PROBLEM_TYPE_BASE, BadRequest, Conflict, CrmError, Forbidden, GatewayTimeout, NotFound, QueryTimeout,
    RateLimited, ServiceUnavailable, Unauthorized, ValidationFailed, VersionMismatch,
    problem_from_error,
)

SUBCLASSES = [BadRequest, Unauthorized, Forbidden, NotFound, Conflict, VersionMismatch,
              ValidationFailed, RateLimited, ServiceUnavailable, QueryTimeout, GatewayTimeout]


def test_every_error_type_is_listed_here():
    defined = {value for value in vars(errors).values()
               if isinstance(value, type) and issubclass(value, CrmError) and value is not CrmError}
    assert defined == set(SUBCLASSES)


def wire_round_trip(exc):
    """What the caller of an RPC gets: serialise, send as JSON, deserialise."""
    return deserialize(json.loads(json.dumps(serialize(exc))))


@pytest.mark.parametrize("error_type", SUBCLASSES, ids=lambda t: t.__name__)
def test_error_round_trips_with_detail_and_field_errors(error_type):
    field_errors = {"email": ["Not a valid email address."],
                    "address": {"city": ["Required."]}}
    received = wire_round_trip(error_type("something is off", field_errors))
    assert type(received) is error_type
    assert received.detail == "something is off"
    assert received.errors == field_errors
    assert received.status == error_type.status
    assert str(received) == "something is off"


@pytest.mark.parametrize("error_type", SUBCLASSES, ids=lambda t: t.__name__)
def test_error_without_arguments_round_trips(error_type):
    received = wire_round_trip(error_type())
    assert type(received) is error_type
    assert received.detail == ""
    assert received.errors == {}
    assert str(received) == error_type.title


def test_extension_members_keep_their_types_across_rpc_and_reach_the_problem():
    candidates = [{"id": None, "count": 2, "reasons": ["same phone"]}]
    received = wire_round_trip(Conflict("looks like a duplicate", extra={"candidates": candidates}))
    assert received.extra == {"candidates": candidates}
    body = problem_from_error(received, request_id="r-1")
    assert body["candidates"] == candidates and body["status"] == 409


def test_unregistered_exception_arrives_as_remote_error():
    received = wire_round_trip(KeyError("x"))
    assert isinstance(received, RemoteError)
    assert received.exc_type == "KeyError"


def test_statuses_and_codes_are_distinct():
    # A refinement (QueryTimeout of ServiceUnavailable) shares its parent's status, with a code of its own.
    families = [t for t in SUBCLASSES if t.__bases__ == (CrmError,)]
    assert len({t.status for t in families}) == len(families) and QueryTimeout.status == 503
    assert len({t.code for t in SUBCLASSES}) == len(SUBCLASSES)
    assert all(400 <= t.status < 600 for t in SUBCLASSES)


def test_problem_from_validation_error_has_rfc9457_fields():
    exc = ValidationFailed("The input is not valid", {"name": ["Required."]})
    body = problem_from_error(exc, request_id="req-1")
    assert body == {
        "type": PROBLEM_TYPE_BASE + "validation_failed",
        "title": "The input is not valid",
        "status": 422,
        "code": "validation_failed",
        "detail": "The input is not valid",
        "request_id": "req-1",
        "errors": {"name": ["Required."]},
    }
    json.dumps(body)  # a JSON document as is


def test_problem_detail_defaults_to_title_and_omits_empty_errors():
    body = problem_from_error(NotFound())
    assert body["status"] == 404
    assert body["title"] == "Not found"
    assert body["detail"] == "Not found"
    assert body["type"].endswith("/not_found")
    assert body["request_id"] is None
    assert "errors" not in body


def test_problem_title_can_be_translated():
    body = problem_from_error(Conflict("duplicate email"), request_id="r", title="冲突")
    assert body["title"] == "冲突"
    assert body["detail"] == "duplicate email"
    assert body["status"] == 409
