"""Fixtures of the gateway tests.

Run with ``nameko test services/gateway/tests`` (eventlet monkey patch first).
The HTTP tests run the real GatewayService in a nameko container against the
RabbitMQ at localhost:5672 (a fresh vhost per test, from nameko's pytest
plugin), with small fake services (gateway_fakes.py) standing in for the others.
"""
import pytest

from crm_common.testing import memory_session, postgres_database, use_test_keyring

from gateway.auth import AccessTokens, PasswordHashing
from gateway.models import Base

from gateway_support import ADMIN_EMAIL, ADMIN_PASSWORD, JWT_SECRET, GatewayClient, free_port


@pytest.fixture(autouse=True)
def test_keyring(monkeypatch):
    """Encrypted columns use a fixed test keyring, never a key file under the repository's var/."""
    use_test_keyring(monkeypatch)


@pytest.fixture
def session():
    session = memory_session(Base.metadata)
    yield session
    session.close()


@pytest.fixture(scope="session")
def passwords():
    # Real argon2id, with the cheapest parameters: the tests check behaviour, not strength.
    return PasswordHashing(time_cost=1, memory_cost=1024, parallelism=1)


@pytest.fixture
def access_tokens():
    return AccessTokens(JWT_SECRET)


# --- the real service in a container -------------------------------------------

@pytest.fixture
def gateway_env(monkeypatch, tmp_path):
    monkeypatch.setenv("CRM_VAR_DIR", str(tmp_path))
    monkeypatch.setenv("CRM_JWT_SECRET", JWT_SECRET)
    monkeypatch.setenv("CRM_ADMIN_EMAIL", ADMIN_EMAIL)
    monkeypatch.setenv("CRM_ADMIN_PASSWORD", ADMIN_PASSWORD)
    monkeypatch.setenv("CRM_RPC_TIMEOUT", "1")


@pytest.fixture
def start_gateway(container_factory, rabbit_config, gateway_env, tmp_path):
    from gateway.service import GatewayService

    def start(db_url=None):
        port = free_port()
        config = dict(rabbit_config, WEB_SERVER_ADDRESS=f"127.0.0.1:{port}",
                      DB_URL=db_url or f"sqlite:///{tmp_path}/gateway.db", max_workers=10)
        container = container_factory(GatewayService, config)
        container.start()
        return GatewayClient(container, f"http://127.0.0.1:{port}")

    return start


@pytest.fixture
def gateway(start_gateway):
    return start_gateway()


@pytest.fixture
def admin_token(gateway):
    return gateway.login()["access_token"]


@pytest.fixture
def fake_calls():
    import gateway_fakes

    gateway_fakes.reset()
    yield gateway_fakes.CALLS
    gateway_fakes.reset()


@pytest.fixture
def start_fake(container_factory, rabbit_config, fake_calls):
    """Start a fake service (a class from gateway_fakes.py) in the test's vhost."""
    def start(service_cls):
        container = container_factory(service_cls, rabbit_config)
        container.start()
        return container

    return start


# --- PostgreSQL (what deployments use) -------------------------------------------

@pytest.fixture
def pg_url():
    """A throwaway PostgreSQL database (CRM_TEST_PG_URL), dropped afterwards."""
    with postgres_database("crm_test_gateway") as url:
        yield url
