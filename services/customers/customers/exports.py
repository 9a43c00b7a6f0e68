"""Exporting the customers a caller may see, as CSV or XLSX.

The columns are the importable fields (plus id and timestamps), written the
way an import reads them, so an exported file imports again as it is.

The whole file is rendered here and returned in one RPC reply: 100,000
customers make about 25 MB of CSV, which RabbitMQ carries without trouble,
and one reply keeps the gateway free of any knowledge of customers or file
formats. Rows are streamed from the database in batches (yield_per), so
memory holds one batch of records plus the file being written.

Plain Python over a SQLAlchemy session; nothing here knows about nameko.
"""
import base64

from sqlalchemy import select

from crm_common.audit import record_audit
from crm_common.types import utcnow
from crm_common.validation import load

from crm_common import tabular
from customers.domain import PRODUCER, CustomerBook
from customers.import_schemas import CUSTOM_PREFIX, IMPORTABLE_FIELDS, LIST_FIELDS, ExportOptions
from customers.models import Customer, CustomFieldDefinition

BATCH_ROWS = 1000
LIST_JOINER = ", "


def field_value(customer, field):
    """A customer's value of an importable field, as an import reads it back."""
    contact = customer.contact or {}
    if field.startswith(CUSTOM_PREFIX):
        value = (customer.custom_fields or {}).get(field[len(CUSTOM_PREFIX):])
    elif field.startswith("company."):
        value = (customer.company or {}).get(field[len("company."):])
    elif field.startswith("address."):
        value = (contact.get("address") or {}).get(field[len("address."):])
    elif field in ("phones", "emails"):
        value = contact.get(field) or []
    else:
        value = getattr(customer, field)
    if field in LIST_FIELDS:
        return LIST_JOINER.join(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    return "" if value is None else str(value) if not isinstance(value, str) else value


class CustomerExport:
    def __init__(self, session, context):
        self.session = session
        self.context = context

    def render(self, filters=None, options=None):
        """{"filename", "content_type", "content" (base64), "rows"} of the visible customers matching ``filters``."""
        options = load(ExportOptions, options or {})
        statement, sort_column, descending, _ = CustomerBook(self.session, self.context).statement(
            filters, options["sort"])
        order = (sort_column.desc(), Customer.id.desc()) if descending else (sort_column.asc(), Customer.id.asc())
        custom_keys = self.session.execute(
            select(CustomFieldDefinition.key).order_by(CustomFieldDefinition.key)).scalars().all()
        fields = list(IMPORTABLE_FIELDS) + [CUSTOM_PREFIX + key for key in custom_keys]
        header = ["id", *fields, "created_at", "updated_at"]
        count = 0

        def rows():
            nonlocal count
            result = self.session.execute(statement.order_by(*order).execution_options(yield_per=BATCH_ROWS))
            for customer in result.scalars():
                count += 1
                yield [customer.id, *(field_value(customer, field) for field in fields),
                       customer.created_at.isoformat(), customer.updated_at.isoformat()]

        content = tabular.write_table(options["format"], header, rows())
        # Which filters, not their values: a filter may be a phone number or an email.
        record_audit(self.session, self.context, PRODUCER, "customer.exported", "customer", None, detail={
            "rows": count, "format": options["format"], "sort": options["sort"],
            "filters": sorted(key for key, value in (filters or {}).items() if value not in (None, "", []))})
        return {
            "filename": f"customers-{utcnow():%Y%m%d}.{options['format']}",
            "content_type": tabular.CONTENT_TYPES[options["format"]],
            "content": base64.b64encode(content).decode("ascii"),
            "rows": count,
        }
