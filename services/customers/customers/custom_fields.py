"""Admin-defined custom fields, and the check of a customer's ``custom_fields`` against them.

Teams need fields we did not foresee ("contract number at the customer",
"preferred language"). Admins define them; every value written is checked
against its definition, so reports and exports can rely on the types.
"""
from datetime import date

from sqlalchemy import select

from crm_common.errors import Conflict, Forbidden, ValidationFailed
from crm_common.validation import load

from customers.models import CustomFieldDefinition
from customers.schemas import CustomFieldDefinitionIn, CustomFieldDefinitionOut

MAX_TEXT_LENGTH = 1000
# session.info key of the definitions a session has read (dropped when one is defined).
DEFINITIONS_CACHE = "customers.custom_field_definitions"

definition_out = CustomFieldDefinitionOut()


def _text(value, definition):
    if not isinstance(value, str) or len(value) > MAX_TEXT_LENGTH:
        raise ValueError(f"Must be text of at most {MAX_TEXT_LENGTH} characters.")
    return value


def _number(value, definition):
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError("Must be a number.")
    return value


def _boolean(value, definition):
    if not isinstance(value, bool):
        raise ValueError("Must be true or false.")
    return value


def _date(value, definition):
    try:
        return date.fromisoformat(value).isoformat()
    except (TypeError, ValueError):
        raise ValueError("Must be a date written YYYY-MM-DD.")


def _choice(value, definition):
    if value not in definition.choices:
        raise ValueError(f"Must be one of: {', '.join(definition.choices)}.")
    return value


CHECKS = {"text": _text, "number": _number, "boolean": _boolean, "date": _date, "choice": _choice}


class CustomFieldCatalogue:
    def __init__(self, session, context):
        self.session = session
        self.context = context

    def list(self):
        rows = self.session.execute(select(CustomFieldDefinition).order_by(CustomFieldDefinition.key)).scalars()
        return {"items": [definition_out.dump(row) for row in rows]}

    def define(self, data):
        if not self.context.is_admin:
            raise Forbidden("Only admins define custom fields.")
        data = load(CustomFieldDefinitionIn, data)
        if self.session.get(CustomFieldDefinition, data["key"]) is not None:
            raise Conflict(f"A custom field with key {data['key']!r} exists already.")
        definition = CustomFieldDefinition(**data, created_by=self.context.user_id)
        self.session.add(definition)
        self.session.flush()
        self.session.info.pop(DEFINITIONS_CACHE, None)
        return definition_out.dump(definition)

    def definitions(self):
        """{key: definition}, read once per session: an import checks thousands of rows in one
        transaction, and a query per row would be most of its time."""
        cached = self.session.info.get(DEFINITIONS_CACHE)
        if cached is None:
            cached = self.session.info[DEFINITIONS_CACHE] = {
                row.key: row for row in self.session.execute(select(CustomFieldDefinition)).scalars()}
        return cached

    def check(self, values):
        """``values`` cleaned against the definitions, or ValidationFailed naming each bad key."""
        definitions = self.definitions()
        errors, cleaned = {}, {}
        for key, value in values.items():
            definition = definitions.get(key)
            if definition is None:
                errors[f"custom_fields.{key}"] = ["There is no custom field with this key."]
                continue
            try:
                cleaned[key] = CHECKS[definition.type](value, definition)
            except ValueError as error:
                errors[f"custom_fields.{key}"] = [str(error)]
        for key, definition in definitions.items():
            if definition.required and cleaned.get(key) in (None, "") and f"custom_fields.{key}" not in errors:
                errors[f"custom_fields.{key}"] = [f"{definition.label} is required."]
        if errors:
            raise ValidationFailed("Some custom fields are not valid.", errors)
        return cleaned
