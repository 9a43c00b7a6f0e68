"""gateway.auth: passwords, access tokens, refresh-token rotation, signing in."""
import base64
import json
import os
import stat
from datetime import timedelta

import jwt
import pytest
from sqlalchemy import select

from crm_common.errors import Unauthorized
from crm_common.types import utcnow

from gateway import auth
from gateway.auth import (
    BAD_CREDENTIALS, AccessTokens, PasswordHashing, RefreshTokens, SignIn, hash_refresh_token,
    load_jwt_secret,
)
from gateway.models import RefreshToken, User
from gateway.users import UserDirectory

from gateway_support import JWT_SECRET


def make_user(session, passwords, email="ann@example.com", role="sales", team_id="east",
              password="a long enough password"):
    user = UserDirectory(session, passwords).create(
        {"email": email, "name": "Ann", "role": role, "team_id": team_id, "password": password})
    session.commit()
    return user


# --- passwords -----------------------------------------------------------

def test_passwords_are_hashed_with_argon2id_and_verified(passwords):
    hashed = passwords.hash("a long enough password")
    assert hashed.startswith("$argon2id$")
    assert passwords.verify(hashed, "a long enough password")
    assert not passwords.verify(hashed, "a long enough passworD")
    assert not passwords.verify("not a hash", "a long enough password")


def test_default_parameters_meet_owasp_minimum():
    hashed = PasswordHashing().hash("x" * 12)
    assert "$m=19456,t=2,p=1$" in hashed


def test_hashing_can_run_elsewhere(passwords):
    ran = []

    def run_blocking(function, *args):
        ran.append(function.__name__)
        return function(*args)

    hashing = PasswordHashing(time_cost=1, memory_cost=1024, parallelism=1, run_blocking=run_blocking)
    hashing.verify(hashing.hash("secret secret"), "secret secret")
    assert ran == ["hash", "verify"]


# --- the signing secret ----------------------------------------------------

def test_jwt_secret_is_generated_once_into_the_var_dir_readable_by_owner_only(monkeypatch, tmp_path):
    monkeypatch.delenv("CRM_JWT_SECRET", raising=False)
    monkeypatch.setenv("CRM_VAR_DIR", str(tmp_path))
    first = load_jwt_secret()
    assert len(first) >= 32
    path = tmp_path / "jwt-secret"
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert load_jwt_secret() == first
    assert [p.name for p in tmp_path.iterdir()] == ["jwt-secret"]  # no temporary files left behind


def test_jwt_secret_from_the_environment_wins(monkeypatch, tmp_path):
    monkeypatch.setenv("CRM_VAR_DIR", str(tmp_path))
    monkeypatch.setenv("CRM_JWT_SECRET", JWT_SECRET)
    assert load_jwt_secret() == JWT_SECRET
    assert not (tmp_path / "jwt-secret").exists()


def test_a_short_jwt_secret_is_refused(monkeypatch):
    monkeypatch.setenv("CRM_JWT_SECRET", "too-short")
    with pytest.raises(ValueError):
        load_jwt_secret()


# --- access tokens -----------------------------------------------------------

SESSION_ID = "00000000-0000-4000-8000-00000000005e"


class FakeUser:
    id = "00000000-0000-4000-8000-000000000001"
    role = "manager"
    team_id = "east"


def test_access_token_round_trip(access_tokens):
    token = access_tokens.issue(FakeUser, SESSION_ID)
    principal = access_tokens.verify(token)
    assert (principal.user_id, principal.role, principal.team_id) == (FakeUser.id, "manager", "east")
    assert principal.session_id == SESSION_ID
    claims = jwt.decode(token, JWT_SECRET, algorithms=["HS256"], audience="crm-api")
    assert claims["iss"] == "crm" and claims["aud"] == "crm-api"
    assert claims["exp"] - claims["iat"] == 15 * 60
    assert claims["jti"] and claims["sub"] == FakeUser.id and claims["team"] == "east"
    assert jwt.get_unverified_header(token)["alg"] == "HS256"


def _b64(data):
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def _valid_claims(access_tokens):
    return jwt.decode(access_tokens.issue(FakeUser, SESSION_ID), JWT_SECRET, algorithms=["HS256"], audience="crm-api")


def test_unsigned_token_is_refused(access_tokens):
    claims = _valid_claims(access_tokens)
    token = _b64({"alg": "none", "typ": "JWT"}) + "." + _b64(claims) + "."
    with pytest.raises(Unauthorized):
        access_tokens.verify(token)


@pytest.mark.parametrize("algorithm", ["HS512", "HS384"])
def test_token_signed_with_another_algorithm_is_refused(access_tokens, algorithm):
    # The right secret, the wrong algorithm: pinning HS256 refuses it anyway.
    token = jwt.encode(_valid_claims(access_tokens), JWT_SECRET, algorithm=algorithm)
    with pytest.raises(Unauthorized):
        access_tokens.verify(token)


@pytest.mark.parametrize("change", [
    {"aud": "someone-else"},
    {"iss": "not-crm"},
    {"role": "superuser"},
    {"exp": 0},
])
def test_token_with_wrong_claims_is_refused(access_tokens, change):
    claims = dict(_valid_claims(access_tokens), **change)
    with pytest.raises(Unauthorized):
        access_tokens.verify(jwt.encode(claims, JWT_SECRET, algorithm="HS256"))


@pytest.mark.parametrize("missing", ["exp", "iat", "sub", "jti", "aud", "iss", "sid"])
def test_token_without_a_required_claim_is_refused(access_tokens, missing):
    claims = _valid_claims(access_tokens)
    del claims[missing]
    with pytest.raises(Unauthorized):
        access_tokens.verify(jwt.encode(claims, JWT_SECRET, algorithm="HS256"))


def test_token_signed_with_another_secret_is_refused(access_tokens):
    other = AccessTokens("another-secret-of-sufficient-length-0123456789")
    with pytest.raises(Unauthorized):
        access_tokens.verify(other.issue(FakeUser, SESSION_ID))


def test_expired_token_is_refused():
    issued_long_ago = AccessTokens(JWT_SECRET, clock=lambda: utcnow() - timedelta(minutes=16))
    with pytest.raises(Unauthorized):
        AccessTokens(JWT_SECRET).verify(issued_long_ago.issue(FakeUser, SESSION_ID))


def test_garbage_is_refused(access_tokens):
    for token in ("", "abc", "a.b.c", "Bearer x"):
        with pytest.raises(Unauthorized):
            access_tokens.verify(token)


# --- refresh tokens ----------------------------------------------------------

def test_refresh_tokens_are_stored_hashed(session, passwords):
    user = make_user(session, passwords)
    token = RefreshTokens(session).issue(user.id)
    session.commit()
    stored = session.execute(select(RefreshToken)).scalar_one()
    assert stored.token_hash == hash_refresh_token(token) != token
    assert token not in {stored.token_hash, stored.family_id, stored.id}


def test_rotation_spends_the_token_and_continues_the_family(session, passwords):
    user = make_user(session, passwords)
    tokens = RefreshTokens(session)
    first = tokens.issue(user.id)
    user_id, family_id, second = tokens.rotate(first)
    session.commit()
    assert user_id == user.id and second != first
    rows = {row.token_hash: row for row in session.execute(select(RefreshToken)).scalars()}
    old, new = rows[hash_refresh_token(first)], rows[hash_refresh_token(second)]
    assert old.used_at is not None and new.used_at is None
    assert old.family_id == new.family_id


def test_reusing_a_spent_token_revokes_the_family_for_good(session, passwords):
    user = make_user(session, passwords)
    tokens = RefreshTokens(session)
    first = tokens.issue(user.id)
    other_login = tokens.issue(user.id)  # another family: untouched
    _, _, second = tokens.rotate(first)
    session.commit()

    with pytest.raises(Unauthorized):
        tokens.rotate(first)
    # The request fails, and its transaction is rolled back; the revocation stays.
    session.rollback()
    with pytest.raises(Unauthorized):
        tokens.rotate(second)
    session.rollback()
    revoked = session.execute(select(RefreshToken).where(RefreshToken.revoked_at.is_not(None))).scalars().all()
    assert {row.token_hash for row in revoked} == {hash_refresh_token(first), hash_refresh_token(second)}
    assert tokens.rotate(other_login)[0] == user.id


def test_expired_or_unknown_refresh_tokens_are_refused(session, passwords):
    user = make_user(session, passwords)
    expired = RefreshTokens(session, ttl=timedelta(seconds=-1)).issue(user.id)
    session.commit()
    for token in (expired, "never-issued", "", None):
        with pytest.raises(Unauthorized):
            RefreshTokens(session).rotate(token)


# --- signing in --------------------------------------------------------------

def test_login_returns_a_pair_whose_access_token_describes_the_user(session, passwords, access_tokens):
    user = make_user(session, passwords, email="Ann@Example.com")
    pair = SignIn(session, passwords, access_tokens).login(" ANN@example.com ", "a long enough password")
    assert pair.token_type == "Bearer" and pair.expires_in == 900
    principal = access_tokens.verify(pair.access_token)
    assert (principal.user_id, principal.role, principal.team_id) == (user.id, "sales", "east")


def test_wrong_password_and_unknown_account_fail_alike(session, passwords, access_tokens):
    make_user(session, passwords)
    sign_in = SignIn(session, passwords, access_tokens)
    with pytest.raises(Unauthorized) as wrong_password:
        sign_in.login("ann@example.com", "not the password")
    with pytest.raises(Unauthorized) as unknown_account:
        sign_in.login("nobody@example.com", "not the password")
    assert wrong_password.value.args == unknown_account.value.args == (BAD_CREDENTIALS, {}, "")


def test_unknown_account_still_spends_a_password_verification(session, passwords, access_tokens, monkeypatch):
    verified = []
    monkeypatch.setattr(passwords, "verify", lambda *args: verified.append(args) or False)
    with pytest.raises(Unauthorized):
        SignIn(session, passwords, access_tokens).login("nobody@example.com", "whatever")
    assert len(verified) == 1


def test_refresh_issues_tokens_with_the_current_role(session, passwords, access_tokens):
    user = make_user(session, passwords)
    sign_in = SignIn(session, passwords, access_tokens)
    pair = sign_in.login("ann@example.com", "a long enough password")
    session.commit()
    user.role = "manager"
    session.commit()
    renewed = sign_in.refresh(pair.refresh_token)
    assert access_tokens.verify(renewed.access_token).role == "manager"
    assert renewed.refresh_token != pair.refresh_token


def test_login_upgrades_a_weaker_hash(session, access_tokens):
    weak = PasswordHashing(time_cost=1, memory_cost=1024, parallelism=1)
    make_user(session, weak)
    stronger = PasswordHashing(time_cost=1, memory_cost=2048, parallelism=1)
    SignIn(session, stronger, access_tokens).login("ann@example.com", "a long enough password")
    session.commit()
    stored = session.execute(select(User)).scalar_one().password_hash
    assert "m=2048" in stored and stronger.verify(stored, "a long enough password")


def test_secret_file_writer_never_replaces_an_existing_file(tmp_path):
    path = str(tmp_path / "secret")
    assert auth.write_secret_file(path, "first")
    assert not auth.write_secret_file(path, "second")
    assert open(path).read() == "first\n"
