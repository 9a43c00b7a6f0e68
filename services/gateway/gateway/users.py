"""The people who use the CRM: accounts, roles, teams, and the first admin.

Plain Python over a SQLAlchemy session; nothing here knows about nameko.
"""
import logging
import os
import secrets

from sqlalchemy import exists, select
from sqlalchemy.exc import IntegrityError

from crm_common.errors import Conflict, NotFound, ValidationFailed
from crm_common.pagination import check_limit, keyset_page
from crm_common.types import utcnow
from crm_common.validation import load

from gateway.auth import PasswordHashing, write_secret_file
from gateway.models import User
from gateway.schemas import UserCreateRequest, UserResponse

log = logging.getLogger(__name__)

DEFAULT_ADMIN_EMAIL = "admin@example.com"
ADMIN_PASSWORD_FILE = "admin-password"

user_response = UserResponse()


def to_dict(user):
    """The public form of a user (no password hash)."""
    return user_response.dump(user)


class UserDirectory:
    def __init__(self, session, passwords: PasswordHashing):
        self.session = session
        self.passwords = passwords

    def create(self, data):
        """A new user from an API body; 422 for bad input, 409 for a taken email."""
        data = load(UserCreateRequest, data)
        email = data["email"].lower()
        if self._find_by_email(email) is not None:
            raise _email_taken()
        now = utcnow()
        user = User(
            email=email,
            name=data["name"],
            role=data["role"],
            team_id=data["team_id"],
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
        return user

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

