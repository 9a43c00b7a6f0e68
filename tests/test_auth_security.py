"""Signing in safely, end to end: signing out, locked guessing, the password policy, changing a password.

Tests that provoke failures pose as their own client address (X-Forwarded-For;
the test system trusts 127.0.0.1 as a proxy), so the locks they cause touch
no other test.
"""
import secrets

import requests

from api_helpers import assert_problem
from conftest import Api

PASSWORD = "a long enough password"


def client(number=None):
    """Headers of a client at an address of its own (TEST-NET-3)."""
    number = secrets.randbelow(250) + 1 if number is None else number
    return {"X-Forwarded-For": f"203.0.113.{number}"}


def sign_in(system, email, password, headers=None):
    return requests.post(system.gateway_url + "/api/v1/auth/login", json={"email": email, "password": password},
                         headers=headers or client(), timeout=10)


def new_user(admin, password=PASSWORD):
    email = f"sec-{secrets.token_hex(4)}@e2e.example"
    created = admin.post("/users", json={"email": email, "name": "Sec", "role": "sales", "password": password})
    assert created.status_code == 201, created.text
    return email


def session_of(system, email, password=PASSWORD):
    response = sign_in(system, email, password)
    assert response.status_code == 200, response.text
    pair = response.json()
    return Api(system.gateway_url, pair["access_token"]), pair["refresh_token"]


def refresh(system, refresh_token):
    return requests.post(system.gateway_url + "/api/v1/auth/refresh", json={"refresh_token": refresh_token},
                         timeout=10)


def test_logout_ends_this_session_and_leaves_the_others(system, admin):
    email = new_user(admin)
    laptop, laptop_refresh = session_of(system, email)
    phone, phone_refresh = session_of(system, email)

    assert laptop.post("/auth/logout", json={"refresh_token": laptop_refresh}).status_code == 204
    assert_problem(laptop.get("/me"), 401)
    assert_problem(refresh(system, laptop_refresh), 401)
    assert phone.get("/me").json()["email"] == email
    assert refresh(system, phone_refresh).status_code == 200


def test_guessing_a_password_locks_the_account_and_says_nothing_about_whether_it_exists(system, admin):
    email = new_user(admin)
    unknown = f"nobody-{secrets.token_hex(4)}@e2e.example"
    for account in (email, unknown):
        for attempt in range(5):
            assert_problem(sign_in(system, account, "not the password", client()), 401)
    # Locked now, even for the right password and from anywhere; the answer is the same for both.
    known_locked = sign_in(system, email.upper(), PASSWORD, client())
    unknown_locked = sign_in(system, unknown, PASSWORD, client())
    for refused in (known_locked, unknown_locked):
        assert_problem(refused, 429)
        assert 55 <= int(refused.headers["Retry-After"]) <= 60
    assert known_locked.json()["detail"] == unknown_locked.json()["detail"]


def test_one_address_guessing_across_accounts_is_locked_out(system, admin):
    email = new_user(admin)
    guesser = client(251)
    for attempt in range(5):
        sign_in(system, f"victim{attempt}-{secrets.token_hex(3)}@e2e.example", "password123456", guesser)
    assert_problem(sign_in(system, email, PASSWORD, guesser), 429)
    assert sign_in(system, email, PASSWORD, client(252)).status_code == 200


def test_weak_passwords_are_refused_naming_the_field(system, admin):
    body = {"email": f"weak-{secrets.token_hex(3)}@e2e.example", "name": "Weak", "role": "viewer"}
    for weak in ("short", "Password1234", body["email"]):
        assert_problem(admin.post("/users", json=dict(body, password=weak)), 422, "password")


def test_changing_the_password_keeps_this_session_and_ends_the_others(system, admin):
    email = new_user(admin)
    here, here_refresh = session_of(system, email)
    elsewhere, elsewhere_refresh = session_of(system, email)

    wrong = here.post("/me/password", json={"current_password": "not it at all", "new_password": "fresh passphrase 42"},
                      headers=client())
    assert_problem(wrong, 422, "current_password")
    weak = here.post("/me/password", json={"current_password": PASSWORD, "new_password": "qwerty123456"})
    assert "common" in assert_problem(weak, 422, "new_password")["errors"]["new_password"][0]

    changed = here.post("/me/password", json={"current_password": PASSWORD, "new_password": "fresh passphrase 42"})
    assert changed.status_code == 204, changed.text
    assert here.get("/me").status_code == 200
    assert_problem(elsewhere.get("/me"), 401)
    assert_problem(refresh(system, elsewhere_refresh), 401)
    assert refresh(system, here_refresh).status_code == 200
    assert_problem(sign_in(system, email, PASSWORD), 401)
    assert sign_in(system, email, "fresh passphrase 42").status_code == 200
