"""The gateway's routes that change users: the signed-in user's own profile, and an admin's edit.

A mixin of GatewayService: the routes use its dependencies (``self.context``,
``self._users()``). The gateway owns users, so the work is gateway.users';
each change is published (user.updated) for the services that keep a copy.
"""
from gateway import users
from gateway.permissions import rule
from gateway.http import Reply, api, etag, if_match_version
from gateway.schemas import UserResponse
from gateway.user_schemas import PasswordChangeRequest, ProfileUpdateRequest, UserUpdateRequest

TAGS = ("users",)


def _with_etag(user):
    return Reply(users.to_dict(user), headers={"ETag": etag(user.version)})


class UserRoutes:

    @api("PATCH", "/me", allow=rule("own account", "update"), body=ProfileUpdateRequest, response=UserResponse,
         headers=("If-Match",), tags=("auth",), summary="Change your own name or language",
         description="The language is the one the CRM writes to you in (emails): en or zh-CN.")
    def update_me(self, request, body):
        return _with_etag(self._users().update_profile(self.context.user_id, body, if_match_version(request)))

    @api("POST", "/me/password", allow=rule("own account", "update"), body=PasswordChangeRequest, status=204,
         tags=("auth",), summary="Change your own password",
         description="current_password must be right (422 naming it otherwise; a wrong one counts as a "
                     "failed sign-in, so repeated misses lock the account like failed sign-ins do: 429). "
                     "new_password: at least 12 characters, not a common password, not your email (422 "
                     "naming it, with the reason). Every other session of yours is signed out; this one "
                     "stays.")
    def change_my_password(self, request, body):
        caller = self._caller_session(request)
        self._users().change_password(caller.user_id, body, self._sign_in(), caller.session_id,
                                      self._client_address(request))
        return Reply(status=204)

    @api("PATCH", "/users/<user_id>", allow=rule("users", "update"), body=UserUpdateRequest, response=UserResponse,
         headers=("If-Match",), tags=TAGS, summary="Change a user's name, role, team, language or status",
         description="An inactive user can no longer sign in and gets no email. The last active admin "
                     "can neither lose the role nor be deactivated (409).")
    def update_user(self, request, user_id, body):
        return _with_etag(self._users().update(user_id, body, if_match_version(request)))
