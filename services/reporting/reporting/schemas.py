"""Validation of the report filters: one schema per report.

Filters arrive as query-string values (text; a repeated parameter arrives as
a list). Each report accepts only its own filters: an unknown one, a bad
value, or a single-valued filter given twice is a 422 naming the field.
Filters narrow what the caller may see, never widen it. Defaults that depend
on today's date (from, to) are filled in by reporting.reports.
"""
from marshmallow import ValidationError, fields, pre_load, validate

from crm_common import tabular
from crm_common.validation import StrictSchema

from reporting.periods import DAY, MONTH, QUARTER, WEEK

LIFECYCLE_STAGES = ("lead", "prospect", "customer", "churned")

MAX_TOP_CUSTOMERS = 100
MAX_INACTIVE_DAYS = 3650
MAX_EXPIRING_DAYS = 365


class SingleValuedFilters(StrictSchema):
    @pre_load
    def _one_value_each(self, data, **kwargs):
        # None of the report filters takes several values: ?owner_id=a&owner_id=b
        # is a mistake to report, not a choice to make for the caller.
        if isinstance(data, dict):
            # An empty parameter (?team= from a form left blank) is no filter.
            data = {key: value for key, value in data.items()
                    if value is not None and not (isinstance(value, str) and not value.strip())}
            repeated = {key: ["Give this filter once."] for key, value in data.items()
                        if isinstance(value, (list, tuple))}
            if repeated:
                raise ValidationError(repeated)
        return data


class ReportFilters(SingleValuedFilters):
    """from/to: ISO dates, both inclusive (UTC days)."""

    # ``from`` is a Python keyword: loaded as ``date_from``.
    date_from = fields.Date(data_key="from")
    date_to = fields.Date(data_key="to")


def _uuid():
    return fields.UUID()


def _text(max_length):
    return fields.String(validate=validate.Length(min=1, max=max_length))


class TeamFilters(ReportFilters):
    team = _text(64)


class OwnerFilters(TeamFilters):
    owner_id = _uuid()


class SalesByOwnerFilters(TeamFilters):
    """No owner_id: the report is one row per owner (team and visibility choose the owners).
    region, industry, tier are customer attributes: a sales report joins
    customer_facts only when one of them is given."""

    region = _text(100)
    industry = _text(100)
    tier = _text(10)


class CustomerAttributeFilters(SalesByOwnerFilters):
    owner_id = _uuid()


class CustomersSummaryFilters(CustomerAttributeFilters):
    granularity = fields.String(load_default=MONTH, validate=validate.OneOf((DAY, WEEK, MONTH)))
    source = _text(100)


class SalesByPeriodFilters(CustomerAttributeFilters):
    granularity = fields.String(load_default=MONTH, validate=validate.OneOf((DAY, WEEK, MONTH, QUARTER)))


class SalesByProductFilters(CustomerAttributeFilters):
    product_id = _uuid()


class TopCustomersFilters(CustomerAttributeFilters):
    limit = fields.Integer(load_default=10, validate=validate.Range(min=1, max=MAX_TOP_CUSTOMERS))


class FunnelFilters(OwnerFilters):
    # Required here; the gateway fills in the default pipeline when the user gives none.
    pipeline = fields.UUID(required=True)


class ForecastFilters(OwnerFilters):
    pipeline = _uuid()


class ActivitiesFilters(OwnerFilters):
    granularity = fields.String(load_default=MONTH, validate=validate.OneOf((DAY, WEEK, MONTH)))
    days = fields.Integer(load_default=30, validate=validate.Range(min=1, max=MAX_INACTIVE_DAYS))


class ContractsFilters(SingleValuedFilters):
    """No from/to: the report is as of today."""

    owner_id = _uuid()
    team = _text(64)
    days = fields.Integer(load_default=30, validate=validate.Range(min=1, max=MAX_EXPIRING_DAYS))


class ExportOptions(StrictSchema):
    format = fields.String(load_default=tabular.CSV, validate=validate.OneOf(tabular.FORMATS))
