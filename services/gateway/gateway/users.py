"""The people who use the CRM: accounts, roles, teams, and the first admin.

Plain Python over a SQLAlchemy session; nothing here knows about nameko.
"""
import logging
import os
import secrets

from sqlalchemy import exists, select
from sqlalchemy.exc import IntegrityError

from crm_common.context import RequestContext
from crm_common.errors import Conflict, NotFound, ValidationFailed
from crm_common.outbox import record_event
from crm_common.pagination import check_limit, keyset_page
from crm_common.types import utcnow
from crm_common.validation import load
from crm_common.versioning import check_version, flush_versioned

from gateway import audit_trail
from gateway.auth import PasswordHashing, SessionRevocations, write_secret_file
from gateway.models import User
from gateway.password_policy import password_problems
from gateway.schemas import UserCreateRequest, UserResponse
from gateway.user_schemas import PasswordChangeRequest, ProfileUpdateRequest, UserUpdateRequest

log = logging.getLogger(__name__)

DEFAULT_ADMIN_EMAIL = "admin@example.com"
ADMIN_PASSWORD_FILE = "admin-password"

# Other services keep their own copy of users (notifications: whom to email, in which language)
# from these events; ``version`` orders them (crm_common.readmodel).
USER_CREATED = "user.created"
USER_UPDATED = "user.updated"
EVENT_FIELDS = ("id", "email", "name", "language", "team_id", "role", "active", "version")

user_response = UserResponse()
# What a user.created audit entry shows (the email masked).
AUDITED_FIELDS = ("email", "name", "role", "team_id", "language", "active")


def to_dict(user):
    """The public form of a user (no password hash)."""
    return user_response.dump(user)


def event_data(user):
    return {field: getattr(user, field) for field in EVENT_FIELDS}


class UserDirectory:
    def __init__(self, session, passwords: PasswordHashing, context: RequestContext | None = None):
        self.session = session
        self.passwords = passwords
        # The actor of the events; work nobody asked for (the first admin) is the system's.
        self.context = context or RequestContext.system()

    def create(self, data):
        """A new user from an API body; 422 for bad input, 409 for a taken email."""
        data = load(UserCreateRequest, data)
        email = data["email"].lower()
        check_password_policy("password", data["password"], email)
        if self._find_by_email(email) is not None:
            raise _email_taken()
        now = utcnow()
        user = User(
            email=email,
            name=data["name"],
            role=data["role"],
            team_id=data["team_id"],
            language=data["language"],
            active=True,
            password_hash=self.passwords.hash(data["password"]),
            created_at=now,
            updated_at=now,
        )
        self.session.add(user)
        try:
            # Two requests racing for one email: the unique index decides.
            self.session.flush()
        except IntegrityError:
            raise _email_taken()
        self._publish(USER_CREATED, user)
        audit_trail.write_entry(self.session, self.context, "user.created", "user", user.id, changes={
            field: {"old": None, "new": audit_trail.masked_email(user.email) if field == "email"
                    else getattr(user, field)}
            for field in AUDITED_FIELDS})
        return user

    def change_password(self, user_id, data, sign_in, session_id, address=None):
        """The signed-in user sets a new password, proving the current one.

        A wrong current password counts as a failed sign-in (``sign_in``
        throttles it). Every other session of the user ends: whoever else
        held one, perhaps the reason for the change, is signed out.
        """
        data = load(PasswordChangeRequest, data)
        user = self.get(user_id)
        sign_in.check_current_password(user, data["current_password"], address)
        if data["new_password"] == data["current_password"]:
            raise ValidationFailed(SAME_PASSWORD, {"new_password": [SAME_PASSWORD]})
        check_password_policy("new_password", data["new_password"], user.email)
        user.password_hash = self.passwords.hash(data["new_password"])
        user.updated_at = utcnow()
        # No user.updated event: the password is nothing other services hold.
        flush_versioned(self.session, f"User {user_id}")
        SessionRevocations(self.session).revoke_others(user.id, session_id)
        audit_trail.write_entry(self.session, self.context, "user.password_changed", "user", user.id)
        return user

    def update_profile(self, user_id, data, expected_version=None):
        """The signed-in user changes their own name or language."""
        return self._update(user_id, load(ProfileUpdateRequest, data), expected_version)

    def update(self, user_id, data, expected_version=None):
        """An admin changes a user's name, role, team, language or status.

        The last active admin can neither lose the role nor be deactivated:
        nobody could manage users any more. A new role or team, or a
        deactivation, signs the user out everywhere: their access tokens carry
        the old role and team, and must not keep them for their remaining minutes.
        """
        changes = load(UserUpdateRequest, data)
        user = self.get(user_id)
        loses_admin = changes.get("role", user.role) != "admin" or not changes.get("active", user.active)
        if user.role == "admin" and user.active and loses_admin and not self._other_active_admin(user.id):
            raise Conflict("This is the last active admin: make another admin first.",
                           {"role" if "role" in changes else "active": ["The last active admin must stay one."]})
        before = (user.role, user.team_id, user.active)
        user = self._update(user_id, changes, expected_version)
        if (user.role, user.team_id, user.active) != before:
            SessionRevocations(self.session).revoke_others(user.id, keep_session_id=None)
        return user

    def _update(self, user_id, changes, expected_version):
        user = self.get(user_id)
        check_version(user, expected_version, f"User {user_id}")
        changed = {field: value for field, value in changes.items() if getattr(user, field) != value}
        if not changed:
            return user  # nothing new: no version, no event
        before = {field: getattr(user, field) for field in changed}
        for field, value in changed.items():
            setattr(user, field, value)
        user.updated_at = utcnow()
        flush_versioned(self.session, f"User {user_id}")
        self._publish(USER_UPDATED, user)
        self._audit_update(user, {field: {"old": before[field], "new": value} for field, value in changed.items()})
        return user

    def _audit_update(self, user, diff):
        """A role change, a team change and a deactivation (or reactivation) are entries of their
        own, so that GET /audit?action=user.role_changed finds them; other fields are user.updated."""
        for field, action in (("role", "user.role_changed"), ("team_id", "user.team_changed")):
            if field in diff:
                audit_trail.write_entry(self.session, self.context, action, "user", user.id,
                                        changes={field: diff.pop(field)})
        if "active" in diff:
            change = diff.pop("active")
            action = "user.reactivated" if change["new"] else "user.deactivated"
            audit_trail.write_entry(self.session, self.context, action, "user", user.id, changes={"active": change})
        if diff:
            audit_trail.write_entry(self.session, self.context, "user.updated", "user", user.id, changes=diff)

    def _publish(self, event_type, user):
        record_event(self.session, "gateway", event_type, event_data(user), self.context)

    def _other_active_admin(self, user_id):
        return self.session.execute(select(exists().where(
            User.role == "admin", User.active.is_(True), User.id != user_id))).scalar()

    def get(self, user_id):
        user = self.find(user_id)
        if user is None:
            raise NotFound(f"User {user_id} was not found.")
        return user

    def find(self, user_id):
        if not isinstance(user_id, str):
            return None
        return self.session.get(User, user_id)

    def list(self, limit=None, cursor=None):
        """One page of users, oldest first: {"items": [User], "next_cursor": str | None}."""
        rows, next_cursor = keyset_page(self.session, select(User), User.created_at, User.id,
                                        descending=False, limit=check_limit(limit), cursor=cursor)
        return {"items": rows, "next_cursor": next_cursor}

    def teams_by_user(self):
        """{user_id: team_id} of every user: the owners a bulk import may name, and their teams."""
        return dict(self.session.execute(select(User.id, User.team_id)).all())

    def has_admin(self):
        return self.session.execute(select(exists().where(User.role == "admin"))).scalar()

    def team_of_owner(self, owner_id, caller_id, caller_team_id):
        """The team a new customer belongs to: its owner's.

        With no owner given, or the caller as owner, that is the caller's team
        (from the token); another owner must be an existing user.
        """
        if owner_id is None or owner_id == caller_id:
            return caller_team_id
        owner = self.find(owner_id)
        if owner is None:
            raise ValidationFailed("The owner is not a user of this CRM.", {"owner_id": ["Unknown user."]})
        if owner.role not in OWNER_ROLES:
            raise ValidationFailed("Customers are owned by sales people, managers or admins.",
                                   {"owner_id": [f"A {owner.role} user cannot own customers."]})
        return owner.team_id

    def _find_by_email(self, email):
        return self.session.execute(select(User).where(User.email == email)).scalar_one_or_none()


# Roles that can own (and so work) customers.
OWNER_ROLES = ("admin", "manager", "sales")


SAME_PASSWORD = "The new password must differ from the current one."


def check_password_policy(field, password, email):
    """ValidationFailed naming ``field`` with the reasons, when the password policy refuses ``password``."""
    problems = password_problems(password, email)
    if problems:
        raise ValidationFailed("The password is too weak.", {field: problems})


def _email_taken():
    return Conflict("A user with this email already exists.", {"email": ["Already in use."]})


def ensure_first_admin(session, passwords, email=DEFAULT_ADMIN_EMAIL, password=None, password_file=None):
    """Create the first admin when there is no admin yet; returns it, or None.

    Runs once at start, outside any request, so it commits its own work. Without
    a given password one is generated and written to ``password_file`` (mode
    0600) *before* the commit: an admin never exists whose password nobody can
    read. When another instance wins the race, its file and user stand.
    """
    directory = UserDirectory(session, passwords)
    if directory.has_admin():
        return None
    generated = password is None
    if generated:
        password = secrets.token_urlsafe(18)
    try:
        user = directory.create({"email": email, "name": "Administrator", "role": "admin", "password": password})
    except Conflict:
        session.rollback()
        if directory.has_admin():
            return None  # another instance created it meanwhile
        log.error("no admin exists and %s belongs to a non-admin user: create an admin by hand", email)
        return None
    except ValidationFailed as error:
        raise ValueError(f"cannot create the first admin from CRM_ADMIN_EMAIL/CRM_ADMIN_PASSWORD: {error.errors}")
    pending_file = None
    if generated:
        pending_file = f"{password_file}.{user.id}"
        write_secret_file(pending_file, password)
    try:
        session.commit()
    except IntegrityError:
        # Another instance created the admin at the same moment.
        session.rollback()
        if pending_file:
            os.unlink(pending_file)
        return None
    if pending_file:
        os.replace(pending_file, password_file)
        log.warning("created admin %s; admin password written to %s", email, password_file)
    else:
        log.warning("created admin %s with the password from CRM_ADMIN_PASSWORD", email)
    return user

