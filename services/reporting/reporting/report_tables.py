"""Each report as one table for CSV/XLSX export: a header and rows.

A table is built from the report's JSON dict, so a file always shows the
same figures as the screen. Reports with one main list export that list
(sales-by-owner, -by-product, -top-customers, -forecast's per-owner rows,
-funnel's stages). Reports with several sections become one long table
whose first column, ``section``, says which part a row belongs to
(customers-summary, activities, contracts); sales-by-period exports its
rows followed by one ``total`` row per currency.

Money, quantities, percents and days become numbers in the cells (Decimal):
a spreadsheet sums them, and a negative amount is not mistaken for a formula.

Plain Python; nothing here knows about nameko.
"""
import base64
from decimal import Decimal

from crm_common import tabular

NUMERIC = {"revenue", "paid", "outstanding", "average_order_value", "quantity", "share", "amount",
           "weighted_amount", "value", "conversion_rate", "average_days_in_stage"}


def _cell(column, value):
    if value is not None and column in NUMERIC and isinstance(value, str):
        return Decimal(value)
    return value


def _plain(columns, rows, **fixed):
    """Rows of dicts as lists in ``columns`` order; ``fixed`` fills columns the dicts lack."""
    return [[_cell(column, row.get(column, fixed.get(column))) for column in columns] for row in rows]


def customers_summary(report):
    header = ["section", "key", "period", "period_start", "count"]
    rows = [["total", None, None, None, report["total"]]]
    for section in ("by_lifecycle_stage", "by_tier", "by_industry", "by_region", "by_source"):
        rows += [[section, item["key"], None, None, item["count"]] for item in report[section]]
    for section in ("new_customers", "churned"):
        rows += [[section, None, item["period"], item["period_start"], item["count"]] for item in report[section]]
    return header, rows


def sales_by_period(report):
    header = ["period", "period_start", "currency", "orders", "revenue", "paid", "outstanding",
              "average_order_value"]
    return header, _plain(header, report["rows"]) + _plain(header, report["totals"], period="total")


def _main_list(columns):
    def table(report):
        return list(columns), _plain(columns, report["rows"])
    return table


def sales_funnel(report):
    header = ["stage", "position", "outcome", "entered", "conversion_rate", "average_days_in_stage"]
    return header, _plain(header, report["stages"])


def activities(report):
    """One long table; the follow-up types found in the answer become one count column each."""
    types = sorted({kind for row in report["followups"] for kind in row["by_type"]})
    header = ["section", "period", "period_start", "user_id", "total", *types, "customer_id", "name",
              "owner_id", "last_followup_at"]
    rows = _plain(header, [{**row, **row["by_type"]} for row in report["followups"]], section="followups")
    rows += _plain(header, report["inactive_customers"]["items"], section="inactive_customers")
    return header, rows


def contracts(report):
    header = ["section", "status", "currency", "count", "value", "contract_id", "title", "customer_id",
              "owner_id", "end_date"]
    rows = _plain(header, report["active"]["value"], section="active")
    rows += _plain(header, report["expiring"]["items"], section="expiring")
    rows += _plain(header, report["by_status"], section="by_status")
    return header, rows


TABLES = {
    "customers-summary": customers_summary,
    "sales-by-period": sales_by_period,
    "sales-by-owner": _main_list(("owner_id", "currency", "orders", "revenue", "paid", "outstanding")),
    "sales-by-product": _main_list(("product_id", "sku", "description", "currency", "quantity", "revenue",
                                    "share")),
    "sales-top-customers": _main_list(("customer_id", "name", "currency", "orders", "revenue", "paid")),
    "sales-funnel": sales_funnel,
    "sales-forecast": _main_list(("month", "owner_id", "currency", "opportunities", "amount",
                                  "weighted_amount")),
    "activities": activities,
    "contracts": contracts,
}


def export(name, report, file_format):
    """{"filename", "content_type", "content" (base64), "rows"} of ``report`` (the dict of report ``name``)."""
    header, rows = TABLES[name](report)
    content = tabular.write_table(file_format, header, rows)
    if "from" in report:
        stem = f"{name}-{report['from']}-{report['to']}"
    else:
        stem = f"{name}-{report['as_of']}"
    return {
        "filename": f"{stem}.{file_format}",
        "content_type": tabular.CONTENT_TYPES[file_format],
        "content": base64.b64encode(content).decode("ascii"),
        "rows": len(rows),
    }
