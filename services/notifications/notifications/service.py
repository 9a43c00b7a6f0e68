"""The notifications service's entrypoints: thin wrappers over notifications.domain."""
from crm_common.entrypoints import rpc

from crm_common.consumer import event_handler
from crm_common.context import Context
from crm_common.db import Database
from crm_common.metrics import Metrics
from crm_common.ops import OpsEndpoints

from notifications.domain import Inbox, notify_customer_assigned, notify_customers_imported


class NotificationsService(OpsEndpoints):
    name = "notifications"

    db = Database(migrations="notifications.migrations")
    context = Context()
    metrics = Metrics()

    @event_handler("customers", "customer.assigned")
    def on_customer_assigned(self, envelope):
        notify_customer_assigned(self.db, envelope)

    @event_handler("customers", "customer.imported")
    def on_customers_imported(self, envelope):
        notify_customers_imported(self.db, envelope)

    @rpc
    def list_notifications(self, limit=None, cursor=None):
        return Inbox(self.db, self.context).list(limit, cursor)

    @rpc
    def unread_count(self):
        return Inbox(self.db, self.context).unread_count()

    @rpc
    def mark_read(self, notification_id):
        return Inbox(self.db, self.context).mark_read(notification_id)
