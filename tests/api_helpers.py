"""What the end-to-end tests share besides fixtures: test data that never collides
across tests, users of a role, and the check of a problem+json answer."""
import secrets

from crm_common.crmctl import dlq
from crm_common.testing_system import login, wait_until

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


def new_user(system, admin, role, team_id="east"):
    """A user of ``role`` in ``team_id``, signed in (``api.user`` is their record)."""
    email = f"{role}-{secrets.token_hex(3)}@e2e.example"
    password = "a long enough password " + secrets.token_hex(2)
    created = admin.post("/users", json={"email": email, "name": f"{role.title()} {secrets.token_hex(2)}",
                                         "role": role, "team_id": team_id, "password": password})
    assert created.status_code == 201, created.text
    api = login(system, email, password)
    api.user = created.json()
    return api


def once_sales_knows(post):
    """``post()`` retried while the customer has not reached sales' replica yet (it arrives by
    event; until then sales answers 422 on customer_id); returns the last response."""
    def attempt():
        response = post()
        if response.status_code == 422 and "customer_id" in response.json().get("errors", {}):
            return None
        return response
    return wait_until(attempt, 15, interval=0.2, message="sales to know the customer")


def take_from_queue(uri, queue, wanted, timeout=15):
    """Take (consume) the first message on ``queue`` for which ``wanted(envelope)``; the others stay."""
    with dlq.connect(uri) as connection:
        def attempt():
            with dlq.holding(connection, queue) as held:
                for message in held.take():
                    if wanted(dlq.payload_of(message)):
                        held.ack(message)
                        return message
            return None
        return wait_until(attempt, timeout, interval=0.2, message=f"the event on {queue}")
