"""Which of the sales service's records the audit trail follows (crm_common.audit).

Creates, updates and deletes of these models are audited on flush. Left out:
the customer replica (customers audits the customers), stage and status
change logs and quote/order lines (each is part of a change its parent's
entry already records: totals, stage, status).
"""
from crm_common.audit import audit_model

from sales.models import (
    Contract, ContractAttachment, Opportunity, Order, Payment, Pipeline, PipelineStage, PriceList,
    PriceListCustomer, PriceListItem, Product, Quote,
)

PRODUCER = "sales"
# Free text may hold personal data; a payment reference may be an account number.
FREE_TEXT = ("notes", "reference")

for model, entity_type, options in (
    (Product, "product", {}),
    (PriceList, "price_list", {}),
    (PriceListItem, "price_list_item", {}),
    (PriceListCustomer, "price_list_customer", {"id_attr": "customer_id"}),
    (Pipeline, "pipeline", {}),
    (PipelineStage, "pipeline_stage", {}),
    (Opportunity, "opportunity", {}),
    (Quote, "quote", {}),
    (Order, "order", {}),
    (Payment, "payment", {}),
    (Contract, "contract", {}),
    (ContractAttachment, "contract_attachment", {}),
):
    audit_model(model, entity_type, PRODUCER, pii_fields=FREE_TEXT, **options)
