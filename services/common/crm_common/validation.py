"""Loading input through a marshmallow schema, failing with field-level errors."""
from marshmallow import ValidationError

from crm_common.errors import ValidationFailed


def load(schema, data, **kwargs):
    """Validated data, or ValidationFailed naming each bad field (422 at the gateway)."""
    if not isinstance(data, dict):
        raise ValidationFailed("The body must be a JSON object.", {"_schema": ["Must be a JSON object."]})
    try:
        return schema.load(data, **kwargs)
    except ValidationError as error:
        messages = error.messages if isinstance(error.messages, dict) else {"_schema": error.messages}
        raise ValidationFailed("The input is not valid.", messages)
