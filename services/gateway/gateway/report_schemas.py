"""Documentation schemas of the reports (served by the reporting service).

The reporting service validates the filters (422 naming the field, an
unknown filter included); these schemas describe them and the answers in
the OpenAPI document. Money is a decimal string per currency, never summed
across currencies; rates are percent strings ("37.50"), null when their
denominator is 0; days are decimal strings with one decimal.
"""
from marshmallow import Schema, fields, validate

FORMATS = ("json", "csv", "xlsx")
FILE_FORMATS = ("csv", "xlsx")
GRANULARITIES = ("day", "week", "month")
SALES_GRANULARITIES = GRANULARITIES + ("quarter",)
LIFECYCLE_STAGES = ("lead", "prospect", "customer", "churned")

UUID = {"format": "uuid"}
MONEY = {"type": "string", "example": "1234.50"}
PERCENT = {"type": "string", "example": "37.50", "description": "Percent with 2 decimals; null when undefined"}
DAYS = {"type": "string", "example": "3.5"}
PERIOD = {"example": "2026-11", "description": "2026-11-29 (day), 2026-W48 (ISO week), 2026-11 (month), "
                                               "2026-Q4 (quarter)"}
RANGE_DESCRIPTION = "ISO date (YYYY-MM-DD), UTC day, inclusive"


# --- filters --------------------------------------------------------------------

class ReportFormatQuery(Schema):
    format = fields.String(load_default="json", validate=validate.OneOf(FORMATS), metadata={
        "description": "json (the default), or a file download: csv (UTF-8 with a BOM) or xlsx"})


class DateRangeQuery(ReportFormatQuery):
    from_ = fields.Date(data_key="from", metadata={
        "description": RANGE_DESCRIPTION + "; default: the first day of the month eleven months before `to`"})
    to = fields.Date(metadata={"description": RANGE_DESCRIPTION + "; default: today"})


class TeamQuery(Schema):
    team = fields.String(metadata={"description": "The owners' team"})


class OwnerQuery(TeamQuery):
    owner_id = fields.String(metadata={**UUID, "description": "The records of this owner"})


class CustomerAttributeQuery(Schema):
    region = fields.String(metadata={"description": "Customers of this region"})
    industry = fields.String()
    tier = fields.String(metadata={"example": "A"})


class CustomersSummaryQuery(DateRangeQuery, OwnerQuery, CustomerAttributeQuery):
    granularity = fields.String(load_default="month", validate=validate.OneOf(GRANULARITIES))
    source = fields.String(metadata={"description": "Where the customers came from"})


class SalesByPeriodQuery(DateRangeQuery, OwnerQuery, CustomerAttributeQuery):
    granularity = fields.String(load_default="month", validate=validate.OneOf(SALES_GRANULARITIES), metadata={
        "description": "A range over 3 years answers 422 for day"})


class SalesByOwnerQuery(DateRangeQuery, TeamQuery, CustomerAttributeQuery):
    pass


class SalesByProductQuery(DateRangeQuery, OwnerQuery, CustomerAttributeQuery):
    product_id = fields.String(metadata=UUID)


class TopCustomersQuery(DateRangeQuery, OwnerQuery, CustomerAttributeQuery):
    limit = fields.Integer(load_default=10, validate=validate.Range(1, 100))


class FunnelQuery(DateRangeQuery, OwnerQuery):
    pipeline = fields.String(metadata={**UUID, "description": "Default: the default pipeline"})


class ForecastQuery(DateRangeQuery, OwnerQuery):
    from_ = fields.Date(data_key="from", metadata={"description": "Default: the first day of this month"})
    to = fields.Date(metadata={"description": "Default: the last day of the month eleven months later"})
    pipeline = fields.String(metadata=UUID)


class ActivitiesQuery(DateRangeQuery, OwnerQuery):
    owner_id = fields.String(metadata={**UUID, "description": "The customers' owner"})
    granularity = fields.String(load_default="month", validate=validate.OneOf(GRANULARITIES))
    days = fields.Integer(load_default=30, validate=validate.Range(1, 3650), metadata={
        "description": "A customer is inactive without a follow-up in this many days"})


class ContractsQuery(ReportFormatQuery, OwnerQuery):
    days = fields.Integer(load_default=30, validate=validate.Range(1, 365), metadata={
        "description": "Expiring: end_date within today .. today + days"})


# --- answers --------------------------------------------------------------------

class Owned(Schema):
    owner_id = fields.String(allow_none=True, metadata=UUID)
    owner_name = fields.String(allow_none=True, metadata={"description": "The owner's name (gateway users)"})


class KeyCount(Schema):
    key = fields.String(allow_none=True, metadata={"description": "null: no value"})
    count = fields.Integer()


class PeriodCount(Schema):
    period = fields.String(metadata=PERIOD)
    period_start = fields.Date()
    count = fields.Integer()


class Ranged(Schema):
    from_ = fields.Date(data_key="from")
    to = fields.Date()


class CustomersSummaryResponse(Ranged):
    granularity = fields.String(validate=validate.OneOf(GRANULARITIES))
    total = fields.Integer(metadata={"description": "Current customers matching the filters other than dates"})
    by_lifecycle_stage = fields.List(fields.Nested(KeyCount), metadata={
        "description": f"Always {', '.join(LIFECYCLE_STAGES)}, 0 included"})
    by_tier = fields.List(fields.Nested(KeyCount), metadata={"description": "Count desc, then key"})
    by_industry = fields.List(fields.Nested(KeyCount))
    by_region = fields.List(fields.Nested(KeyCount))
    by_source = fields.List(fields.Nested(KeyCount))
    new_customers = fields.List(fields.Nested(PeriodCount), metadata={"description": "Created within from..to"})
    churned = fields.List(fields.Nested(PeriodCount), metadata={"description": "Current churned customers, "
                                                                                "by the day they churned"})


class SalesFigures(Schema):
    currency = fields.String(metadata={"example": "CNY"})
    orders = fields.Integer(metadata={"description": "Placed orders (confirmed, paid or fulfilled)"})
    revenue = fields.String(metadata={**MONEY, "description": "Sum of the order totals"})
    paid = fields.String(metadata=MONEY)
    outstanding = fields.String(metadata={**MONEY, "description": "revenue - paid"})


class SalesTotals(SalesFigures):
    average_order_value = fields.String(allow_none=True, metadata=MONEY)


class SalesPeriodRow(SalesTotals):
    period = fields.String(metadata=PERIOD)
    period_start = fields.Date()


class SalesByPeriodResponse(Ranged):
    granularity = fields.String(validate=validate.OneOf(SALES_GRANULARITIES))
    rows = fields.List(fields.Nested(SalesPeriodRow), metadata={"description": "Periods with orders, in order"})
    totals = fields.List(fields.Nested(SalesTotals), metadata={"description": "One per currency"})


class SalesOwnerRow(SalesFigures, Owned):
    pass


class SalesByOwnerResponse(Ranged):
    rows = fields.List(fields.Nested(SalesOwnerRow), metadata={"description": "Revenue desc"})


class SalesProductRow(Schema):
    product_id = fields.String(allow_none=True, metadata=UUID)
    sku = fields.String(allow_none=True, metadata={"description": "As on the product's most recent line"})
    description = fields.String(allow_none=True)
    currency = fields.String()
    quantity = fields.String(metadata={"type": "string", "example": "12.5"})
    revenue = fields.String(metadata={**MONEY, "description": "Sum of the line totals"})
    share = fields.String(allow_none=True, metadata={**PERCENT, "description": "Of all revenue in the currency"})


class SalesByProductResponse(Ranged):
    rows = fields.List(fields.Nested(SalesProductRow), metadata={"description": "Revenue desc"})


class TopCustomerRow(Schema):
    customer_id = fields.String(metadata=UUID)
    name = fields.String(allow_none=True)
    currency = fields.String()
    orders = fields.Integer()
    revenue = fields.String(metadata=MONEY)
    paid = fields.String(metadata=MONEY)


class TopCustomersResponse(Ranged):
    rows = fields.List(fields.Nested(TopCustomerRow), metadata={"description": "Revenue desc"})


class FunnelStage(Schema):
    stage = fields.String(metadata={"description": "The stage key"})
    position = fields.Integer()
    outcome = fields.String(validate=validate.OneOf(("open", "won", "lost")))
    entered = fields.Integer(metadata={"description": "Cohort opportunities that reached the stage or a later one"})
    conversion_rate = fields.String(allow_none=True, metadata={
        **PERCENT, "description": "Of those that entered, the share that entered the next stage"})
    average_days_in_stage = fields.String(allow_none=True, metadata=DAYS)


class FunnelResponse(Ranged):
    pipeline = fields.String(metadata=UUID)
    opportunities = fields.Integer(metadata={"description": "The cohort: created within from..to"})
    open = fields.Integer()
    won = fields.Integer()
    lost = fields.Integer()
    win_rate = fields.String(allow_none=True, metadata={**PERCENT, "description": "won / (won + lost)"})
    average_sales_cycle_days = fields.String(allow_none=True, metadata={
        **DAYS, "description": "Creation to close, of the won ones"})
    stages = fields.List(fields.Nested(FunnelStage), metadata={"description": "By position"})


class ForecastFigures(Schema):
    month = fields.String(allow_none=True, metadata={"example": "2026-12",
                                                     "description": "null: no expected close date"})
    currency = fields.String()
    opportunities = fields.Integer()
    amount = fields.String(metadata=MONEY)
    weighted_amount = fields.String(metadata={**MONEY, "description": "Sum of amount x probability / 100"})


class ForecastRow(ForecastFigures, Owned):
    pass


class ForecastResponse(Ranged):
    rows = fields.List(fields.Nested(ForecastRow))
    by_month = fields.List(fields.Nested(ForecastFigures))


class FollowupCount(Schema):
    period = fields.String(metadata=PERIOD)
    period_start = fields.Date()
    user_id = fields.String(allow_none=True, metadata={**UUID, "description": "Who logged the follow-ups"})
    user_name = fields.String(allow_none=True)
    total = fields.Integer(metadata={"description": "Follow-ups of every type"})
    by_type = fields.Dict(keys=fields.String(), values=fields.Integer(), metadata={
        "description": "Follow-ups per type (call, meeting, email, visit, note); types with none are left out"})


class InactiveCustomer(Owned):
    customer_id = fields.String(metadata=UUID)
    name = fields.String(allow_none=True)
    last_followup_at = fields.DateTime(allow_none=True)


class InactiveCustomers(Schema):
    days = fields.Integer()
    count = fields.Integer()
    items = fields.List(fields.Nested(InactiveCustomer), metadata={
        "description": "The first 100, least recently contacted first"})


class ActivitiesResponse(Ranged):
    granularity = fields.String(validate=validate.OneOf(GRANULARITIES))
    followups = fields.List(fields.Nested(FollowupCount), metadata={"description": "Occurred within from..to"})
    inactive_customers = fields.Nested(InactiveCustomers)


class CurrencyValue(Schema):
    currency = fields.String()
    value = fields.String(metadata=MONEY)


class ActiveContracts(Schema):
    count = fields.Integer(metadata={"description": "Signed or active, ending today or later"})
    value = fields.List(fields.Nested(CurrencyValue))


class ExpiringContract(Owned):
    contract_id = fields.String(metadata=UUID)
    title = fields.String()
    customer_id = fields.String(metadata=UUID)
    end_date = fields.Date()
    value = fields.String(metadata=MONEY)
    currency = fields.String()
    status = fields.String()


class ExpiringContracts(Schema):
    days = fields.Integer()
    count = fields.Integer()
    items = fields.List(fields.Nested(ExpiringContract), metadata={"description": "Soonest first, the first 100"})


class ContractStatusRow(Schema):
    status = fields.String()
    currency = fields.String()
    count = fields.Integer()
    value = fields.String(metadata=MONEY)


class ContractsResponse(Schema):
    as_of = fields.Date(metadata={"description": "Today (UTC)"})
    active = fields.Nested(ActiveContracts)
    expiring = fields.Nested(ExpiringContracts)
    by_status = fields.List(fields.Nested(ContractStatusRow))


# --- operations -------------------------------------------------------------------

class ConsistencyCheck(Schema):
    name = fields.String(metadata={"example": "revenue 2026-11 CNY",
                                   "description": "customers, orders, or revenue <month> <currency>"})
    reporting = fields.Raw(allow_none=True, metadata={"description": "The read models' figure"})
    source = fields.Raw(allow_none=True, metadata={"description": "The owning service's figure"})
    difference = fields.Raw(allow_none=True)


class ConsistencyResponse(Schema):
    checked_at = fields.DateTime()
    consistent = fields.Boolean()
    checks = fields.List(fields.Nested(ConsistencyCheck))
    differences = fields.List(fields.Nested(ConsistencyCheck), metadata={"description": "The checks that differ"})


class RebuildRunResponse(Schema):
    id = fields.String(metadata=UUID)
    status = fields.String(validate=validate.OneOf(("running", "done", "failed")))
    requested_by = fields.String(allow_none=True, metadata=UUID)
    started_at = fields.DateTime()
    finished_at = fields.DateTime(allow_none=True)
    heartbeat_at = fields.DateTime(allow_none=True)
    counts = fields.Dict(keys=fields.String(), values=fields.Integer(), metadata={
        "description": "Records read per kind so far, and rows removed at the end"})
    error = fields.String(allow_none=True, metadata={"description": "Why a failed run stopped"})
