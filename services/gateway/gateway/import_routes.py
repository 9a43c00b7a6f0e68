"""The gateway's routes for importing and exporting customers.

A mixin of GatewayService: the routes here use its dependencies
(``self.customers``, ``self.context``, ``self._users()``, ``self._once``).
The file travels to the customers service base64-encoded inside the RPC
message (RabbitMQ carries tens of MB); the service reads it, validates it
row by row and answers with the job. The gateway adds what only it knows: the
teams of the users an import may name as owners.
"""
import base64
import hashlib
import json

from werkzeug.wrappers import Response

from crm_common.errors import ValidationFailed

from gateway import idempotency
from gateway.customer_routes import customer_filters
from gateway.permissions import rule
from gateway.http import API_PREFIX, Reply, api
from gateway.import_schemas import ExportQuery, ImportJobResponse, ImportUploadForm

MAX_UPLOAD_BYTES = 50 * 1024 * 1024
# Reading a large file and rendering a large export take longer than a
# usual call. A request nobody picked up still expires in its queue after the
# proxy's own timeout; this bounds only how long a running one may take.
FILE_RPC_TIMEOUT = 120.0


def import_options(form):
    """The import options of a form: ``mapping`` parsed from its JSON text (422 naming it when not JSON)."""
    options = {key: form[key] for key in ("dry_run", "on_duplicate") if key in form}
    if form.get("mapping", "").strip():
        try:
            options["mapping"] = json.loads(form["mapping"])
        except ValueError as error:
            raise ValidationFailed("The mapping is not valid JSON.", {"mapping": [f"Not JSON: {error}."]})
    return options


class ImportRoutes:
    @api("POST", "/imports/customers", allow=rule("customers", "import"), form=ImportUploadForm,
         max_body=MAX_UPLOAD_BYTES,
         response=ImportJobResponse, status=201, headers=(idempotency.HEADER,), tags=("imports",),
         also_answers=((202, "A large file, queued as a job: poll its Location"),),
         summary="Import customers from a CSV or XLSX file",
         description="A dry run unless dry_run=false. Files of up to 500 data rows are imported at once: "
                     "201 with the finished job and its report. Larger files become a background job: 202 "
                     "with the queued job and a Location to poll (GET /imports/{job_id}). Rejected rows are "
                     "listed with their row number, field and reason, and nothing of them is written.")
    def import_customers(self, request, form, files):
        upload = files.get("file")
        if upload is None:
            raise ValidationFailed("Attach the file to import.", {"file": ["Missing: send the file as 'file'."]})
        options = import_options(form)
        content = upload.read()
        # Idempotency-Key compares requests by fingerprint: the file's digest stands for the file.
        fingerprint_body = {**options, "file": hashlib.sha256(content).hexdigest()}

        def start():
            job = self.customers.call_within(
                FILE_RPC_TIMEOUT, "import_customers", base64.b64encode(content).decode("ascii"),
                upload.filename, options, self._owner_teams())
            headers = {"Location": f"{API_PREFIX}/imports/{job['id']}"}
            return Reply(job, status=201 if job["status"] == "done" else 202, headers=headers)
        return self._once(request, fingerprint_body, start)

    def _owner_teams(self):
        """{user_id: team_id} of the users rows may name as owner: sales users only themselves."""
        if self.context.role == "sales":
            return {self.context.user_id: self.context.team_id}
        return self._users().teams_by_user()

    @api("GET", "/imports/<job_id>", allow=rule("imports", "read"), response=ImportJobResponse, tags=("imports",),
         summary="An import job: progress (done_rows of total_rows) and, when done, its report",
         description="Visible to the user who started it and to admins.")
    def get_import(self, request, job_id):
        return self.customers.get_import(job_id)

    @api("GET", "/exports/customers", allow=rule("customers", "export"), query=ExportQuery, tags=("imports",),
         downloads=("text/csv", "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"),
         summary="The customers the caller may see, as a CSV or XLSX file",
         description="Takes the filters and sort of GET /customers. The columns are the importable fields "
                     "plus id and timestamps: the file imports again as it is. CSV is UTF-8 with a BOM "
                     "(Excel shows Chinese correctly); text that a spreadsheet would run as a formula "
                     "(starting with = + - @) is written with a leading apostrophe.")
    def export_customers(self, request):
        options = {"format": request.args.get("format", "csv"), "sort": request.args.get("sort") or None}
        exported = self.customers.call_within(FILE_RPC_TIMEOUT, "export_customers", customer_filters(request),
                                              options)
        return Response(base64.b64decode(exported["content"]), content_type=exported["content_type"], headers={
            "Content-Disposition": f'attachment; filename="{exported["filename"]}"',
            "X-Total-Count": str(exported["rows"]),
        })
