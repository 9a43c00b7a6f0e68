"""The customers service's business counters (ARCHITECTURE.md section 6: no ids or emails in labels).

Each is incremented with crm_common.metrics.count_after_commit where the fact
happens, so it moves only when the transaction that made the fact commits.
"""
from prometheus_client import Counter

CUSTOMERS_CREATED = Counter(
    "crm_customers_created_total", "Customers created one by one (imports: crm_customers_imported_total)",
    ["kind"])  # person | company
CUSTOMERS_IMPORTED = Counter("crm_customers_imported_total", "Customers created by imports")
FOLLOWUPS_LOGGED = Counter("crm_followups_logged_total", "Follow-ups logged", ["type"])  # call | meeting | ...
