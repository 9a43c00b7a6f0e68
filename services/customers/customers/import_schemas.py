"""What an import accepts (its options and column mapping) and what an import job looks like."""
import re

from marshmallow import Schema, ValidationError, fields, validate, validates

from customers.schemas import Strict

DUPLICATE_POLICIES = ("skip", "update", "create")
EXPORT_FORMATS = ("csv", "xlsx")

# The customer fields a column can fill, in the order an export writes them.
# A dotted name is a field inside company / contact.address; custom.<key> is
# an admin-defined custom field.
IMPORTABLE_FIELDS = (
    "external_id", "kind", "name",
    "company.name", "company.industry", "company.size", "company.website",
    "phones", "emails",
    "address.country", "address.region", "address.city", "address.street", "address.postcode",
    "industry", "region", "source", "tier", "lifecycle_stage", "tags", "owner_id", "notes",
)
# Fields whose cell may hold several values.
LIST_FIELDS = ("phones", "emails", "tags")
CUSTOM_PREFIX = "custom."
CUSTOM_KEY = re.compile(r"^custom\.[a-z][a-z0-9_]{0,49}$")
MAX_MAPPED_COLUMNS = 200


def is_importable(field):
    return field in IMPORTABLE_FIELDS or bool(CUSTOM_KEY.match(field))


class ImportOptions(Strict):
    # {"<column in the file>": "<customer field>"}; columns left out are ignored.
    # Without one, columns named like a field fill it (an exported file re-imports as it is).
    mapping = fields.Dict(keys=fields.String(validate=validate.Length(min=1, max=200)),
                          values=fields.String(), load_default=None, allow_none=True)
    # A dry run by default: an import touches many records, so the first run
    # of a file shows its report without writing anything.
    dry_run = fields.Boolean(load_default=True)
    on_duplicate = fields.String(load_default="skip", validate=validate.OneOf(DUPLICATE_POLICIES))

    @validates("mapping")
    def _known_fields_once(self, mapping, **kwargs):
        if mapping is None:
            return
        if not mapping:
            raise ValidationError("Map at least one column to a customer field.")
        if len(mapping) > MAX_MAPPED_COLUMNS:
            raise ValidationError(f"Map at most {MAX_MAPPED_COLUMNS} columns.")
        problems, seen = [], {}
        for column, field in mapping.items():
            if not is_importable(field):
                problems.append(f"Column {column!r}: {field!r} is not a field you can import; "
                                f"use one of {', '.join(IMPORTABLE_FIELDS)} or custom.<key>.")
            elif field in seen:
                problems.append(f"Columns {seen[field]!r} and {column!r} are both mapped to {field!r}.")
            else:
                seen[field] = column
        if problems:
            raise ValidationError(problems)


class ImportReportOut(Schema):
    rows_read = fields.Integer()
    created = fields.Integer()
    updated = fields.Integer()
    skipped = fields.Integer()
    # One entry per problem: {"row": spreadsheet row number, "field", "column", "reason"}.
    rejected = fields.List(fields.Dict())
    # Rows rejected (the list above stops at 1000 entries).
    rejected_count = fields.Integer()
    dry_run = fields.Boolean()


class ImportJobOut(Schema):
    id = fields.String()
    status = fields.String()
    filename = fields.String()
    file_format = fields.String()
    mapping = fields.Dict(keys=fields.String(), values=fields.String())
    dry_run = fields.Boolean()
    on_duplicate = fields.String()
    total_rows = fields.Integer(allow_none=True)
    done_rows = fields.Integer()
    report = fields.Nested(ImportReportOut, allow_none=True)
    error = fields.String(allow_none=True)
    created_by = fields.String(allow_none=True)
    created_at = fields.DateTime()
    started_at = fields.DateTime(allow_none=True)
    finished_at = fields.DateTime(allow_none=True)


class ExportOptions(Strict):
    format = fields.String(load_default="csv", validate=validate.OneOf(EXPORT_FORMATS))
    sort = fields.String(load_default=None, allow_none=True)
