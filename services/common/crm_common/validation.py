"""Loading input through a marshmallow schema, failing with field-level errors."""
from functools import lru_cache

from marshmallow import RAISE, Schema, ValidationError, pre_load, validates_schema

from crm_common.errors import ValidationFailed


@lru_cache(maxsize=None)
def _shared_instance(schema_class):
    return schema_class()


def load(schema, data, **kwargs):
    """Validated data, or ValidationFailed naming each bad field (422 at the gateway).

    ``schema`` is a schema instance or class; a class is instantiated once and
    reused (loading keeps no state on the schema), because building a schema
    with nested fields costs more than loading a record with it.
    """
    if isinstance(schema, type):
        schema = _shared_instance(schema)
    if not isinstance(data, dict):
        raise ValidationFailed("The body must be a JSON object.", {"_schema": ["Must be a JSON object."]})
    try:
        return schema.load(data, **kwargs)
    except ValidationError as error:
        messages = error.messages if isinstance(error.messages, dict) else {"_schema": error.messages}
        raise ValidationFailed("The input is not valid.", messages)


class StrictSchema(Schema):
    """Unknown fields are refused (a typo must not be silently dropped); surrounding spaces
    never matter, and an all-blank text is no text (None)."""

    class Meta:
        unknown = RAISE

    @pre_load
    def _trim_strings(self, data, **kwargs):
        if not isinstance(data, dict):
            return data
        return {key: (value.strip() or None) if isinstance(value, str) else value for key, value in data.items()}


class PatchSchema(StrictSchema):
    """A PATCH body: every field optional, at least one given."""

    @validates_schema
    def _not_empty(self, data, **kwargs):
        if not data:
            raise ValidationError({"_schema": ["Give at least one field to change."]})
