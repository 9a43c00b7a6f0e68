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


# --- pipelines and opportunities ---------------------------------------------------

from gateway import pipeline_schemas as documented_pipeline  # noqa: E402
from sales import pipeline_schemas as sales_pipeline  # noqa: E402

PIPELINE_REQUESTS = [
    (documented_pipeline.PipelineCreateRequest, sales_pipeline.PipelineCreate),
    (documented_pipeline.StageRequest, sales_pipeline.StageIn),
    (documented_pipeline.StageAddRequest, sales_pipeline.StageAdd),
    (documented_pipeline.OpportunityCreateRequest, sales_pipeline.OpportunityCreate),
    (documented_pipeline.OpportunityUpdateRequest, sales_pipeline.OpportunityUpdate),
    (documented_pipeline.StageMoveRequest, sales_pipeline.StageMove),
]
PIPELINE_RESPONSES = [
    (documented_pipeline.PipelineResponse, sales_pipeline.PipelineOut),
    (documented_pipeline.StageResponse, sales_pipeline.StageOut),
    (documented_pipeline.OpportunityResponse, sales_pipeline.OpportunityOut),
    (documented_pipeline.StageChangeResponse, sales_pipeline.StageChangeOut),
]


@pytest.mark.parametrize("documented_schema, service_schema", PIPELINE_REQUESTS)
def test_documented_pipeline_requests_are_the_accepted_ones(documented_schema, service_schema):
    assert set(documented_schema().fields) == set(service_schema().fields)
    assert _required(documented_schema) == _required(service_schema)


@pytest.mark.parametrize("documented_schema, service_schema", PIPELINE_RESPONSES)
def test_documented_pipeline_responses_have_every_field_returned(documented_schema, service_schema):
    assert set(documented_schema().fields) == set(service_schema().fields)


def test_documented_opportunity_filters_and_choices_are_the_accepted_ones():
    assert set(documented_pipeline.OPPORTUNITY_FILTERS) == set(sales_pipeline.OpportunityFilters().fields)
    assert set(documented_pipeline.OpportunityListQuery().fields) == \
        set(sales_pipeline.OpportunityFilters().fields) | {"limit", "cursor", "sort"}
    assert set(documented_pipeline.BoardQuery().fields) == set(sales_pipeline.BoardQuery().fields)
    assert documented_pipeline.STAGE_OUTCOMES == sales_pipeline.OUTCOMES
    assert documented_pipeline.OPPORTUNITY_STATUS_FILTERS == sales_pipeline.STATUS_FILTERS
    assert documented_pipeline.OPPORTUNITY_SORTABLE == sales_pipeline.OPPORTUNITY_SORTABLE


# --- products, price lists, quotes, orders and payments -----------------------

from gateway import product_schemas as documented_products  # noqa: E402
from sales import catalogue_schemas as sales_catalogue  # noqa: E402
from sales import order_schemas as sales_orders  # noqa: E402

PRODUCT_REQUESTS = [
    (documented_products.ProductCreateRequest, sales_catalogue.ProductCreate),
    (documented_products.ProductUpdateRequest, sales_catalogue.ProductUpdate),
    (documented_products.PriceListCreateRequest, sales_catalogue.PriceListCreate),
    (documented_products.PriceListUpdateRequest, sales_catalogue.PriceListUpdate),
    (documented_products.PriceListItemDoc, sales_catalogue.PriceListItemIn),
    (documented_products.LineRequest, sales_orders.LineIn),
    (documented_products.QuoteCreateRequest, sales_orders.QuoteCreate),
    (documented_products.QuoteUpdateRequest, sales_orders.QuoteUpdate),
    (documented_products.ReasonRequest, sales_orders.ReasonIn),
    (documented_products.OrderCreateRequest, sales_orders.OrderCreate),
    (documented_products.PaymentRequest, sales_orders.PaymentCreate),
]
PRODUCT_RESPONSES = [
    (documented_products.ProductResponse, sales_catalogue.ProductOut),
    (documented_products.PriceListResponse, sales_catalogue.PriceListOut),
    (documented_products.PriceListItemResponse, sales_catalogue.PriceListItemOut),
    (documented_products.LineResponse, sales_orders.LineOut),
    (documented_products.QuoteResponse, sales_orders.QuoteOut),
    (documented_products.OrderResponse, sales_orders.OrderOut),
    (documented_products.PaymentResponse, sales_orders.PaymentOut),
]


@pytest.mark.parametrize("documented_schema, service_schema", PRODUCT_REQUESTS)
def test_documented_sales_record_requests_are_the_accepted_ones(documented_schema, service_schema):
    assert set(documented_schema().fields) == set(service_schema().fields)
    assert _required(documented_schema) == _required(service_schema)


@pytest.mark.parametrize("documented_schema, service_schema", PRODUCT_RESPONSES)
def test_documented_sales_record_responses_have_every_field_returned(documented_schema, service_schema):
    assert set(documented_schema().fields) == set(service_schema().fields)


def test_documented_sales_record_filters_and_choices_are_the_accepted_ones():
    assert set(documented_products.PRODUCT_FILTERS) == set(sales_catalogue.ProductFilters().fields)
    assert set(documented_products.QUOTE_FILTERS) == set(sales_orders.QuoteFilters().fields)
    assert set(documented_products.ORDER_FILTERS) == set(sales_orders.OrderFilters().fields)
    assert set(documented_products.CustomerOrdersQuery().fields) == \
        set(sales_orders.OrderFilters().fields) - {"customer_id"} | {"limit", "cursor"}
    assert documented_products.QUOTE_STATUSES == sales_orders.QUOTE_STATUSES
    assert documented_products.ORDER_STATUSES == sales_orders.ORDER_STATUSES
    assert documented_products.PAYMENT_STATUSES == sales_orders.PAYMENT_STATUSES
    assert documented_products.PAYMENT_METHODS == sales_orders.PAYMENT_METHODS
    assert documented_products.MAX_LINES == sales_orders.MAX_LINES


# --- contracts and their attachments ------------------------------------------------

from gateway import contract_schemas as documented_contracts  # noqa: E402
from sales import contract_schemas as sales_contracts  # noqa: E402

CONTRACT_REQUESTS = [
    (documented_contracts.ContractCreateRequest, sales_contracts.ContractCreate),
    (documented_contracts.ContractUpdateRequest, sales_contracts.ContractUpdate),
    (documented_contracts.ContractReasonRequest, sales_contracts.ReasonRequest),
    (documented_contracts.ContractSignRequest, sales_contracts.SignRequest),
]
CONTRACT_RESPONSES = [
    (documented_contracts.ContractResponse, sales_contracts.ContractOut),
    (documented_contracts.ContractStatusChangeResponse, sales_contracts.StatusChangeOut),
    (documented_contracts.AttachmentResponse, sales_contracts.AttachmentOut),
    (documented_contracts.ExpiryCheckResponse, sales_contracts.ExpiryCheckOut),
]


@pytest.mark.parametrize("documented_schema, service_schema", CONTRACT_REQUESTS)
def test_documented_contract_requests_are_the_accepted_ones(documented_schema, service_schema):
    assert set(documented_schema().fields) == set(service_schema().fields)
    assert _required(documented_schema) == _required(service_schema)


@pytest.mark.parametrize("documented_schema, service_schema", CONTRACT_RESPONSES)
def test_documented_contract_responses_have_every_field_returned(documented_schema, service_schema):
    assert set(documented_schema().fields) == set(service_schema().fields)


def test_documented_contract_filters_choices_and_limits_are_the_accepted_ones():
    assert set(documented_contracts.CONTRACT_FILTERS) == set(sales_contracts.ContractFilters().fields)
    assert set(documented_contracts.ContractListQuery().fields) == \
        set(sales_contracts.ContractFilters().fields) | {"limit", "cursor"}
    assert documented_contracts.CONTRACT_STATUSES == sales_contracts.STATUSES
    assert documented_contracts.MAX_ATTACHMENT_BYTES == sales_contracts.MAX_ATTACHMENT_BYTES


# --- tasks, inbox actions and notification preferences ------------------------------

from gateway import task_schemas as documented_tasks  # noqa: E402
from notifications import task_schemas as notification_tasks  # noqa: E402

TASK_REQUESTS = [
    (documented_tasks.TaskCreateRequest, notification_tasks.TaskCreate),
    (documented_tasks.TaskUpdateRequest, notification_tasks.TaskUpdate),
    (documented_tasks.PreferencesRequest, notification_tasks.PreferencesUpdate),
    (documented_tasks.QuietHoursSchema, notification_tasks.QuietHours),
]
TASK_RESPONSES = [
    (documented_tasks.TaskResponse, notification_tasks.TaskOut),
    (documented_tasks.PreferencesResponse, notification_tasks.PreferencesOut),
]


@pytest.mark.parametrize("documented_schema, service_schema", TASK_REQUESTS)
def test_documented_task_requests_are_the_accepted_ones(documented_schema, service_schema):
    assert set(documented_schema().fields) == set(service_schema().fields)
    assert _required(documented_schema) == _required(service_schema)


@pytest.mark.parametrize("documented_schema, service_schema", TASK_RESPONSES)
def test_documented_task_responses_have_every_field_returned(documented_schema, service_schema):
    assert set(documented_schema().fields) == set(service_schema().fields)


def test_documented_task_filters_and_choices_are_the_accepted_ones():
    assert set(documented_tasks.TASK_FILTERS) == set(notification_tasks.TaskFilters().fields)
    assert set(documented_tasks.TaskListQuery().fields) == set(notification_tasks.TaskFilters().fields) | {
        "limit", "cursor"}
    assert documented_tasks.TASK_PRIORITIES == notification_tasks.PRIORITIES
    assert documented_tasks.TASK_STATUSES == notification_tasks.STATUSES
    assert documented_tasks.TASK_SOURCES == notification_tasks.SOURCES
    assert documented_tasks.CHANNELS == notification_tasks.CHANNELS


# --- webhooks ------------------------------------------------------------------

from gateway import webhook_schemas as documented_webhooks  # noqa: E402
from notifications import webhook_schemas as webhook  # noqa: E402

WEBHOOK_REQUESTS = [
    (documented_webhooks.WebhookCreateRequest, webhook.WebhookCreate),
    (documented_webhooks.WebhookUpdateRequest, webhook.WebhookUpdate),
]
WEBHOOK_RESPONSES = [
    (documented_webhooks.WebhookResponse, webhook.WebhookOut),
    (documented_webhooks.WebhookCreatedResponse, webhook.WebhookCreatedOut),
    (documented_webhooks.WebhookDeliveryResponse, webhook.WebhookDeliveryOut),
    (documented_webhooks.WebhookAttemptResponse, webhook.WebhookAttemptOut),
]


@pytest.mark.parametrize("documented_schema, service_schema", WEBHOOK_REQUESTS)
def test_documented_webhook_requests_are_the_accepted_ones(documented_schema, service_schema):
    assert set(documented_schema().fields) == set(service_schema().fields)
    assert _required(documented_schema) == _required(service_schema)


@pytest.mark.parametrize("documented_schema, service_schema", WEBHOOK_RESPONSES)
def test_documented_webhook_responses_have_every_field_returned(documented_schema, service_schema):
    assert set(documented_schema().fields) == set(service_schema().fields)


def test_documented_webhook_delivery_statuses_are_the_services():
    assert documented_webhooks.DELIVERY_STATUSES == webhook.DELIVERY_STATUSES


# --- users as notifications knows them ------------------------------------------


def test_notifications_reads_only_fields_the_gateways_user_events_carry():
    from gateway import users
    from notifications.recipients import UserEvent

    assert set(UserEvent().fields) <= set(users.EVENT_FIELDS)
    assert set(UserEvent().fields) == set(users.EVENT_FIELDS) - {"role"}  # and uses all but the role


def test_users_choose_among_the_languages_emails_are_written_in():
    from gateway.i18n import LANGUAGES
    from notifications.templates import TEMPLATES

    assert set(LANGUAGES) == set(TEMPLATES)


# --- reports ---------------------------------------------------------------------

from gateway import report_schemas as documented_reports  # noqa: E402
from reporting import schemas as report_filters  # noqa: E402

REPORT_QUERIES = [
    (documented_reports.CustomersSummaryQuery, report_filters.CustomersSummaryFilters),
    (documented_reports.SalesByPeriodQuery, report_filters.SalesByPeriodFilters),
    (documented_reports.SalesByOwnerQuery, report_filters.SalesByOwnerFilters),
    (documented_reports.SalesByProductQuery, report_filters.SalesByProductFilters),
    (documented_reports.TopCustomersQuery, report_filters.TopCustomersFilters),
    (documented_reports.FunnelQuery, report_filters.FunnelFilters),
    (documented_reports.ForecastQuery, report_filters.ForecastFilters),
    (documented_reports.ActivitiesQuery, report_filters.ActivitiesFilters),
    (documented_reports.ContractsQuery, report_filters.ContractsFilters),
]


def _parameters(schema):
    return {field.data_key or name for name, field in schema().fields.items()}


@pytest.mark.parametrize("documented_schema, service_schema", REPORT_QUERIES)
def test_documented_report_parameters_are_the_filters_accepted(documented_schema, service_schema):
    # format is the gateway's own: it chooses JSON or a file and never reaches the filters.
    assert _parameters(documented_schema) == _parameters(service_schema) | {"format"}


def test_documented_report_choices_are_the_accepted_ones():
    def choices(schema, name):
        return tuple(schema().fields[name].validate.choices)

    assert choices(documented_reports.CustomersSummaryQuery, "granularity") == \
        choices(report_filters.CustomersSummaryFilters, "granularity")
    assert choices(documented_reports.SalesByPeriodQuery, "granularity") == \
        choices(report_filters.SalesByPeriodFilters, "granularity")
    assert choices(documented_reports.ActivitiesQuery, "granularity") == \
        choices(report_filters.ActivitiesFilters, "granularity")
    assert documented_reports.FILE_FORMATS == choices(report_filters.ExportOptions, "format")
