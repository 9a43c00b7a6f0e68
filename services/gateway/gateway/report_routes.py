"""The gateway's routes for reports (the reporting service).

A mixin of GatewayService: the routes here use its dependencies
(``self.reporting``, ``self.sales``, ``self.db``, ``self.context``).
The reporting service validates the filters and scopes every figure to the
caller (nameko forwards the caller with each call); the gateway picks the
answer's format, fills the default pipeline of the funnel (only sales knows
it) and adds the names of the users an answer mentions (only the gateway
knows them).
"""
import base64

from sqlalchemy import select
from werkzeug.wrappers import Response

from crm_common.errors import ValidationFailed

from gateway.permissions import rule
from gateway.http import API_PREFIX, Reply, api
from gateway.import_routes import FILE_RPC_TIMEOUT
from gateway.models import User
from gateway.report_schemas import (
    FILE_FORMATS, FORMATS, ActivitiesQuery, ActivitiesResponse, ConsistencyResponse, ContractsQuery,
    ContractsResponse, CustomersSummaryQuery, CustomersSummaryResponse, ForecastQuery, ForecastResponse,
    FunnelQuery, FunnelResponse, RebuildRunResponse, SalesByOwnerQuery, SalesByOwnerResponse, SalesByPeriodQuery,
    SalesByPeriodResponse, SalesByProductQuery, SalesByProductResponse, TopCustomersQuery, TopCustomersResponse,
)

TAGS = ("reports",)
DOWNLOADS = ("text/csv", "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet")
FORMAT_PARAMETER = "format"
# Which name goes beside which id in a JSON answer.
NAMED_IDS = {"owner_id": "owner_name", "user_id": "user_name"}
DEFAULT_PIPELINE_NOTE = "Without `pipeline`, the default pipeline's."
FILE_NOTE = ("format=csv or format=xlsx answers the report as a file (CSV in UTF-8 with a BOM); "
             "X-Total-Count gives its rows.")


def report_filters(request):
    """The query's filters as reporting takes them: strings, a list for a repeated parameter; no format."""
    return {name: values[0] if len(values) == 1 else values
            for name, values in request.args.to_dict(flat=False).items() if name != FORMAT_PARAMETER}


def answer_format(request):
    """json, csv or xlsx; 422 naming format for anything else (before any RPC).

    A blank one (?format= from a form left empty) is the default, as blank filters are no filter.
    """
    chosen = [value for value in request.args.getlist(FORMAT_PARAMETER) if value.strip()]
    if len(chosen) > 1 or (chosen and chosen[0] not in FORMATS):
        raise ValidationFailed("Choose the report's format.",
                               {FORMAT_PARAMETER: [f"Must be one of: {', '.join(FORMATS)}."]})
    return chosen[0] if chosen else "json"


def mentioned_users(answer):
    """Every owner_id / user_id value anywhere in a JSON answer."""
    found = set()
    _walk(answer, lambda record: found.update(record[key] for key in NAMED_IDS if record.get(key)))
    return found


def add_user_names(answer, names):
    """Puts owner_name beside each owner_id and user_name beside each user_id (None for an unknown user)."""
    def name(record):
        for id_key, name_key in NAMED_IDS.items():
            if id_key in record:
                record[name_key] = names.get(record[id_key])
    _walk(answer, name)
    return answer


def _walk(value, visit):
    if isinstance(value, dict):
        visit(value)
        for child in value.values():
            _walk(child, visit)
    elif isinstance(value, list):
        for child in value:
            _walk(child, visit)


def file_response(exported):
    return Response(base64.b64decode(exported["content"]), content_type=exported["content_type"], headers={
        "Content-Disposition": f'attachment; filename="{exported["filename"]}"',
        "X-Total-Count": str(exported["rows"]),
    })


def report_route(path, query, response, summary, description=""):
    """A GET report route: JSON by default, a CSV/XLSX download with ?format=."""
    description = f"{description}\n\n{FILE_NOTE}" if description else FILE_NOTE
    return api("GET", path, allow=rule("reports", "read"), query=query, response=response, downloads=DOWNLOADS,
               tags=TAGS, summary=summary, description=description)


class ReportRoutes:

    def _report(self, request, name, filters=None):
        file_format = answer_format(request)
        filters = report_filters(request) if filters is None else filters
        if file_format in FILE_FORMATS:
            return file_response(self.reporting.call_within(
                FILE_RPC_TIMEOUT, "export_report", name, filters, file_format))
        answer = self.reporting.report(name, filters)
        return add_user_names(answer, self._user_names(mentioned_users(answer)))

    def _user_names(self, user_ids):
        """{user_id: name} in one query; ids that are no user of the gateway are left out."""
        if not user_ids:
            return {}
        return dict(self.db.execute(select(User.id, User.name).where(User.id.in_(sorted(user_ids)))).all())

    @report_route("/reports/customers/summary", CustomersSummaryQuery, CustomersSummaryResponse,
                  "Customers: counts by lifecycle stage, tier, industry, region, source; new and churned by period")
    def customers_summary(self, request):
        return self._report(request, "customers-summary")

    @report_route("/reports/sales/by-period", SalesByPeriodQuery, SalesByPeriodResponse,
                  "Sales by period and currency: orders, revenue, paid, outstanding, average order value",
                  "Placed orders (confirmed, paid or fulfilled; not cancelled) by the day they were confirmed.")
    def sales_by_period(self, request):
        return self._report(request, "sales-by-period")

    @report_route("/reports/sales/by-owner", SalesByOwnerQuery, SalesByOwnerResponse,
                  "Sales by owner and currency, highest revenue first")
    def sales_by_owner(self, request):
        return self._report(request, "sales-by-owner")

    @report_route("/reports/sales/by-product", SalesByProductQuery, SalesByProductResponse,
                  "Sales by product and currency: quantity, revenue and share of the currency's revenue")
    def sales_by_product(self, request):
        return self._report(request, "sales-by-product")

    @report_route("/reports/sales/top-customers", TopCustomersQuery, TopCustomersResponse,
                  "The customers with the highest revenue")
    def sales_top_customers(self, request):
        return self._report(request, "sales-top-customers")

    @report_route("/reports/sales/funnel", FunnelQuery, FunnelResponse,
                  "The pipeline funnel of the opportunities created within the range",
                  "How many reached each stage, the conversion to the next, the days spent in each, the "
                  "win rate and the sales cycle. " + DEFAULT_PIPELINE_NOTE)
    def sales_funnel(self, request):
        answer_format(request)  # a bad format is refused before sales is asked anything
        filters = report_filters(request)
        if not filters.get("pipeline"):
            filters["pipeline"] = self._default_pipeline_id()
        return self._report(request, "sales-funnel", filters)

    def _default_pipeline_id(self):
        pipelines = self.sales.list_pipelines()["items"]
        return next((pipeline["id"] for pipeline in pipelines if pipeline["is_default"]), pipelines[0]["id"])

    @report_route("/reports/sales/forecast", ForecastQuery, ForecastResponse,
                  "Open opportunities by expected close month, owner and currency: amount and weighted amount")
    def sales_forecast(self, request):
        return self._report(request, "sales-forecast")

    @report_route("/reports/activities", ActivitiesQuery, ActivitiesResponse,
                  "Follow-ups by period, user and type; the customers nobody followed up lately")
    def activities(self, request):
        return self._report(request, "activities")

    @report_route("/reports/contracts", ContractsQuery, ContractsResponse,
                  "Contracts: active value, those expiring soon, counts and value by status")
    def contracts_report(self, request):
        return self._report(request, "contracts")

    # --- operations ----------------------------------------------------------

    @api("GET", "/reports/consistency", allow=rule("report admin", "read"), response=ConsistencyResponse, tags=TAGS,
         summary="Compare the reports' totals with the owning services'",
         description="Customer count, placed order count, and revenue per month and currency, for all "
                     "records. Right after a change the reports may lag by a moment.")
    def report_consistency(self, request):
        return self.reporting.consistency()

    @api("POST", "/reports/rebuild", allow=rule("report admin", "rebuild"), response=RebuildRunResponse, status=202,
         tags=TAGS, summary="Rebuild the reports' data from the owning services, in the background",
         description="Answers the run at once; poll its Location. Reports keep answering meanwhile. "
                     "409 while another rebuild runs.")
    def start_report_rebuild(self, request):
        run = self.reporting.start_rebuild()
        return Reply(run, status=202, headers={"Location": f"{API_PREFIX}/reports/rebuild/{run['id']}"})

    @api("GET", "/reports/rebuild/<run_id>", allow=rule("report admin", "read"), response=RebuildRunResponse, tags=TAGS,
         summary="A rebuild: its status and what it has read so far")
    def get_report_rebuild(self, request, run_id):
        return self.reporting.get_rebuild(run_id)
