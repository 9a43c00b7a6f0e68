"""Documentation schemas of tasks, inbox actions and notification preferences (the notifications service).

They mirror notifications.task_schemas; tests/test_api_contract.py keeps the two equal.
"""
from marshmallow import Schema, fields, validate

from gateway.schemas import PageQuery

TASK_PRIORITIES = ("low", "normal", "high")
TASK_STATUSES = ("open", "done", "cancelled")
TASK_SOURCES = ("manual", "followup", "contract")
CHANNELS = ("inbox", "email")
TASK_FILTERS = ("assignee", "status", "customer_id", "due_before")
UUID = {"format": "uuid"}


class TaskWritable(Schema):
    title = fields.String(validate=validate.Length(min=1, max=200))
    description = fields.String(allow_none=True, validate=validate.Length(max=10000))
    assignee_id = fields.String(metadata={**UUID, "description": "Default: the caller. Managers give tasks to "
                                                                "their team, admins to anyone"})
    customer_id = fields.String(allow_none=True, metadata=UUID)
    opportunity_id = fields.String(allow_none=True, metadata=UUID)
    contract_id = fields.String(allow_none=True, metadata=UUID)
    due_at = fields.DateTime(allow_none=True, metadata={"description": "UTC when no offset is given"})
    remind_at = fields.DateTime(allow_none=True, metadata={
        "description": "Not after due_at. The assignee is reminded then, on their chosen channels"})
    priority = fields.String(validate=validate.OneOf(TASK_PRIORITIES), metadata={"description": "Default normal"})


class TaskCreateRequest(TaskWritable):
    title = fields.String(required=True, validate=validate.Length(min=1, max=200))


class TaskUpdateRequest(TaskWritable):
    """Every field optional, at least one; only while the task is open."""


class TaskListQuery(PageQuery):
    assignee = fields.String(metadata={"description": "`me` or a user id"})
    status = fields.String(validate=validate.OneOf(TASK_STATUSES))
    customer_id = fields.String(metadata=UUID)
    due_before = fields.DateTime(metadata={"description": "Tasks due before this time"})


class TaskResponse(Schema):
    id = fields.String(required=True, metadata=UUID)
    title = fields.String()
    description = fields.String(allow_none=True)
    assignee_id = fields.String(metadata=UUID)
    assignee_team_id = fields.String(allow_none=True)
    customer_id = fields.String(allow_none=True, metadata=UUID)
    opportunity_id = fields.String(allow_none=True, metadata=UUID)
    contract_id = fields.String(allow_none=True, metadata=UUID)
    due_at = fields.DateTime(allow_none=True)
    remind_at = fields.DateTime(allow_none=True)
    priority = fields.String(validate=validate.OneOf(TASK_PRIORITIES))
    status = fields.String(validate=validate.OneOf(TASK_STATUSES))
    source = fields.String(validate=validate.OneOf(TASK_SOURCES), metadata={
        "description": "manual, or made by an event: followup (a follow-up's next date), contract (ending soon)"})
    source_ref = fields.String(allow_none=True, metadata={
        "description": "The follow-up id, or `<contract id>:<days_left>`"})
    reminded_at = fields.DateTime(allow_none=True)
    completed_at = fields.DateTime(allow_none=True)
    created_by = fields.String(allow_none=True, metadata=UUID)
    created_at = fields.DateTime()
    updated_at = fields.DateTime()
    version = fields.Integer()


class TaskPage(Schema):
    items = fields.List(fields.Nested(TaskResponse), required=True)
    next_cursor = fields.String(allow_none=True, required=True)


# --- the inbox -------------------------------------------------------------------

class UnreadCountResponse(Schema):
    unread = fields.Integer(required=True)


class ReadAllResponse(Schema):
    marked = fields.Integer(required=True, metadata={"description": "How many were unread"})


# --- preferences -----------------------------------------------------------------

CHANNEL_LIST = {"description": f"Some of {', '.join(CHANNELS)}; inbox is always one of them",
                "example": ["inbox", "email"]}


class QuietHoursSchema(Schema):
    start = fields.String(required=True, metadata={"example": "22:00", "description": "HH:MM, 24-hour"})
    end = fields.String(required=True, metadata={"example": "07:00"})
    timezone = fields.String(required=True, metadata={"example": "Asia/Shanghai", "description": "An IANA zone"})


class PreferencesRequest(Schema):
    channels = fields.Dict(keys=fields.String(), values=fields.List(fields.String(validate=validate.OneOf(CHANNELS))),
                           metadata={"description": "Notification type → channels; types left out get the defaults",
                                     "example": {"task.reminder": ["inbox", "email"]}})
    quiet_hours = fields.Nested(QuietHoursSchema, allow_none=True, metadata={
        "description": "Email waits for the end of these hours; the inbox is never quiet. null: none"})


class PreferencesResponse(Schema):
    channels = fields.Dict(keys=fields.String(), values=fields.List(fields.String()),
                           metadata={"description": "What applies now: the defaults overlaid with your choices"})
    quiet_hours = fields.Nested(QuietHoursSchema, allow_none=True)
    defaults = fields.Dict(keys=fields.String(), values=fields.List(fields.String()),
                           metadata={"description": "Types not listed go to the inbox only"})
