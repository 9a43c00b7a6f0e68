"""End-to-end fixtures: the whole system as `make up` runs it, on PostgreSQL.

Each test session gets its own RabbitMQ vhost and its own PostgreSQL
databases (crm_common.testing_system), and starts every service as a
separate `nameko run` process, as in production.
"""
import pytest

from api_helpers import new_user

from crm_common.testing_system import (  # noqa: F401 (tests import Api and wait_until from here)
    ADMIN_EMAIL, ADMIN_PASSWORD, Api, login, running_system, wait_until,
)


@pytest.fixture(scope="session")
def system(tmp_path_factory):
    with running_system("e2e", workdir=tmp_path_factory.mktemp("system")) as running:
        yield running


@pytest.fixture(scope="session")
def admin(system):
    return login(system, ADMIN_EMAIL, ADMIN_PASSWORD)


@pytest.fixture
def make_user(system, admin):
    """Create a user with a role and log in as them."""
    def make(role, team_id="east"):
        return new_user(system, admin, role, team_id)
    return make
