"""Which of the notifications service's records the audit trail follows (crm_common.audit).

Creates, updates and deletes of these models are audited on flush. Left out:
the inbox and its deliveries (what the CRM told whom, not a change anyone
made), the copy of users (the gateway audits users), webhook deliveries and
attempts (a log of their own).
"""
from crm_common.audit import DEFAULT_IGNORED, audit_model

from notifications.models import Preference, Task, Webhook

PRODUCER = "notifications"

# A task's title often names the customer ("Follow up with <name>"): masked like the description,
# so an erased customer's name is not left readable in the trail.
audit_model(Task, "task", PRODUCER, pii_fields=("title", "description"), ignored_fields=DEFAULT_IGNORED + (
    # The reminder machinery's own bookkeeping, changed by the timer, not by anyone.
    "reminder_state", "reminder_claimed_by", "reminder_claimed_at", "reminded_at"))
audit_model(Webhook, "webhook", PRODUCER, pii_fields=("secret",))
audit_model(Preference, "notification_preference", PRODUCER, id_attr="user_id")
