"""The accounts the personas use, made before a run; safe to run again.

Signed in as the admin (LOADTEST_ADMIN_EMAIL, default admin@example.com, and
LOADTEST_ADMIN_PASSWORD, default the contents of var/admin-password), this
makes LOADTEST_ACCOUNTS_PER_ROLE users (default 10) of each persona role in the
team "loadtest", and API keys for the integration client. The gateway limits
requests per principal (CRM_RATE_LIMIT_PER_MINUTE), so the locust users of a
role take turns over that role's accounts and keys.

No password is stored or sent around: each is derived from a secret
(LOADTEST_ACCOUNT_SECRET, default the admin password) and the email, so every
process of a distributed run, on any machine, knows the same ones, and a later
run signs in with the accounts an earlier run made. An account that exists is
never signed in to on trial: failed sign-ins lock the client address.

An API key's secret is shown once, when it is made, so keys cannot be shared
the same way: each process that runs users makes its own at test start and
revokes them at test stop (a process that was killed leaves its keys behind;
they are named "locust load test ..." in GET /api/v1/api-keys).

Run on its own it makes the users and prints them:

    loadtests/.venv/bin/python -m crmload.accounts --host http://127.0.0.1:8000
(from loadtests/; locust runs the same step at test start.)
"""
import argparse
import hashlib
import hmac
import itertools
import os
import socket
import sys
from dataclasses import dataclass, field
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parents[2]
PERSONA_ROLES = ("sales", "manager", "support")
TEAM = "loadtest"
# The integration client's scopes: read customers, export them, import a file.
INTEGRATION_SCOPES = ("customers:read", "imports:read", "imports:write")
TIMEOUT = 30


class SetupError(Exception):
    """The accounts could not be made; the message says what the gateway answered."""


@dataclass(frozen=True)
class Settings:
    host: str
    admin_email: str
    admin_password: str
    per_role: int
    secret: str

    @classmethod
    def from_env(cls, host):
        if not host:
            raise SetupError("no host: give locust --host (the gateway's base URL, e.g. http://127.0.0.1:8000)")
        admin_password = os.environ.get("LOADTEST_ADMIN_PASSWORD") or _admin_password_file()
        return cls(
            host=host.rstrip("/"),
            admin_email=os.environ.get("LOADTEST_ADMIN_EMAIL", "admin@example.com"),
            admin_password=admin_password,
            per_role=int(os.environ.get("LOADTEST_ACCOUNTS_PER_ROLE", "10")),
            secret=os.environ.get("LOADTEST_ACCOUNT_SECRET") or admin_password,
        )


def _admin_password_file():
    path = ROOT / "var" / "admin-password"
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        raise SetupError(f"no admin password: set LOADTEST_ADMIN_PASSWORD, or run `make up` (it writes {path})")


@dataclass(frozen=True)
class Login:
    email: str
    password: str


def login_for(settings, role, number):
    email = f"loadtest-{role}-{number:02d}@loadtest.example"
    digest = hmac.new(settings.secret.encode(), email.encode(), hashlib.sha256).hexdigest()
    return Login(email, f"lt-{digest[:32]}")


@dataclass
class Accounts:
    """What the users of one process sign in with: logins by role, and API keys."""

    logins: dict
    api_keys: list = field(default_factory=list)
    api_key_ids: list = field(default_factory=list)

    def __post_init__(self):
        self._turns = {role: itertools.cycle(logins) for role, logins in self.logins.items()}
        self._key_turns = itertools.cycle(self.api_keys) if self.api_keys else None

    def next_login(self, role):
        return next(self._turns[role])

    def next_api_key(self):
        if self._key_turns is None:
            raise SetupError("this process made no API keys (see the error at test start)")
        return next(self._key_turns)


class AdminClient:
    """The gateway's API, signed in as the admin."""

    def __init__(self, settings):
        self.base = settings.host + "/api/v1"
        self.http = requests.Session()
        response = self.http.post(self.base + "/auth/login", timeout=TIMEOUT,
                                  json={"email": settings.admin_email, "password": settings.admin_password})
        if response.status_code != 200:
            raise SetupError(f"signing in as {settings.admin_email} at {settings.host} answered "
                             f"{response.status_code}: {response.text[:300]} (LOADTEST_ADMIN_EMAIL, "
                             "LOADTEST_ADMIN_PASSWORD)")
        self.http.headers["Authorization"] = "Bearer " + response.json()["access_token"]

    def request(self, method, path, expect, **kwargs):
        response = self.http.request(method, self.base + path, timeout=TIMEOUT, **kwargs)
        if response.status_code not in expect:
            raise SetupError(f"{method} {path} answered {response.status_code}: {response.text[:300]}")
        return response

    def user_emails(self):
        emails, cursor = set(), None
        while True:
            page = self.request("GET", "/users", (200,), params={"limit": 200, "cursor": cursor}).json()
            emails.update(user["email"] for user in page["items"])
            cursor = page["next_cursor"]
            if not cursor:
                return emails


def ensure_users(admin, settings):
    """Every persona login, made if missing; {role: [Login]}."""
    existing = admin.user_emails()
    logins = {}
    for role in PERSONA_ROLES:
        logins[role] = [login_for(settings, role, number) for number in range(1, settings.per_role + 1)]
        for login in logins[role]:
            if login.email not in existing:
                # 409: another process of this run made it a moment ago.
                admin.request("POST", "/users", (201, 409), json={
                    "email": login.email, "name": f"Load test {login.email.split('@')[0]}", "role": role,
                    "team_id": TEAM, "password": login.password})
    return logins


def make_api_keys(admin, count):
    """``count`` new integration keys of this process: (ids, secrets)."""
    label = f"locust load test {socket.gethostname()}:{os.getpid()}"
    created = [admin.request("POST", "/api-keys", (201,), json={
        "name": f"{label} #{number}", "scopes": list(INTEGRATION_SCOPES)}).json()
        for number in range(1, count + 1)]
    return [key["id"] for key in created], [key["key"] for key in created]


def revoke_api_keys(settings, key_ids):
    admin = AdminClient(settings)
    for key_id in key_ids:
        admin.request("DELETE", f"/api-keys/{key_id}", (204, 404))


def prepare(settings, with_api_keys=True):
    """The Accounts of this process: users made if missing, and (when it runs users) API keys."""
    admin = AdminClient(settings)
    logins = ensure_users(admin, settings)
    if not with_api_keys:
        return Accounts(logins)
    key_ids, keys = make_api_keys(admin, settings.per_role)
    return Accounts(logins, keys, key_ids)


# The Accounts of this process, made at test start (locustfile.py).
_current = None


def install(settings, with_api_keys):
    global _current
    _current = prepare(settings, with_api_keys)


def current():
    if _current is None:
        raise SetupError("the load-test accounts were not made: see the error logged at test start")
    return _current


def release(settings):
    """Revoke this process's API keys (at test stop)."""
    global _current
    if _current is not None and _current.api_key_ids:
        revoke_api_keys(settings, _current.api_key_ids)
    _current = None


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="http://127.0.0.1:8000", help="the gateway's base URL")
    args = parser.parse_args(argv)
    try:
        settings = Settings.from_env(args.host)
        logins = ensure_users(AdminClient(settings), settings)
    except (SetupError, requests.RequestException) as error:
        sys.exit(f"crmload.accounts: {error}")
    for role, role_logins in logins.items():
        print(f"{role}: {len(role_logins)} accounts, {role_logins[0].email} ... {role_logins[-1].email}")


if __name__ == "__main__":
    main()
