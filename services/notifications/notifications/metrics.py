"""The notifications service's business counters (ARCHITECTURE.md section 6: no ids or emails in labels).

Each is incremented with crm_common.metrics.count_after_commit where the fact
happens, so it moves only when the transaction that recorded it commits.
"""
from prometheus_client import Counter

NOTIFICATIONS_SENT = Counter(
    "crm_notifications_sent_total",
    "Notification deliveries by channel (inbox, email) and outcome (sent, skipped, retrying, failed)",
    ["channel", "outcome"])
WEBHOOK_DELIVERIES = Counter(
    "crm_webhook_deliveries_total", "Webhook delivery attempts by outcome (succeeded, retrying, failed)",
    ["outcome"])
REMINDERS_SENT = Counter("crm_reminders_sent_total", "Task reminders sent")
