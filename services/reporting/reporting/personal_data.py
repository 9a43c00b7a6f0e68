"""A person's data rights in reporting: no name left in the read models after an erasure.

Reporting keeps a customer's name (customer_facts) and its contracts' titles
(contract_facts), which may name the person. The customer.updated snapshot the
erasure publishes renames customer_facts by the usual version rule; applying
customer.erased renames it too (in case it arrives first) and scrubs contract
titles, which sales scrubs without a contract event of its own. Amounts,
dates, owners and statuses stay: the reports keep adding up.

Plain Python over a SQLAlchemy session; nothing here knows about nameko.
"""
from marshmallow import EXCLUDE, Schema, fields, validate
from sqlalchemy import update

from crm_common.consumer import first_delivery
from crm_common.validation import load

from reporting.models import ContractFact, CustomerFact

ERASED_TEXT = "[erased]"
ERASED_NAME = "Erased customer"


class CustomerErased(Schema):
    class Meta:
        unknown = EXCLUDE

    customer_id = fields.String(required=True, validate=validate.Length(min=1, max=36))
    name = fields.String(load_default=None, validate=validate.Length(max=200))


def apply_erased(session, envelope):
    """Apply customer.erased once; False for a redelivery."""
    data = load(CustomerErased, envelope.get("data"))
    if not first_delivery(session, envelope):
        return False
    customer_id = data["customer_id"]
    session.execute(update(CustomerFact).where(CustomerFact.customer_id == customer_id)
                    .values(name=data["name"] or ERASED_NAME).execution_options(synchronize_session=False))
    session.execute(update(ContractFact).where(ContractFact.customer_id == customer_id, ContractFact.title.is_not(None))
                    .values(title=ERASED_TEXT).execution_options(synchronize_session=False))
    return True
