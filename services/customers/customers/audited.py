"""Which of the customers service's records the audit trail follows (crm_common.audit).

Creates, updates and deletes of these models are audited on flush, with
personal data masked. Derived tables (history, tags, identifiers, import jobs'
held events) are left out: what they record is already said by the entries of
the records they derive from. Merges, exports and import jobs get explicit
entries (customers.domain, .exports, .imports).
"""
from crm_common.audit import DEFAULT_IGNORED, audit_model

from customers.domain import PRODUCER
from customers.models import Contact, Customer, CustomFieldDefinition, Followup, SavedView

# Personal data: masked in the trail wherever it appears (also nested, as in contact.phones).
# Free text (notes, summaries) may hold anything, so it is masked too.
# The company details of a person (its name, website) and custom fields may identify them too:
# the trail keeps no readable copy after the person's data is erased (customers.personal_data).
CUSTOMER_PII = ("name", "contact", "phones", "emails", "address", "notes", "company", "custom_fields")
CONTACT_PII = ("name", "phones", "emails", "notes")
FOLLOWUP_PII = ("summary", "outcome")

audit_model(Customer, "customer", PRODUCER, pii_fields=CUSTOMER_PII, ignored_fields=DEFAULT_IGNORED + (
    # Kept in step with other fields, or by follow-ups: they say nothing a reader needs.
    "search_text", "dedupe_key", "next_followup_at", "lifecycle_dates", "lifecycle_changed_at"))
audit_model(Contact, "contact", PRODUCER, pii_fields=CONTACT_PII)
audit_model(Followup, "followup", PRODUCER, pii_fields=FOLLOWUP_PII,
            ignored_fields=DEFAULT_IGNORED + ("closed_at", "closed_by_followup_id"))
audit_model(CustomFieldDefinition, "custom_field", PRODUCER, id_attr="key")
audit_model(SavedView, "saved_view", PRODUCER)
