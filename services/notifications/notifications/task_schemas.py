"""Validation and output of tasks, the events that make them, and notification preferences."""
import re
from datetime import timezone
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from marshmallow import EXCLUDE, Schema, ValidationError, fields, validate, validates, validates_schema

from crm_common.validation import PatchSchema, StrictSchema

PRIORITIES = ("low", "normal", "high")
STATUSES = ("open", "done", "cancelled")
SOURCES = ("manual", "followup", "contract")
# What /notification-preferences may choose; the inbox is always on.
INBOX, EMAIL = "inbox", "email"
CHANNELS = (INBOX, EMAIL)
REMIND_AFTER_DUE = "Must not be after due_at."
INBOX_REQUIRED = "The inbox cannot be turned off."
HH_MM = re.compile(r"^([01]\d|2[0-3]):[0-5]\d$")


def _utc_datetime(**kwargs):
    # A time without an offset is taken as UTC, as everywhere in the API.
    return fields.AwareDateTime(default_timezone=timezone.utc, **kwargs)


class _Uuid(fields.UUID):
    """A UUID, kept as the text the id columns hold."""

    def _deserialize(self, value, attr, data, **kwargs):
        return str(super()._deserialize(value, attr, data, **kwargs))


def _uuid(**kwargs):
    return _Uuid(**kwargs)


# --- tasks -------------------------------------------------------------------------

class TaskWritable(StrictSchema):
    title = fields.String(validate=validate.Length(min=1, max=200))
    description = fields.String(allow_none=True, validate=validate.Length(max=10000))
    assignee_id = _uuid()
    customer_id = _uuid(allow_none=True)
    opportunity_id = _uuid(allow_none=True)
    contract_id = _uuid(allow_none=True)
    due_at = _utc_datetime(allow_none=True)
    remind_at = _utc_datetime(allow_none=True)
    priority = fields.String(validate=validate.OneOf(PRIORITIES))

    @validates_schema
    def _remind_not_after_due(self, data, **kwargs):
        due, remind = data.get("due_at"), data.get("remind_at")
        if due is not None and remind is not None and remind > due:
            raise ValidationError({"remind_at": [REMIND_AFTER_DUE]})


class TaskCreate(TaskWritable):
    title = fields.String(required=True, validate=validate.Length(min=1, max=200))
    priority = fields.String(load_default="normal", validate=validate.OneOf(PRIORITIES))


class TaskUpdate(TaskWritable, PatchSchema):
    """Every field optional, at least one; only while the task is open."""


class TaskFilters(StrictSchema):
    # "me" or a user id; what the caller may see still applies.
    assignee = fields.String(validate=validate.Length(min=1, max=36))
    status = fields.String(validate=validate.OneOf(STATUSES))
    customer_id = _uuid()
    due_before = _utc_datetime()


class TaskOut(Schema):
    id = fields.String()
    title = fields.String()
    description = fields.String(allow_none=True)
    assignee_id = fields.String()
    assignee_team_id = fields.String(allow_none=True)
    customer_id = fields.String(allow_none=True)
    opportunity_id = fields.String(allow_none=True)
    contract_id = fields.String(allow_none=True)
    due_at = fields.DateTime(allow_none=True)
    remind_at = fields.DateTime(allow_none=True)
    priority = fields.String()
    status = fields.String()
    source = fields.String()
    source_ref = fields.String(allow_none=True)
    reminded_at = fields.DateTime(allow_none=True)
    completed_at = fields.DateTime(allow_none=True)
    created_by = fields.String(allow_none=True)
    created_at = fields.DateTime()
    updated_at = fields.DateTime()
    version = fields.Integer()


# --- events that make tasks ----------------------------------------------------------

class FollowupLogged(Schema):
    """followup.logged from customers; only what a reminder needs."""

    class Meta:
        unknown = EXCLUDE

    id = fields.String(required=True, validate=validate.Length(min=1, max=36))
    customer_id = fields.String(required=True, validate=validate.Length(min=1, max=36))
    customer_name = fields.String(allow_none=True, load_default=None)
    owner_id = fields.String(allow_none=True, load_default=None)
    owner_team_id = fields.String(allow_none=True, load_default=None)
    summary = fields.String(allow_none=True, load_default=None)
    next_followup_at = _utc_datetime(allow_none=True, load_default=None)
    closed_followup_ids = fields.List(fields.String(), load_default=list)


class ContractExpiring(Schema):
    """contract.expiring from sales: the contract as sales shows it, plus the notice."""

    class Meta:
        unknown = EXCLUDE

    id = fields.String(required=True, validate=validate.Length(min=1, max=36))
    title = fields.String(required=True)
    customer_id = fields.String(allow_none=True, load_default=None)
    owner_id = fields.String(allow_none=True, load_default=None)
    owner_team_id = fields.String(allow_none=True, load_default=None)
    end_date = fields.Date(required=True)
    days_left = fields.Integer(required=True)
    days_to_end = fields.Integer(allow_none=True, load_default=None)
    value = fields.String(allow_none=True, load_default=None)
    currency = fields.String(allow_none=True, load_default=None)


# --- preferences ---------------------------------------------------------------------

class QuietHours(StrictSchema):
    start = fields.String(required=True)
    end = fields.String(required=True)
    timezone = fields.String(required=True, validate=validate.Length(min=1, max=64))

    @validates("start")
    def _start(self, value, **kwargs):
        _check_hh_mm(value)

    @validates("end")
    def _end(self, value, **kwargs):
        _check_hh_mm(value)

    @validates("timezone")
    def _zone(self, value, **kwargs):
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValidationError("Not a known time zone (use an IANA name like Asia/Shanghai).")

    @validates_schema
    def _not_empty_window(self, data, **kwargs):
        if data.get("start") is not None and data.get("start") == data.get("end"):
            raise ValidationError({"end": ["Must differ from start."]})


def _check_hh_mm(value):
    if not HH_MM.match(value or ""):
        raise ValidationError("Use HH:MM (24-hour).")


class ChannelList(fields.List):
    """The channels of one notification type: known ones, the inbox always among them."""

    def __init__(self, **kwargs):
        super().__init__(fields.String(validate=validate.OneOf(CHANNELS)), **kwargs)

    def _deserialize(self, value, attr, data, **kwargs):
        channels = super()._deserialize(value, attr, data, **kwargs)
        if INBOX not in channels:
            raise ValidationError(INBOX_REQUIRED)
        return sorted(set(channels), key=CHANNELS.index)


class PreferencesUpdate(StrictSchema):
    channels = fields.Dict(keys=fields.String(validate=validate.Length(min=1, max=100)), values=ChannelList(),
                           load_default=dict)
    quiet_hours = fields.Nested(QuietHours, allow_none=True, load_default=None)


class PreferencesOut(Schema):
    channels = fields.Dict(keys=fields.String(), values=fields.List(fields.String()))
    quiet_hours = fields.Dict(allow_none=True)
    defaults = fields.Dict(keys=fields.String(), values=fields.List(fields.String()))
