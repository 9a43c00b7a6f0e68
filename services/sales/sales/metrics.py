"""The sales service's business counters (ARCHITECTURE.md section 6: no ids or emails in labels).

Each is incremented with crm_common.metrics.count_after_commit where the fact
happens, so it moves only when the transaction that made the fact commits.
Currency labels are ISO 4217 codes the catalogue accepts: a small, closed set.
"""
from prometheus_client import Counter

OPPORTUNITIES_CREATED = Counter("crm_opportunities_created_total", "Opportunities created")
OPPORTUNITY_STAGE_CHANGES = Counter(
    "crm_opportunity_stage_changes_total", "Opportunities moved to another stage, by the outcome of the stage",
    ["outcome"])  # open | won | lost
ORDERS_PLACED = Counter("crm_orders_placed_total", "Orders placed (confirmed)", ["currency"])
ORDER_REVENUE = Counter("crm_order_revenue_total", "Sum of the totals of placed orders, in currency units",
                        ["currency"])
PAYMENTS_RECEIVED = Counter("crm_payments_received_total", "Payments recorded", ["currency"])
PAYMENT_AMOUNT = Counter("crm_payment_amount_total", "Sum of the payments recorded, in currency units", ["currency"])
CONTRACTS_SIGNED = Counter("crm_contracts_signed_total", "Contracts signed")
