"""Users change (their own name and language; an admin edits a user) and every change is published
through the outbox as user.created / user.updated, the events notifications keeps its recipients from."""
import json

import pytest
from sqlalchemy import select

from crm_common.context import RequestContext
from crm_common.errors import Conflict, NotFound, Unauthorized, ValidationFailed, VersionMismatch
from crm_common.outbox import outbox_table

from gateway.auth import AccessTokens, SessionRevocations, SignIn
from gateway.users import UserDirectory, ensure_first_admin

from gateway_support import JWT_SECRET, assert_problem

ADMIN_CONTEXT = RequestContext(request_id="r-1", user_id="00000000-0000-4000-8000-0000000000ad", role="admin")
BEA = {"email": "bea@example.com", "name": "Bea", "role": "sales", "team_id": "east", "password": "twelve chars!"}


def events(session):
    rows = session.execute(select(outbox_table.c.payload).order_by(outbox_table.c.id)).scalars()
    return [json.loads(row) for row in rows]


@pytest.fixture
def directory(session, passwords):
    return UserDirectory(session, passwords, ADMIN_CONTEXT)


def test_a_new_user_is_published_with_what_notifications_needs(session, directory):
    user = directory.create(dict(BEA, language="zh-CN"))
    [event] = events(session)
    assert (event["type"], event["producer"], event["actor"]["user_id"]) == ("user.created", "gateway",
                                                                           ADMIN_CONTEXT.user_id)
    assert event["data"] == {"id": user.id, "email": "bea@example.com", "name": "Bea", "language": "zh-CN",
                             "team_id": "east", "role": "sales", "active": True, "version": 1}


def test_language_defaults_to_english_and_must_be_one_we_write_in(directory):
    assert directory.create(BEA).language == "en"
    with pytest.raises(ValidationFailed) as failure:
        directory.create(dict(BEA, email="other@example.com", language="fr"))
    assert "language" in failure.value.errors


def test_the_first_admin_is_published_too(session, passwords, tmp_path):
    admin = ensure_first_admin(session, passwords, password="twelve chars!", password_file=str(tmp_path / "pw"))
    [event] = events(session)
    assert event["type"] == "user.created" and event["data"]["id"] == admin.id
    assert event["actor"]["role"] == "system"


def test_a_user_changes_their_own_name_and_language_and_the_change_is_published(session, directory):
    user = directory.create(BEA)
    changed = directory.update_profile(user.id, {"name": " Bea Li ", "language": "zh-CN"}, expected_version=1)
    assert (changed.name, changed.language, changed.version) == ("Bea Li", "zh-CN", 2)
    event = events(session)[-1]
    assert event["type"] == "user.updated"
    assert (event["data"]["name"], event["data"]["language"], event["data"]["version"]) == ("Bea Li", "zh-CN", 2)


def test_a_change_that_changes_nothing_makes_no_version_and_no_event(session, directory):
    user = directory.create(BEA)
    assert directory.update_profile(user.id, {"name": "Bea"}).version == 1
    assert len(events(session)) == 1


@pytest.mark.parametrize("body, field", [({}, "_schema"), ({"language": "de"}, "language"), ({"name": ""}, "name"),
                                         ({"role": "admin"}, "role"), ({"active": False}, "active")])
def test_a_profile_change_is_only_name_and_language(directory, body, field):
    user = directory.create(BEA)
    with pytest.raises(ValidationFailed) as failure:
        directory.update_profile(user.id, body)
    assert field in failure.value.errors


def test_a_stale_version_is_refused(directory):
    user = directory.create(BEA)
    directory.update_profile(user.id, {"name": "Bea Li"})
    with pytest.raises(VersionMismatch):
        directory.update_profile(user.id, {"name": "Bea Lee"}, expected_version=1)


def test_an_admin_changes_role_team_and_status_and_an_inactive_user_cannot_sign_in(session, passwords, directory):
    user = directory.create(BEA)
    session.commit()
    changed = directory.update(user.id, {"role": "manager", "team_id": "west", "active": False})
    assert (changed.role, changed.team_id, changed.active) == ("manager", "west", False)
    assert events(session)[-1]["data"]["active"] is False
    sign_in = SignIn(session, passwords, AccessTokens(JWT_SECRET))
    with pytest.raises(Unauthorized):
        sign_in.login("bea@example.com", "twelve chars!")
    with pytest.raises(NotFound):
        directory.update("00000000-0000-4000-8000-000000000000", {"name": "Nobody"})


@pytest.mark.parametrize("change", [{"role": "manager"}, {"team_id": "west"}, {"active": False}])
def test_a_new_role_team_or_deactivation_signs_the_user_out_everywhere(session, passwords, directory, change):
    user = directory.create(BEA)
    session.commit()
    tokens = AccessTokens(JWT_SECRET, is_revoked=SessionRevocations(session).is_revoked)
    sign_in = SignIn(session, passwords, tokens)
    first, second = sign_in.login("bea@example.com", "twelve chars!"), sign_in.login("bea@example.com", "twelve chars!")
    session.commit()
    directory.update(user.id, {"name": "Bea B."})  # a new name changes nothing about access
    session.commit()
    assert tokens.verify(first.access_token).user_id == user.id

    directory.update(user.id, change)
    session.commit()
    for pair in (first, second):
        with pytest.raises(Unauthorized):
            tokens.verify(pair.access_token)
        with pytest.raises(Unauthorized):
            sign_in.refresh(pair.refresh_token)


def test_the_last_active_admin_can_neither_be_demoted_nor_deactivated(directory):
    admin = directory.create(dict(BEA, email="root@example.com", role="admin"))
    for change, field in (({"role": "manager"}, "role"), ({"active": False}, "active")):
        with pytest.raises(Conflict) as conflict:
            directory.update(admin.id, change)
        assert field in conflict.value.errors
    directory.create(dict(BEA, email="second@example.com", role="admin"))
    assert directory.update(admin.id, {"role": "manager"}).role == "manager"


# --- over HTTP --------------------------------------------------------------------

def test_patch_me_and_patch_users_over_http(gateway, admin_token):
    user, token = gateway.create_user(admin_token, "sales", team_id="east")
    assert user["language"] == "en" and user["active"] is True
    me = gateway.request("PATCH", "/api/v1/me", token=token, json={"language": "zh-CN"},
                         headers={"If-Match": 'W/"1"'})
    assert me.status_code == 200, me.text
    assert me.json()["language"] == "zh-CN" and me.headers["ETag"] == 'W/"2"'
    stale = gateway.request("PATCH", f"/api/v1/users/{user['id']}", token=admin_token, json={"active": False},
                            headers={"If-Match": 'W/"1"'})
    assert_problem(stale, 412, "version_mismatch")
    assert_problem(gateway.request("PATCH", f"/api/v1/users/{user['id']}", token=token, json={"active": False}),
                   403, "forbidden")
    done = gateway.request("PATCH", f"/api/v1/users/{user['id']}", token=admin_token, json={"active": False})
    assert done.status_code == 200 and done.json()["active"] is False
    denied = gateway.post("/api/v1/auth/login", json={"email": user["email"], "password": "a long enough password"})
    assert_problem(denied, 401, "unauthorized")
    chinese = gateway.request("PATCH", "/api/v1/me", token=admin_token, json={"language": "fr"},
                              headers={"Accept-Language": "zh-CN"})
    assert_problem(chinese, 422, "validation_failed")
