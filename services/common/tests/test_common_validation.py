"""crm_common.validation.load: marshmallow errors become ValidationFailed naming the fields."""
import pytest
from marshmallow import Schema, fields, validate

from crm_common.errors import ValidationFailed
from crm_common.validation import load


class AddressSchema(Schema):
    city = fields.String(required=True)


class CustomerSchema(Schema):
    name = fields.String(required=True, validate=validate.Length(min=1, max=200))
    email = fields.Email()
    address = fields.Nested(AddressSchema)


def test_valid_input_is_loaded():
    assert load(CustomerSchema(), {"name": "Acme", "email": "a@example.org"}) == \
        {"name": "Acme", "email": "a@example.org"}


def test_invalid_fields_are_named():
    with pytest.raises(ValidationFailed) as raised:
        load(CustomerSchema(), {"email": "nope", "address": {}})
    errors = raised.value.errors
    assert set(errors) == {"name", "email", "address"}
    assert errors["address"] == {"city": ["Missing data for required field."]}
    assert raised.value.status == 422


@pytest.mark.parametrize("body", [None, [], "text", 5])
def test_non_object_body_is_refused(body):
    with pytest.raises(ValidationFailed) as raised:
        load(CustomerSchema(), body)
    assert list(raised.value.errors) == ["_schema"]


def test_unknown_fields_are_refused_by_default():
    with pytest.raises(ValidationFailed) as raised:
        load(CustomerSchema(), {"name": "Acme", "is_admin": True})
    assert "is_admin" in raised.value.errors


def test_a_schema_class_is_built_once_and_reused():
    from marshmallow import Schema, fields

    built = []

    class Counting(Schema):
        name = fields.String(required=True)

        def __init__(self, *args, **kwargs):
            built.append(1)
            super().__init__(*args, **kwargs)

    assert load(Counting, {"name": "a"}) == {"name": "a"}
    assert load(Counting, {"name": "b"}) == {"name": "b"}
    assert len(built) == 1
    with pytest.raises(ValidationFailed) as caught:
        load(Counting, {})
    assert "name" in caught.value.errors
