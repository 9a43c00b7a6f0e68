"""What the end-to-end tests share besides fixtures: test data that never collides
across tests, and the check of a problem+json answer."""
import secrets

PROBLEM = "application/problem+json"


def unique(name):
    """Customer names differ per run: the duplicate rules would otherwise join tests together."""
    return f"{name} {secrets.token_hex(3)}"


def phone():
    """A valid, unique Chinese mobile number."""
    return f"+86 139 {secrets.randbelow(10000):04d} {secrets.randbelow(10000):04d}"


def assert_problem(response, status, field=None):
    """``response`` is an RFC 9457 problem with ``status`` (naming ``field`` in errors); returns its body."""
    assert response.status_code == status, response.text
    assert response.headers["Content-Type"].startswith(PROBLEM)
    body = response.json()
    if field:
        assert field in body["errors"], body
    return body
