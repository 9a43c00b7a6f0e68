"""gateway.users: accounts, the first admin, customer ownership; and the migrations."""
import logging
import os
import stat

import pytest
from sqlalchemy import func, select

from crm_common.errors import Conflict, NotFound, ValidationFailed
from crm_common.testing import schema_drift

from gateway.models import Base, User
from gateway.users import UserDirectory, ensure_first_admin, to_dict

VALID = {"email": "Bea@Example.com", "name": "Bea", "role": "manager", "team_id": "east",
         "password": "twelve chars!"}


def user_count(session):
    return session.execute(select(func.count()).select_from(User)).scalar()


def test_create_user_normalises_and_hides_the_hash(session, passwords):
    user = UserDirectory(session, passwords).create(dict(VALID, name="  Bea  "))
    public = to_dict(user)
    assert public["email"] == "bea@example.com" and public["name"] == "Bea"
    assert set(public) == {"id", "email", "name", "role", "team_id", "language", "active", "created_at",
                           "updated_at", "version"}
    assert passwords.verify(user.password_hash, "twelve chars!")


def test_email_is_unique_whatever_its_case(session, passwords):
    directory = UserDirectory(session, passwords)
    directory.create(VALID)
    session.commit()
    with pytest.raises(Conflict) as conflict:
        directory.create(dict(VALID, email="BEA@example.COM"))
    assert conflict.value.errors == {"email": ["Already in use."]}


@pytest.mark.parametrize("change, field", [
    ({"password": "eleven char"}, "password"),
    ({"role": "owner"}, "role"),
    ({"email": "not-an-email"}, "email"),
    ({"name": ""}, "name"),
    ({"team_id": 5}, "team_id"),
    ({"surprise": True}, "surprise"),
])
def test_invalid_users_are_refused_field_by_field_and_nothing_is_written(session, passwords, change, field):
    with pytest.raises(ValidationFailed) as failure:
        UserDirectory(session, passwords).create(dict(VALID, **change))
    assert field in failure.value.errors
    assert user_count(session) == 0


def test_missing_fields_are_named(session, passwords):
    with pytest.raises(ValidationFailed) as failure:
        UserDirectory(session, passwords).create({})
    assert set(failure.value.errors) == {"email", "name", "role", "password"}


def test_users_are_listed_page_by_page(session, passwords):
    directory = UserDirectory(session, passwords)
    for number in range(5):
        directory.create(dict(VALID, email=f"user{number}@example.com"))
    session.commit()
    seen, cursor = [], None
    while True:
        page = directory.list(limit=2, cursor=cursor)
        seen += [user.email for user in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == [f"user{number}@example.com" for number in range(5)]
    with pytest.raises(ValidationFailed):
        directory.list(limit=500)


def test_get_unknown_user_is_not_found(session, passwords):
    with pytest.raises(NotFound):
        UserDirectory(session, passwords).get("00000000-0000-4000-8000-000000000000")


def test_team_of_owner(session, passwords):
    directory = UserDirectory(session, passwords)
    owner = directory.create(dict(VALID, team_id="west"))
    session.commit()
    assert directory.team_of_owner(None, "caller", "east") == "east"
    assert directory.team_of_owner("caller", "caller", "east") == "east"
    assert directory.team_of_owner(owner.id, "caller", "east") == "west"
    for unknown in ("00000000-0000-4000-8000-000000000000", "not-a-uuid", 42):
        with pytest.raises(ValidationFailed) as failure:
            directory.team_of_owner(unknown, "caller", "east")
        assert failure.value.errors == {"owner_id": ["Unknown user."]}


# --- the first admin ---------------------------------------------------------

def test_first_admin_gets_a_generated_password_in_a_private_file(session, passwords, tmp_path, caplog):
    path = str(tmp_path / "admin-password")
    with caplog.at_level(logging.INFO):
        admin = ensure_first_admin(session, passwords, "admin@example.com", None, path)
    assert admin.role == "admin"
    password = open(path).read().strip()
    assert len(password) >= 12
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert passwords.verify(admin.password_hash, password)
    assert f"admin password written to {path}" in caplog.text
    assert password not in caplog.text
    assert sorted(os.listdir(tmp_path)) == ["admin-password"]


def test_first_admin_is_created_once(session, passwords, tmp_path):
    path = str(tmp_path / "admin-password")
    ensure_first_admin(session, passwords, "admin@example.com", None, path)
    written = open(path).read()
    assert ensure_first_admin(session, passwords, "admin@example.com", None, path) is None
    assert ensure_first_admin(session, passwords, "other@example.com", None, path) is None
    assert open(path).read() == written
    assert user_count(session) == 1


def test_first_admin_with_a_given_password_writes_no_file(session, passwords, tmp_path):
    path = str(tmp_path / "admin-password")
    admin = ensure_first_admin(session, passwords, "Boss@Example.com", "the given password", path)
    assert admin.email == "boss@example.com"
    assert passwords.verify(admin.password_hash, "the given password")
    assert not os.path.exists(path)


def test_first_admin_with_a_short_given_password_stops_the_start(session, passwords, tmp_path):
    with pytest.raises(ValueError, match="password"):
        ensure_first_admin(session, passwords, "admin@example.com", "short", str(tmp_path / "p"))


def test_no_admin_is_made_when_its_email_belongs_to_another_user(session, passwords, tmp_path):
    UserDirectory(session, passwords).create(dict(VALID, email="admin@example.com"))
    session.commit()
    assert ensure_first_admin(session, passwords, "admin@example.com", None, str(tmp_path / "p")) is None
    assert not os.path.exists(tmp_path / "p")
    assert user_count(session) == 1


# --- migrations ----------------------------------------------------------------

def test_migrations_match_the_models(tmp_path):
    assert schema_drift("gateway.migrations", Base.metadata, f"sqlite:///{tmp_path}/gateway.db") == []
