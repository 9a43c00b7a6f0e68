"""Request bodies of the user changes: the signed-in user's own profile, and an admin's edit of a user."""
from marshmallow import RAISE, Schema, fields, validate

from crm_common.context import ROLES
from crm_common.validation import PatchSchema

from gateway.i18n import LANGUAGES
from gateway.password_policy import MAX_LENGTH, MIN_LENGTH

LANGUAGE_DESCRIPTION = "The language of the emails the CRM sends this user"


class ProfileUpdateRequest(PatchSchema):
    """What a user may change about themselves (not their role, team or status)."""

    name = fields.String(validate=validate.Length(min=1, max=200))
    language = fields.String(validate=validate.OneOf(LANGUAGES), metadata={"description": LANGUAGE_DESCRIPTION})


class UserUpdateRequest(ProfileUpdateRequest):
    """An admin's change of a user; an inactive user can no longer sign in and gets no email."""

    role = fields.String(validate=validate.OneOf(ROLES))
    team_id = fields.String(allow_none=True, validate=validate.Length(min=1, max=64))
    active = fields.Boolean()


class PasswordChangeRequest(Schema):
    class Meta:
        unknown = RAISE

    current_password = fields.String(required=True, load_only=True,
                                      validate=validate.Length(min=1, max=MAX_LENGTH))
    new_password = fields.String(
        required=True, load_only=True, validate=validate.Length(min=MIN_LENGTH, max=MAX_LENGTH),
        metadata={"description": f"At least {MIN_LENGTH} characters; not a common password, not your email"})


class LogoutRequest(Schema):
    # No body at all is fine: the access token names the session to end.
    BODY_OPTIONAL = True

    class Meta:
        unknown = RAISE

    refresh_token = fields.String(validate=validate.Length(min=1, max=200), metadata={
        "description": "The refresh token of the session to end as well, when the client holds one"})
