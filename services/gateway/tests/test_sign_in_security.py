"""Signing in safely: signing out, throttled guessing, the password policy, changing a password."""
from datetime import timedelta

import pytest

from crm_common.errors import RateLimited, Unauthorized, ValidationFailed
from crm_common.types import utcnow

from gateway.auth import AccessTokens, RevocationList, SessionRevocations, SignIn
from gateway.models import RevokedSession
from gateway.password_policy import IS_EMAIL, TOO_COMMON, TOO_SHORT, common_passwords, password_problems
from gateway.throttle import LOCKED, SignInThrottle, client_address, trusted_proxies
from gateway.users import SAME_PASSWORD, UserDirectory

from gateway_support import JWT_SECRET, assert_problem

PASSWORD = "a long enough password"


class Clock:
    def __init__(self):
        self.now = utcnow()

    def __call__(self):
        return self.now

    def advance(self, **delta):
        self.now += timedelta(**delta)


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def access_tokens(session):
    # Verification consults the revoked sessions, as the gateway's SigningKeys arranges.
    return AccessTokens(JWT_SECRET, is_revoked=SessionRevocations(session).is_revoked)


@pytest.fixture
def sign_in(session, passwords, access_tokens, clock):
    return SignIn(session, passwords, access_tokens, throttle=SignInThrottle(session, clock=clock))


@pytest.fixture
def ann(session, passwords):
    user = UserDirectory(session, passwords).create(
        {"email": "ann@example.com", "name": "Ann", "role": "sales", "password": PASSWORD})
    session.commit()
    return user


def fail(sign_in, email, times, address="198.51.100.7"):
    for _ in range(times):
        with pytest.raises(Unauthorized):
            sign_in.login(email, "not the password", address)


def locked(sign_in, email, password=PASSWORD, address="198.51.100.7"):
    with pytest.raises(RateLimited) as refused:
        sign_in.login(email, password, address)
    return refused.value


# --- signing out ---------------------------------------------------------------

def test_logout_ends_this_session_and_no_other(session, sign_in, access_tokens, ann):
    laptop, phone = sign_in.login("ann@example.com", PASSWORD), sign_in.login("ann@example.com", PASSWORD)
    session.commit()
    sign_in.logout(access_tokens.verify(laptop.access_token))
    session.commit()
    with pytest.raises(Unauthorized):
        access_tokens.verify(laptop.access_token)
    with pytest.raises(Unauthorized):
        sign_in.refresh(laptop.refresh_token)
    assert access_tokens.verify(phone.access_token).user_id == ann.id
    assert sign_in.refresh(phone.refresh_token).access_token


def test_logout_with_a_refresh_token_ends_that_session_too_but_never_someone_elses(
        session, passwords, sign_in, access_tokens, ann):
    UserDirectory(session, passwords).create(
        {"email": "bob@example.com", "name": "Bob", "role": "sales", "password": PASSWORD})
    first, second = sign_in.login("ann@example.com", PASSWORD), sign_in.login("ann@example.com", PASSWORD)
    bobs = sign_in.login("bob@example.com", PASSWORD)
    session.commit()
    sign_in.logout(access_tokens.verify(first.access_token), second.refresh_token)
    sign_in.logout(access_tokens.verify(sign_in.login("ann@example.com", PASSWORD).access_token),
                   bobs.refresh_token)
    session.commit()
    with pytest.raises(Unauthorized):
        access_tokens.verify(second.access_token)
    assert sign_in.refresh(bobs.refresh_token).access_token  # Bob is still signed in


def test_revoked_sessions_are_forgotten_once_their_access_tokens_have_expired(session, clock, ann):
    revocations = SessionRevocations(session, clock=clock)
    revocations.revoke(ann.id, "00000000-0000-4000-8000-000000000001")
    assert revocations.is_revoked("00000000-0000-4000-8000-000000000001")
    clock.advance(minutes=16)
    revocations.revoke(ann.id, "00000000-0000-4000-8000-000000000002")
    assert not revocations.is_revoked("00000000-0000-4000-8000-000000000001")
    assert revocations.is_revoked("00000000-0000-4000-8000-000000000002")


@pytest.fixture
def revocation_list(session, clock):
    """A gateway instance's in-memory list over the shared table, with the reads it made."""
    reads = []

    def load(since):
        reads.append(since)
        return SessionRevocations(session, clock=clock).listed_since(since)
    listed = RevocationList(load, refresh_seconds=1.0, clock=clock)
    listed.reads = reads
    yield listed
    listed.close()


def test_a_session_signed_out_here_is_refused_at_once_without_a_database_read(
        session, sign_in, revocation_list, ann):
    tokens = AccessTokens(JWT_SECRET, is_revoked=revocation_list.is_revoked)
    pair = sign_in.login("ann@example.com", PASSWORD)
    session.commit()
    assert tokens.verify(pair.access_token).user_id == ann.id
    reads = len(revocation_list.reads)
    sign_in.logout(tokens.verify(pair.access_token))
    with pytest.raises(Unauthorized):
        tokens.verify(pair.access_token)
    assert len(revocation_list.reads) == reads  # known from the revocation itself, within the second


def test_a_session_signed_out_by_another_instance_is_refused_from_the_next_refresh(
        session, clock, revocation_list, ann):
    signed_out = "00000000-0000-4000-8000-000000000003"
    assert not revocation_list.is_revoked(signed_out)
    # Another gateway instance writes the revocation; this list reads the table at most once a second.
    session.add(RevokedSession(session_id=signed_out, user_id=ann.id, revoked_at=clock(),
                               expires_at=clock() + timedelta(minutes=16)))
    session.commit()
    assert not revocation_list.is_revoked(signed_out)
    clock.advance(seconds=1)
    assert revocation_list.is_revoked(signed_out)
    assert revocation_list.reads[0] is None and revocation_list.reads[1] is not None  # all once, then news
    clock.advance(minutes=17)  # every access token of that session has expired
    assert not revocation_list.is_revoked(signed_out)


# --- throttling failed sign-ins ----------------------------------------------------

def test_five_failures_lock_the_account_even_for_the_right_password(sign_in, clock, ann):
    fail(sign_in, "ann@example.com", 5)
    refused = locked(sign_in, "ANN@example.com ", address="203.0.113.9")  # another address, same account
    assert refused.detail == LOCKED and refused.extra["retry_after"] == 60
    assert refused.rate_limit_headers == {"Retry-After": "60"}
    clock.advance(seconds=61)
    assert sign_in.login("ann@example.com", PASSWORD).access_token


def test_an_unknown_account_is_locked_exactly_like_a_known_one(sign_in, ann):
    fail(sign_in, "ann@example.com", 5, address="198.51.100.1")
    fail(sign_in, "nobody@example.com", 5, address="198.51.100.2")
    known = locked(sign_in, "ann@example.com", address="198.51.100.3")
    unknown = locked(sign_in, "nobody@example.com", address="198.51.100.4")
    assert known.args == unknown.args


def test_each_further_lock_lasts_twice_as_long_up_to_an_hour(sign_in, clock, ann):
    waits = []
    for _ in range(9):
        fail(sign_in, "ann@example.com", 5)
        waits.append(locked(sign_in, "ann@example.com").extra["retry_after"])
        clock.advance(seconds=waits[-1] + 1)
    assert waits == [60, 120, 240, 480, 960, 1920, 3600, 3600, 3600]


def test_a_success_clears_the_accounts_count(sign_in, ann):
    fail(sign_in, "ann@example.com", 4, address="198.51.100.1")
    sign_in.login("ann@example.com", PASSWORD, "198.51.100.1")
    # (From another address: the first one's count stands, one more failure would lock it.)
    fail(sign_in, "ann@example.com", 4, address="198.51.100.2")
    assert sign_in.login("ann@example.com", PASSWORD, "198.51.100.3").access_token


def test_failures_spread_over_more_than_the_window_do_not_lock(sign_in, clock, ann):
    for _ in range(3):
        fail(sign_in, "ann@example.com", 4)
        clock.advance(minutes=16)
    assert sign_in.login("ann@example.com", PASSWORD).access_token


def test_an_address_guessing_across_accounts_is_locked_for_every_account(sign_in, ann):
    for number in range(5):
        fail(sign_in, f"user{number}@example.com", 1, address="192.0.2.66")
    locked(sign_in, "ann@example.com", address="192.0.2.66")
    assert sign_in.login("ann@example.com", PASSWORD, "192.0.2.67").access_token


def test_the_client_address_is_the_peer_unless_the_peer_is_a_trusted_proxy(monkeypatch):
    monkeypatch.delenv("CRM_TRUSTED_PROXIES", raising=False)
    assert trusted_proxies() == ()
    assert client_address("198.51.100.7", "203.0.113.1", proxies=()) == "198.51.100.7"
    monkeypatch.setenv("CRM_TRUSTED_PROXIES", "10.0.0.0/8, 192.0.2.1")
    assert client_address("198.51.100.7", "203.0.113.1") == "198.51.100.7"  # not a proxy: header ignored
    assert client_address("10.1.2.3", "203.0.113.1") == "203.0.113.1"
    assert client_address("10.1.2.3", "203.0.113.1, 192.0.2.1") == "203.0.113.1"
    # What the client wrote itself (the left hops) never picks its address.
    assert client_address("10.1.2.3", "1.2.3.4, 203.0.113.1") == "203.0.113.1"
    assert client_address("10.1.2.3", None) == "10.1.2.3"


# --- the password policy ---------------------------------------------------------------

def test_the_policy_refuses_short_common_and_email_passwords():
    assert len(common_passwords()) > 2000
    assert password_problems("short pass") == [TOO_SHORT]
    assert password_problems("Password1234") == [TOO_COMMON]
    assert password_problems("QWERTYUIOP123") == [TOO_COMMON]
    assert password_problems("ann.lee@example.com", "Ann.Lee@example.com") == [IS_EMAIL]
    assert password_problems(PASSWORD, "ann@example.com") == []


def test_admins_cannot_give_a_new_user_a_weak_password(session, passwords):
    with pytest.raises(ValidationFailed) as refused:
        UserDirectory(session, passwords).create(
            {"email": "cy@example.com", "name": "Cy", "role": "viewer", "password": "iloveyou2024"})
    assert refused.value.errors == {"password": [TOO_COMMON]}


# --- changing one's password ----------------------------------------------------------

def test_a_password_change_keeps_this_session_and_ends_the_others(session, passwords, sign_in, access_tokens, ann):
    here, elsewhere = sign_in.login("ann@example.com", PASSWORD), sign_in.login("ann@example.com", PASSWORD)
    session.commit()
    caller = access_tokens.verify(here.access_token)
    UserDirectory(session, passwords).change_password(
        ann.id, {"current_password": PASSWORD, "new_password": "a brand new passphrase"}, sign_in, caller.session_id)
    session.commit()
    assert access_tokens.verify(here.access_token).user_id == ann.id
    assert sign_in.refresh(here.refresh_token).access_token
    with pytest.raises(Unauthorized):
        access_tokens.verify(elsewhere.access_token)
    with pytest.raises(Unauthorized):
        sign_in.refresh(elsewhere.refresh_token)
    fail(sign_in, "ann@example.com", 1, address=None)  # the old password no longer signs in
    assert sign_in.login("ann@example.com", "a brand new passphrase").access_token


@pytest.mark.parametrize("new_password, reason", [
    ("too short", "12"), ("password1234", TOO_COMMON), ("ann@example.com", IS_EMAIL), (PASSWORD, SAME_PASSWORD),
])
def test_a_weak_new_password_is_refused_naming_it(session, passwords, sign_in, ann, new_password, reason):
    with pytest.raises(ValidationFailed) as refused:
        UserDirectory(session, passwords).change_password(
            ann.id, {"current_password": PASSWORD, "new_password": new_password}, sign_in, "sid")
    assert reason in str(refused.value.errors["new_password"])


def test_a_wrong_current_password_is_refused_and_counts_as_a_failed_sign_in(session, passwords, sign_in, ann):
    directory = UserDirectory(session, passwords)
    guess = {"current_password": "not the password", "new_password": "a brand new passphrase"}
    for _ in range(5):
        with pytest.raises(ValidationFailed) as refused:
            directory.change_password(ann.id, guess, sign_in, "sid")
        assert list(refused.value.errors) == ["current_password"]
    with pytest.raises(RateLimited):
        directory.change_password(ann.id, dict(guess, current_password=PASSWORD), sign_in, "sid")
    locked(sign_in, "ann@example.com")


# --- over HTTP ---------------------------------------------------------------------------

def test_logout_lockout_and_password_change_over_http(gateway, admin_token):
    user, _ = gateway.create_user(admin_token, "sales", password=PASSWORD)
    laptop, phone = gateway.login(user["email"], PASSWORD), gateway.login(user["email"], PASSWORD)

    assert gateway.post("/api/v1/auth/logout", token=laptop["access_token"]).status_code == 204
    assert_problem(gateway.get("/api/v1/me", token=laptop["access_token"]), 401, "unauthorized")
    assert_problem(gateway.post("/api/v1/auth/refresh", json={"refresh_token": laptop["refresh_token"]}),
                   401, "unauthorized")
    assert gateway.get("/api/v1/me", token=phone["access_token"]).json()["email"] == user["email"]

    weak = gateway.post("/api/v1/me/password", token=phone["access_token"],
                        json={"current_password": PASSWORD, "new_password": "qwerty123456"})
    assert "new_password" in assert_problem(weak, 422, "validation_failed")["errors"]
    changed = gateway.post("/api/v1/me/password", token=phone["access_token"],
                           json={"current_password": PASSWORD, "new_password": "a brand new passphrase"})
    assert changed.status_code == 204, changed.text

    for _ in range(5):
        gateway.post("/api/v1/auth/login", json={"email": user["email"], "password": PASSWORD})
    refused = gateway.post("/api/v1/auth/login", json={"email": user["email"], "password": "a brand new passphrase"})
    body = assert_problem(refused, 429, "rate_limited")
    assert refused.headers["Retry-After"] == "60" and body["retry_after"] == 60
    # The address is locked too (five failures from it): no account can be tried from there now.
    unknown = gateway.post("/api/v1/auth/login", json={"email": "nobody@example.com", "password": PASSWORD})
    assert assert_problem(unknown, 429, "rate_limited")["detail"] == body["detail"]


def test_the_new_routes_are_documented():
    from gateway.http import route_registry
    from gateway.openapi import build_openapi
    from gateway.service import GatewayService

    document = build_openapi(route_registry(GatewayService))
    logout = document["paths"]["/api/v1/auth/logout"]["post"]
    assert "204" in logout["responses"] and logout["requestBody"]["required"] is False
    change = document["paths"]["/api/v1/me/password"]["post"]
    assert {"204", "401", "422"} <= set(change["responses"]) and change["requestBody"]["required"] is True
    fields = document["components"]["schemas"]["PasswordChangeRequest"]
    assert fields["required"] == ["current_password", "new_password"]
    assert fields["properties"]["new_password"]["minLength"] == 12
