"""The CRM's load test: the personas of crmload.personas over HTTP, and an AMQP
user that loads the customers service without the gateway.

Run it from its own virtualenv (locust runs on gevent, the services on
eventlet): `make loadtest-venv`, then `make loadtest` (see the Makefile and the
docs/testing.md, "Load tests"), or by hand, from the repository root:

    loadtests/.venv/bin/locust -f loadtests/locustfile.py --headless \\
        -u 20 -r 5 -t 1m --host http://127.0.0.1:8000 [SalesRep Manager ...]

At test start every process makes the load-test accounts it needs, signed in
as the admin (crmload.accounts: LOADTEST_ADMIN_EMAIL, LOADTEST_ADMIN_PASSWORD,
LOADTEST_ACCOUNTS_PER_ROLE); the AMQP user talks to LOADTEST_AMQP_URI.
crmload.plugins adds the SLO gate, the service-metrics sampler and the report.
"""
from locust import events
from locust.runners import MasterRunner

import crmload.plugins  # noqa: F401 (registers the SLO gate, metrics sampler and report)
from crmload import accounts
from crmload.amqp_user import CustomersRpcUser  # noqa: F401 (a locust user class)
from crmload.personas import IntegrationClient, Manager, SalesRep, Support  # noqa: F401 (locust user classes)


@events.test_start.add_listener
def make_accounts(environment, **_kwargs):
    # The master runs no users: it makes the users (so its workers find them
    # made) but no API keys, whose secrets it could not hand on.
    runs_users = not isinstance(environment.runner, MasterRunner)
    accounts.install(accounts.Settings.from_env(environment.host), with_api_keys=runs_users)


@events.test_stop.add_listener
def revoke_api_keys(environment, **_kwargs):
    accounts.release(accounts.Settings.from_env(environment.host))
