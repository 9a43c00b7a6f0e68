"""The gateway's routes for tasks, the inbox's actions and notification preferences (the notifications service).

A mixin of GatewayService: the routes here use its dependencies
(``self.notifications``, ``self.context``, ``self._users()``, ``self._once``).
The notifications service validates input and applies who-sees-what; the
gateway adds what only it knows: the assignee's team (it owns the users).
"""
from crm_common.errors import ValidationFailed

from gateway import idempotency
from gateway.permissions import rule
from gateway.http import API_PREFIX, Reply, api, etag, if_match_version, if_none_match_version, page_arguments
from gateway.schemas import NotificationResponse
from gateway.task_schemas import (
    TASK_FILTERS, PreferencesRequest, PreferencesResponse, ReadAllResponse, TaskCreateRequest, TaskListQuery,
    TaskPage, TaskResponse, TaskUpdateRequest, UnreadCountResponse,
)

TAGS = ("tasks",)
INBOX_TAGS = ("notifications",)


def _with_etag(task):
    return Reply(task, headers={"ETag": etag(task["version"])})


class TaskRoutes:

    def _assignee_team(self, body):
        """The team of the user a task is given to (the caller's own from the token)."""
        assignee_id = body.get("assignee_id") if isinstance(body, dict) else None
        if assignee_id is None or assignee_id == self.context.user_id:
            return self.context.team_id
        user = self._users().find(assignee_id)
        if user is None:
            raise ValidationFailed("The assignee is not a user of this CRM.", {"assignee_id": ["Unknown user."]})
        return user.team_id

    @api("POST", "/tasks", allow=rule("tasks", "create"), body=TaskCreateRequest, response=TaskResponse, status=201,
         headers=(idempotency.HEADER,), tags=TAGS, summary="Create a task",
         description="For the caller unless assignee_id names someone else (managers: their team; admins: anyone).")
    def create_task(self, request, body):
        def create():
            task = self.notifications.create_task(body, self._assignee_team(body))
            return Reply(task, headers={"Location": f"{API_PREFIX}/tasks/{task['id']}", "ETag": etag(task["version"])})
        return self._once(request, body, create)

    @api("GET", "/tasks", allow=rule("tasks", "read"), query=TaskListQuery, response=TaskPage, tags=TAGS,
         summary="The tasks the caller may see, soonest due first",
         description="Sales users see the tasks given to them, managers their team's, admins all.")
    def list_tasks(self, request):
        limit, cursor = page_arguments(request)
        filters = {name: request.args[name] for name in TASK_FILTERS if name in request.args}
        return self.notifications.list_tasks(filters, limit, cursor)

    @api("GET", "/tasks/<task_id>", allow=rule("tasks", "read"), response=TaskResponse, headers=("If-None-Match",),
         tags=TAGS, summary="One task")
    def get_task(self, request, task_id):
        task = self.notifications.get_task(task_id)
        if if_none_match_version(request) == task["version"]:
            return Reply(status=304, headers={"ETag": etag(task["version"])})
        return _with_etag(task)

    @api("PATCH", "/tasks/<task_id>", allow=rule("tasks", "update"), body=TaskUpdateRequest, response=TaskResponse,
         headers=("If-Match",), tags=TAGS, summary="Change some fields of an open task",
         description="A new remind_at sets a new reminder, also when the old one was sent.")
    def update_task(self, request, task_id, body):
        team = self._assignee_team(body) if isinstance(body, dict) and "assignee_id" in body else None
        return _with_etag(self.notifications.update_task(task_id, body, if_match_version(request), team))

    @api("POST", "/tasks/<task_id>/complete", allow=rule("tasks", "complete"), response=TaskResponse, tags=TAGS,
         summary="Mark an open task done")
    def complete_task(self, request, task_id):
        return _with_etag(self.notifications.complete_task(task_id))

    @api("POST", "/tasks/<task_id>/cancel", allow=rule("tasks", "cancel"), response=TaskResponse, tags=TAGS,
         summary="Cancel an open task")
    def cancel_task(self, request, task_id):
        return _with_etag(self.notifications.cancel_task(task_id))

    # --- the inbox ---------------------------------------------------------------

    @api("POST", "/notifications/<notification_id>/read", allow=rule("notifications", "update"),
         response=NotificationResponse, tags=INBOX_TAGS, summary="Mark one of the caller's notifications read")
    def read_notification(self, request, notification_id):
        return self.notifications.mark_read(notification_id)

    @api("POST", "/notifications/read-all", allow=rule("notifications", "update"), response=ReadAllResponse,
         tags=INBOX_TAGS, summary="Mark every notification of the caller read")
    def read_all_notifications(self, request):
        return self.notifications.mark_all_read()

    @api("GET", "/notifications/unread-count", allow=rule("notifications", "read"), response=UnreadCountResponse,
         tags=INBOX_TAGS, summary="How many of the caller's notifications are unread (the badge)")
    def unread_notifications(self, request):
        return {"unread": self.notifications.unread_count()}

    # --- preferences -------------------------------------------------------------

    @api("GET", "/me/notification-preferences", allow=rule("notifications", "read"), response=PreferencesResponse,
         tags=INBOX_TAGS, summary="The caller's channels per notification type, and quiet hours")
    def get_notification_preferences(self, request):
        return self.notifications.get_preferences()

    @api("PUT", "/me/notification-preferences", allow=rule("notifications", "update"), body=PreferencesRequest,
         response=PreferencesResponse, tags=INBOX_TAGS, summary="Replace the caller's notification preferences",
         description="The inbox cannot be turned off; quiet hours are HH:MM in an IANA time zone and may run "
                     "over midnight.")
    def put_notification_preferences(self, request, body):
        return self.notifications.put_preferences(body)
