"""Validation of what comes in (events), and the shape of what goes out."""
from marshmallow import EXCLUDE, Schema, fields, validate


class CustomerAssigned(Schema):
    """The data of customer.assigned; fields this service does not use are ignored."""

    class Meta:
        unknown = EXCLUDE

    customer_id = fields.String(required=True, validate=validate.Length(min=1, max=36))
    name = fields.String(allow_none=True, load_default=None)
    owner_id = fields.String(allow_none=True, load_default=None)
    previous_owner_id = fields.String(allow_none=True, load_default=None)


class ImportedCustomer(Schema):
    class Meta:
        unknown = EXCLUDE

    id = fields.String(required=True, validate=validate.Length(min=1, max=36))
    name = fields.String(allow_none=True, load_default=None)
    owner_id = fields.String(allow_none=True, load_default=None)


class ImportedCustomers(Schema):
    """customer.imported: a batch of new customers from an import; only owners and names are used here."""

    class Meta:
        unknown = EXCLUDE

    customers = fields.List(fields.Nested(ImportedCustomer), required=True)


class Actor(Schema):
    class Meta:
        unknown = EXCLUDE

    user_id = fields.String(allow_none=True, load_default=None)
    role = fields.String(allow_none=True, load_default=None)
    team_id = fields.String(allow_none=True, load_default=None)


class NotificationOut(Schema):
    class Meta:
        unknown = EXCLUDE

    id = fields.String()
    type = fields.String()
    title = fields.String()
    body = fields.String(allow_none=True)
    data = fields.Dict()
    read = fields.Function(lambda notification: notification.read_at is not None)
    read_at = fields.DateTime(allow_none=True)
    created_at = fields.DateTime()
