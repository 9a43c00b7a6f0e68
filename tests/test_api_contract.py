"""The gateway documents each service's API; these tests keep the documentation
true to what the services accept and return (they can drift: the gateway may
not import a service's package)."""
import pytest

from customers import activity_schemas as activity
from customers import import_schemas
from customers import schemas as customers_schemas
from gateway import activity_schemas as documented_activity
from gateway import import_schemas as documented_imports
from gateway import schemas as documented


@pytest.mark.parametrize("documented_schema, service_schema", [
    (documented.CustomerCreateRequest, customers_schemas.CustomerCreate),
    (documented.CustomerUpdateRequest, customers_schemas.CustomerUpdate),
])
def test_documented_request_fields_are_the_accepted_ones(documented_schema, service_schema):
    accepted = set(service_schema().fields)
    if service_schema is customers_schemas.CustomerUpdate:
        accepted.discard("owner_id")  # refused by PATCH with a pointer to assignment
    assert set(documented_schema().fields) == accepted


def test_documented_required_fields_are_the_required_ones():
    def required(schema):
        return {name for name, field in schema().fields.items() if field.required}
    assert required(documented.CustomerCreateRequest) == required(customers_schemas.CustomerCreate)


def test_documented_customer_has_every_field_the_service_returns():
    returned = set(customers_schemas.CustomerOut().fields)
    assert set(documented.CustomerResponse().fields) == returned


def test_documented_filters_are_the_accepted_ones():
    assert set(documented.CUSTOMER_FILTERS) == set(customers_schemas.CustomerFilters().fields)


# --- contacts, follow-ups and saved views -----------------------------------

ACTIVITY_REQUESTS = [
    (documented_activity.ContactCreateRequest, activity.ContactCreate),
    (documented_activity.ContactUpdateRequest, activity.ContactUpdate),
    (documented_activity.FollowupCreateRequest, activity.FollowupCreate),
    (documented_activity.ViewCreateRequest, activity.ViewCreate),
]
ACTIVITY_RESPONSES = [
    (documented_activity.ContactResponse, activity.ContactOut),
    (documented_activity.FollowupResponse, activity.FollowupOut),
    (documented_activity.DueFollowupResponse, activity.DueFollowupOut),
    (documented_activity.ViewResponse, activity.ViewOut),
]


def _required(schema):
    return {name for name, field in schema().fields.items() if field.required}


@pytest.mark.parametrize("documented_schema, service_schema", ACTIVITY_REQUESTS)
def test_documented_activity_requests_are_the_accepted_ones(documented_schema, service_schema):
    assert set(documented_schema().fields) == set(service_schema().fields)
    assert _required(documented_schema) == _required(service_schema)


@pytest.mark.parametrize("documented_schema, service_schema", ACTIVITY_RESPONSES)
def test_documented_activity_responses_have_every_field_returned(documented_schema, service_schema):
    assert set(documented_schema().fields) == set(service_schema().fields)


def test_documented_day_plan_parameters_are_the_accepted_ones():
    accepted = set(activity.DueFollowupsQuery().fields) | {"limit", "cursor"}
    assert set(documented_activity.DueFollowupsQuery().fields) == accepted


def test_documented_followup_types_are_the_accepted_ones():
    assert documented_activity.FOLLOWUP_TYPES == activity.FOLLOWUP_TYPES


# --- imports and exports -------------------------------------------------------

@pytest.mark.parametrize("documented_schema, service_schema", [
    (documented_imports.ImportUploadForm, import_schemas.ImportOptions),
    (documented_imports.ImportJobResponse, import_schemas.ImportJobOut),
    (documented_imports.ImportReportResponse, import_schemas.ImportReportOut),
])
def test_documented_import_schemas_are_the_services(documented_schema, service_schema):
    documented_fields = set(documented_schema().fields)
    if documented_schema is documented_imports.ImportUploadForm:
        documented_fields.discard("file")  # the upload itself; the service gets it beside the options
    assert documented_fields == set(service_schema().fields)


def test_documented_import_choices_are_the_accepted_ones():
    assert documented_imports.DUPLICATE_POLICIES == import_schemas.DUPLICATE_POLICIES
    assert documented_imports.EXPORT_FORMATS == import_schemas.EXPORT_FORMATS
    for field in import_schemas.IMPORTABLE_FIELDS:
        assert field in documented_imports.ImportUploadForm().fields["mapping"].metadata["description"]


def test_documented_export_parameters_are_the_filters_and_options_accepted():
    accepted = set(customers_schemas.CustomerFilters().fields) | set(import_schemas.ExportOptions().fields)
    assert set(documented_imports.ExportQuery().fields) == accepted
