"""Documentation schemas of the import and export routes (served by the customers service).

They mirror customers.import_schemas; tests/test_api_contract.py keeps the two equal.
"""
from marshmallow import Schema, fields, validate

from gateway.schemas import CustomerListQuery

DUPLICATE_POLICIES = ("skip", "update", "create")
EXPORT_FORMATS = ("csv", "xlsx")
JOB_STATUSES = ("queued", "running", "done", "failed")


class ImportUploadForm(Schema):
    """The multipart/form-data body of an import."""

    file = fields.Raw(required=True, metadata={
        "type": "string", "format": "binary",
        "description": "CSV (UTF-8 with or without BOM, or GBK; separated by , ; or tab) or XLSX (first sheet); "
                       "the first row names the columns"})
    mapping = fields.String(metadata={
        "description": 'JSON object {"<column in the file>": "<customer field>"}. Fields: external_id, kind, name, '
                       "company.name, company.industry, company.size, company.website, phones, emails, "
                       "address.country, address.region, address.city, address.street, address.postcode, "
                       "industry, region, source, tier, lifecycle_stage, tags, owner_id, notes, custom.<key>. "
                       "phones, emails and tags take several values separated by , ; / ， or ；. Without a "
                       "mapping, columns named like a field fill it (an exported file imports as it is).",
        "example": '{"客户名称": "name", "手机": "phones", "编号": "external_id"}'})
    dry_run = fields.Boolean(load_default=True, metadata={
        "description": "true (the default, the safe choice): report what would happen and write nothing"})
    on_duplicate = fields.String(load_default="skip", validate=validate.OneOf(DUPLICATE_POLICIES), metadata={
        "description": "A row matching a customer by phone, email or name + company: skip it, update the match, "
                       "or create it anyway. A row whose external_id was imported before is always that customer "
                       "(skipped, or updated with update): importing a file twice creates nothing new."})


class ImportRejectedRow(Schema):
    row = fields.Integer(metadata={"description": "Row number as the spreadsheet shows it (the header is row 1)"})
    field = fields.String(metadata={"description": "The customer field, as the mapping names it"})
    column = fields.String(allow_none=True, metadata={"description": "The file's column of that field"})
    reason = fields.String()


class ImportReportResponse(Schema):
    rows_read = fields.Integer()
    created = fields.Integer()
    updated = fields.Integer()
    skipped = fields.Integer(metadata={"description": "Duplicates skipped, and matches the row would not change"})
    rejected = fields.List(fields.Nested(ImportRejectedRow), metadata={
        "description": "One entry per problem, the first 1000"})
    rejected_count = fields.Integer(metadata={"description": "Rows rejected; nothing of them was written"})
    dry_run = fields.Boolean()


class ImportJobResponse(Schema):
    id = fields.String(metadata={"format": "uuid"})
    status = fields.String(validate=validate.OneOf(JOB_STATUSES))
    filename = fields.String()
    file_format = fields.String(validate=validate.OneOf(EXPORT_FORMATS))
    mapping = fields.Dict(keys=fields.String(), values=fields.String())
    dry_run = fields.Boolean()
    on_duplicate = fields.String(validate=validate.OneOf(DUPLICATE_POLICIES))
    total_rows = fields.Integer(allow_none=True, metadata={"description": "Data rows; known once the job starts"})
    done_rows = fields.Integer(metadata={"description": "Rows processed (and committed) so far"})
    report = fields.Nested(ImportReportResponse, allow_none=True, metadata={"description": "When done"})
    error = fields.String(allow_none=True, metadata={"description": "Why a failed job stopped"})
    created_by = fields.String(allow_none=True, metadata={"format": "uuid"})
    created_at = fields.DateTime()
    started_at = fields.DateTime(allow_none=True)
    finished_at = fields.DateTime(allow_none=True)


class ExportQuery(CustomerListQuery):
    """The list's filters and sort, and the file format."""

    class Meta:
        exclude = ("limit", "cursor")

    format = fields.String(load_default="csv", validate=validate.OneOf(EXPORT_FORMATS))
