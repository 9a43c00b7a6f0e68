"""The recipients directory: whom notifications can reach, and how, kept from the gateway's user events.

The gateway owns users and publishes user.created / user.updated with the
whole user (the fields below) and its version. The newest version wins
whatever order the events arrive in (crm_common.readmodel), so a late
user.created never undoes a user.updated.

Plain Python over a SQLAlchemy session; nothing here knows about nameko.
"""
from marshmallow import EXCLUDE, Schema, fields, validate

from crm_common.consumer import first_delivery
from crm_common.readmodel import upsert_if_newer
from crm_common.validation import load

from notifications.models import Recipient
from notifications.templates import CHINESE, ENGLISH

USER_CREATED = "user.created"
USER_UPDATED = "user.updated"


class UserEvent(Schema):
    """The data of user.created / user.updated; the role is the gateway's business, not ours."""

    class Meta:
        unknown = EXCLUDE

    id = fields.String(required=True, validate=validate.Length(min=1, max=36))
    email = fields.String(allow_none=True, load_default=None, validate=validate.Length(max=254))
    name = fields.String(allow_none=True, load_default=None, validate=validate.Length(max=200))
    # A language we have no templates in is kept as English rather than refusing the whole user.
    language = fields.String(allow_none=True, load_default=ENGLISH)
    team_id = fields.String(allow_none=True, load_default=None, validate=validate.Length(max=64))
    active = fields.Boolean(load_default=True)
    version = fields.Integer(required=True, validate=validate.Range(min=1))


def apply_user_event(session, envelope):
    """Bring the recipient of a user event up to date; True when it changed (False: older, or seen before)."""
    data = load(UserEvent, envelope.get("data"))
    if not first_delivery(session, envelope):
        return False
    user_id = data.pop("id")
    if data["language"] not in (ENGLISH, CHINESE):
        data["language"] = ENGLISH
    return upsert_if_newer(session, Recipient, Recipient.user_id, user_id, data)
