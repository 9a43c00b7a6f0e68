"""The whole system as `make up` runs it, on throwaway databases: for the
end-to-end tests and the benchmarks.

``running_system()`` makes a fresh RabbitMQ vhost and one fresh PostgreSQL
database per service (CRM_TEST_PG_URL names the server), starts every service
as its own `nameko run` process, waits for the gateway's /ready, and removes
it all on exit, so a run never sees another run's queues or rows.
"""
import json
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack, contextmanager
from pathlib import Path
from urllib.parse import urlparse

import requests

from crm_common.crypto import KEYS_FILE_NAME, Keyring, decrypt, new_keys_document, write_keys_file
from crm_common.testing import free_port, postgres_database, stop_process, wait_until  # noqa: F401 (re-exported)
from crm_common.testing_smtp import SmtpServer

ROOT = Path(__file__).resolve().parents[3]
NAMEKO = str(Path(sys.executable).with_name("nameko"))
SERVICES = {
    "customers": "customers.service:CustomersService",
    "sales": "sales.service:SalesService",
    "notifications": "notifications.service:NotificationsService",
    "reporting": "reporting.service:ReportingService",
    "gateway": "gateway.service:GatewayService",
}
AMQP_URI = os.environ.get("AMQP_URI", "amqp://guest:guest@127.0.0.1:5672/")
RABBIT_API = os.environ.get("RABBIT_CTL_URI", "http://guest:guest@127.0.0.1:15672")
ADMIN_EMAIL = "admin@e2e.example"
ADMIN_PASSWORD = "correct horse battery staple"






class RabbitAdmin:
    def __init__(self, api_uri):
        parsed = urlparse(api_uri)
        self.base = f"{parsed.scheme}://{parsed.hostname}:{parsed.port}/api"
        self.auth = (parsed.username, parsed.password)

    def create_vhost(self, vhost, user):
        requests.put(f"{self.base}/vhosts/{vhost}", auth=self.auth, timeout=10).raise_for_status()
        requests.put(f"{self.base}/permissions/{vhost}/{user}", auth=self.auth, timeout=10,
                     json={"configure": ".*", "write": ".*", "read": ".*"}).raise_for_status()

    def delete_vhost(self, vhost):
        requests.delete(f"{self.base}/vhosts/{vhost}", auth=self.auth, timeout=10)


class System:
    """The running system: one process per service instance, started and stopped by tests."""

    def __init__(self, workdir, env):
        self.workdir = workdir
        self.env = env
        self.processes = {}  # instance name -> Popen
        self.http_ports = {}
        self.gateway_url = f"http://127.0.0.1:{env['CRM_GATEWAY_PORT']}"

    def start(self, service, instance=None, wait=True):
        """Start one instance; with ``wait`` (a backend service), return once it answers /health."""
        instance = instance or service
        env = dict(self.env)
        if service != "gateway":
            port = free_port()
            env[f"CRM_{service.upper()}_HTTP_PORT"] = str(port)
            self.http_ports[instance] = port
        else:
            # A further gateway instance serves the API (and /metrics) on a port of its own.
            if instance != "gateway":
                env["CRM_GATEWAY_PORT"] = str(free_port())
            self.http_ports[instance] = int(env["CRM_GATEWAY_PORT"])
        log = open(self.workdir / f"{instance}.log", "ab")
        self.processes[instance] = subprocess.Popen(
            [NAMEKO, "run", "--config", str(ROOT / "services" / service / "config.yaml"),
             SERVICES[service]],
            cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
        )
        log.close()
        if service != "gateway" and wait:
            self.wait_healthy(instance)
        return instance

    def wait_healthy(self, instance):
        wait_until(lambda: self._health(instance), 60, message=f"{instance} /health")

    def _health(self, instance):
        if self.processes[instance].poll() is not None:
            raise AssertionError(f"{instance} exited; see {self.workdir / (instance + '.log')}")
        try:
            return requests.get(f"http://127.0.0.1:{self.http_ports[instance]}/health",
                                timeout=1).status_code == 200
        except requests.ConnectionError:
            return False

    def stop(self, instance):
        stop_process(self.processes.pop(instance))
        # A stopped instance has no port to scrape or call (a later start gives it one again).
        self.http_ports.pop(instance, None)

    def url(self, instance):
        """The base URL of an instance's HTTP port (a gateway's API, a service's /health)."""
        return f"http://127.0.0.1:{self.http_ports[instance]}"

    def metrics(self, instance):
        return requests.get(f"http://127.0.0.1:{self.http_ports[instance]}/metrics", timeout=5).text

    def ready(self):
        try:
            return requests.get(self.gateway_url + "/ready", timeout=5).status_code == 200
        except requests.ConnectionError:
            return False

    def stop_all(self):
        # Every instance told at once, then waited for: each one's graceful
        # shutdown takes seconds, and one after the other they added up to
        # most of a test system's teardown.
        processes = [self.processes.pop(instance) for instance in list(self.processes)]
        for process in processes:
            process.terminate()
        deadline = time.monotonic() + 20
        for process in processes:
            try:
                process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()

    def decrypt(self, stored):
        """A value as this system's services read it (tests looking at a database: the outbox,
        personal data); stored values are sealed with the system's own key file."""
        with open(self.env["CRM_DATA_KEYS_FILE"]) as handle:
            keyring = Keyring.from_document(json.load(handle))
        return decrypt(stored, keyring=keyring)


class Api:
    """A frontend's view of the gateway: JSON over HTTP with a bearer token."""

    def __init__(self, base_url, token=None):
        self.base = base_url + "/api/v1"
        self.http = requests.Session()
        if token:
            self.http.headers["Authorization"] = f"Bearer {token}"

    def __getattr__(self, method):
        if method not in ("get", "post", "patch", "put", "delete"):
            raise AttributeError(method)
        return lambda path, **kwargs: self.http.request(method.upper(), self.base + path,
                                                        timeout=kwargs.pop("timeout", 10), **kwargs)


def login(system, email, password):
    response = requests.post(system.gateway_url + "/api/v1/auth/login",
                             json={"email": email, "password": password}, timeout=10)
    assert response.status_code == 200, response.text
    return Api(system.gateway_url, response.json()["access_token"])


TEST_TIMERS = {
    # Reminders and deliveries are looked for every second, not every five.
    "CRM_REMINDER_SCAN_SECONDS": "1",
    # Webhook retries after 0.5 s, 1 s, 2 s ... instead of 30 s, 60 s ..., looked for 4 times a second.
    "CRM_WEBHOOK_BACKOFF_BASE": "0.5",
    "CRM_WEBHOOK_SCAN_SECONDS": "0.25",
}


@contextmanager
def running_system(name="e2e", workdir=None, extra_env=None, templates=None, test_timers=True,
                   database="postgresql"):
    """Start the whole system; yields the System, stops and removes everything on exit (a
    failed run's logs are kept: keep_logs).

    ``templates`` maps a service to a database its own starts as a copy of (the bench's
    data set); the others start empty. ``database``: "postgresql" (a database per service on
    CRM_TEST_PG_URL's server; a template is a database name) or "sqlite" (a file per service in
    the workdir, as `make up` runs by default; a template is a file path). ``test_timers``: reminders and webhook deliveries are
    looked for several times a second, so tests wait little for them; the benchmarks run with
    the services' own intervals, as deployed (at four scans a second, the scans were a fifth of
    the notifications service's time under load)."""
    run_id = secrets.token_hex(4)
    with ExitStack() as cleanup:
        if workdir is None:
            workdir = Path(cleanup.enter_context(tempfile.TemporaryDirectory(prefix=f"crm-{name}-")))
        rabbit = RabbitAdmin(RABBIT_API)
        amqp = urlparse(AMQP_URI)
        vhost = f"crm_{name}_{run_id}"
        rabbit.create_vhost(vhost, amqp.username or "guest")
        cleanup.callback(rabbit.delete_vhost, vhost)
        # A real SMTP server for every end-to-end run: mail the services send
        # lands in its Maildir (system.smtp), and a test may stop and restart it.
        smtp = SmtpServer(Path(workdir) / "maildir").start()
        cleanup.callback(smtp.stop)
        env = {
            **os.environ,
            **smtp.env,
            # A failed email delivery is retried after a second, not a minute.
            "CRM_DELIVERY_RETRY_SECONDS": "1",
            "AMQP_URI": f"{amqp.scheme}://{amqp.netloc}/{vhost}",
            "CRM_VAR_DIR": str(workdir),
            "CRM_GATEWAY_PORT": str(free_port()),
            "CRM_ADMIN_EMAIL": ADMIN_EMAIL,
            "CRM_ADMIN_PASSWORD": ADMIN_PASSWORD,
            "CRM_RPC_TIMEOUT": "3",
            "CRM_EVENT_RETRY_DELAYS": "0.2,0.5",
            # One admin account drives the tests and the benchmarks from many threads
            # (test_scaling, report_freshness at 200 writes/s): far above a person's
            # rate. The limiter still runs (and costs what it costs); its own tests
            # give an API key a small limit of its own.
            "CRM_RATE_LIMIT_PER_MINUTE": "1000000",
            # Gateway instances count each other within three heartbeats of a second:
            # a test that starts or stops one waits seconds for the others to notice.
            "CRM_GATEWAY_HEARTBEAT_SECONDS": "1",
            # Every test connects from 127.0.0.1: trusting it as a proxy lets a test that
            # provokes sign-in locks pose as its own client (X-Forwarded-For) and so lock
            # neither 127.0.0.1 nor the other tests out.
            "CRM_TRUSTED_PROXIES": "127.0.0.1",
            **(TEST_TIMERS if test_timers else {}),
            **(extra_env or {}),
        }
        for service in SERVICES:
            template = (templates or {}).get(service)
            if database == "sqlite":
                path = Path(workdir) / f"{service}.db"
                if template:
                    shutil.copyfile(template, path)
                env[f"CRM_{service.upper()}_DB_URL"] = f"sqlite:///{path}"
            else:
                env[f"CRM_{service.upper()}_DB_URL"] = cleanup.enter_context(
                    postgres_database(f"crm_{name}_{run_id}_{service}", template=template))
        if not (extra_env or {}).get("CRM_DATA_KEYS"):
            # One keyring for every process of the system, of its own: a key file
            # in the workdir, made before any of them starts. Keys from the
            # caller's own environment must not mix in.
            for variable in ("CRM_DATA_KEYS", "CRM_BLIND_INDEX_KEY"):
                env.pop(variable, None)
            env["CRM_DATA_KEYS_FILE"] = (extra_env or {}).get("CRM_DATA_KEYS_FILE") or str(
                Path(workdir) / KEYS_FILE_NAME)
            write_keys_file(env["CRM_DATA_KEYS_FILE"], new_keys_document(), replace=False)
        system = System(workdir, env)
        system.smtp = smtp
        cleanup.callback(system.stop_all)
        # The backends start side by side (each spends seconds importing and
        # migrating); the gateway once they all answer, since signing in and
        # the first requests need them.
        backends = [system.start(service, wait=False) for service in SERVICES if service != "gateway"]
        for instance in backends:
            system.wait_healthy(instance)
        system.start("gateway")
        wait_until(system.ready, 60, interval=0.25, message="gateway /ready")
        try:
            yield system
        except BaseException:
            keep_logs(workdir, name)
            raise


def keep_logs(workdir, name):
    """Copy the services' logs out of a run that failed, before its workdir goes: the only
    record of what the services saw (a 500 in the bench's data set build was lost this way)."""
    kept = Path(tempfile.mkdtemp(prefix=f"crm-{name}-failed-"))
    for log_file in Path(workdir).glob("*.log"):
        shutil.copy2(log_file, kept / log_file.name)
    print(f"the services' logs of this failed run are kept in {kept}", file=sys.stderr)
