"""The notifications service's entrypoints: thin wrappers over notifications.domain."""
from crm_common.entrypoints import rpc
from nameko.timer import timer
from crm_common.config import env

from crm_common.consumer import event_handler
from eventlet import GreenPool
from crm_common.db import make_session_factory
from notifications.models import Base
from notifications import audited  # noqa: F401 (registers the audited models)
from notifications import webhooks
from crm_common.context import Context
from crm_common.db import Database
from crm_common.metrics import Metrics
from crm_common.rpc import BoundedRpcProxy
from crm_common.ops import OpsEndpoints

from notifications.domain import Inbox, notify_customer_assigned, notify_customers_imported
from notifications import email  # noqa: F401 (registers the email channel in dispatch.channels)
from notifications.recipients import apply_user_event
from notifications.dispatch import deliver_due
from notifications.preferences import Preferences
from notifications import personal_data
from notifications.reminders import new_instance_id, send_due_reminders
from notifications.tasks import Tasks, contract_expiry_alert, followup_reminder_task


class NotificationsService(OpsEndpoints):
    name = "notifications"

    db = Database(migrations="notifications.migrations", metadata=Base.metadata)
    context = Context()
    metrics = Metrics()
    # Asked whether the caller may see a record a task names (the owners decide, with the caller's context).
    customers = BoundedRpcProxy("customers")
    sales = BoundedRpcProxy("sales")

    @event_handler("customers", "customer.assigned")
    def on_customer_assigned(self, envelope):
        notify_customer_assigned(self.db, envelope)

    @event_handler("customers", "customer.imported")
    def on_customers_imported(self, envelope):
        notify_customers_imported(self.db, envelope)

    # --- personal data rights (notifications.personal_data) -----------------

    @event_handler("customers", "customer.erased")
    def on_customer_erased(self, envelope):
        personal_data.scrub_customer(self.db, envelope)

    @rpc
    def export_personal_data(self, customer_id):
        return personal_data.personal_data(self.db, self.context, customer_id)

    @rpc
    def list_notifications(self, limit=None, cursor=None):
        return Inbox(self.db, self.context).list(limit, cursor)

    @rpc
    def unread_count(self):
        return Inbox(self.db, self.context).unread_count()

    @rpc
    def mark_read(self, notification_id):
        return Inbox(self.db, self.context).mark_read(notification_id)

    # --- tasks, reminders, inbox, preferences (notifications.tasks, .reminders, .dispatch, .preferences) ---

    # Names this process in reminder claims: two instances never send one reminder twice.
    instance_id = new_instance_id()

    @event_handler("customers", "followup.logged")
    def on_followup_logged(self, envelope):
        followup_reminder_task(self.db, envelope)

    @event_handler("sales", "contract.expiring")
    def on_contract_expiring(self, envelope):
        contract_expiry_alert(self.db, envelope)

    def _tasks(self):
        return Tasks(self.db, self.context, self._require_visible)

    def _require_visible(self, kind, record_id):
        """NotFound unless the caller may see the record: its own service answers, as for the caller."""
        get = {"customer": self.customers.get_customer, "opportunity": self.sales.get_opportunity,
               "contract": self.sales.get_contract}[kind]
        get(record_id)

    @rpc
    def create_task(self, data, assignee_team_id=None):
        return self._tasks().create(data, assignee_team_id)

    @rpc
    def list_tasks(self, filters=None, limit=None, cursor=None):
        return self._tasks().list(filters, limit, cursor)

    @rpc
    def get_task(self, task_id):
        return self._tasks().get(task_id)

    @rpc
    def update_task(self, task_id, changes, expected_version=None, assignee_team_id=None):
        return self._tasks().update(task_id, changes, expected_version, assignee_team_id)

    @rpc
    def complete_task(self, task_id):
        return self._tasks().complete(task_id)

    @rpc
    def cancel_task(self, task_id):
        return self._tasks().cancel(task_id)

    @rpc
    def mark_all_read(self):
        return Inbox(self.db, self.context).mark_all_read()

    @rpc
    def get_preferences(self):
        return Preferences(self.db, self.context).get()

    @rpc
    def put_preferences(self, data):
        return Preferences(self.db, self.context).put(data)

    # Every instance scans; claims make each reminder and each delivery go out once.
    @timer(interval=env("CRM_REMINDER_SCAN_SECONDS", 5.0, float))
    def send_reminders_and_deliveries(self):
        send_due_reminders(self.db, self.instance_id)
        deliver_due(self.db)

    # --- email and recipients (notifications.email, .recipients) --------

    @event_handler("gateway", "user.created")
    def on_user_created(self, envelope):
        apply_user_event(self.db, envelope)

    @event_handler("gateway", "user.updated")
    def on_user_updated(self, envelope):
        apply_user_event(self.db, envelope)

    # --- webhooks (notifications.webhooks) --------------------------------

    # One catch-all consumer per producer: every event it publishes may be wanted by some webhook.
    @event_handler("customers", "#")
    def on_customers_event_for_webhooks(self, envelope):
        webhooks.queue_deliveries(self.db, envelope)

    @event_handler("sales", "#")
    def on_sales_event_for_webhooks(self, envelope):
        webhooks.queue_deliveries(self.db, envelope)

    @timer(interval=env("CRM_WEBHOOK_SCAN_SECONDS", 2.0, float))
    def deliver_webhooks(self):
        # Claims, POSTs and outcomes each commit in sessions of their own (no
        # transaction stays open during a POST); POSTs run side by side.
        webhooks.deliver_due(make_session_factory(self.db.get_bind()),
                             pool_map=GreenPool(webhooks.CONCURRENCY).imap)

    def _webhooks(self):
        return webhooks.Webhooks(self.db, self.context)

    @rpc
    def create_webhook(self, data):
        return self._webhooks().create(data)

    @rpc
    def list_webhooks(self, limit=None, cursor=None):
        return self._webhooks().list(limit, cursor)

    @rpc
    def get_webhook(self, webhook_id):
        return self._webhooks().get(webhook_id)

    @rpc
    def update_webhook(self, webhook_id, changes, expected_version=None):
        return self._webhooks().update(webhook_id, changes, expected_version)

    @rpc
    def delete_webhook(self, webhook_id):
        self._webhooks().delete(webhook_id)

    @rpc
    def list_webhook_deliveries(self, webhook_id, limit=None, cursor=None):
        return self._webhooks().deliveries(webhook_id, limit, cursor)

    @rpc
    def redeliver_webhook_delivery(self, webhook_id, delivery_id):
        return self._webhooks().redeliver(webhook_id, delivery_id)
